"""The hello protocol's shared beat: hellos and checks on the multiples of
helloInterval, so an idle node wakes once per interval however many peers it has."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from tests.discovery.test_protocol import IID, SETTINGS, peer_hello
from twistednode.discovery.events import Removed
from twistednode.discovery.membership import Membership
from twistednode.discovery.protocol import DROP_LOG_EVERY, HelloProtocol

START = 1_000.37
PEERS = [(f"10.0.0.{i}", 12345) for i in range(2, 32)]


class Counting(Membership):
    """A membership that notes when it is checked."""

    ticks: list[float]

    def tick(self, now: float) -> list[Any]:
        self.ticks.append(now)
        return super().tick(now)


class BeatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.membership = Counting(IID, SETTINGS, started_at=START)
        self.membership.ticks = []
        self.events: list[Any] = []
        self.proto = HelloProtocol(
            membership=self.membership,
            clock=self.clock,
            pid="my-pid",
            host_name="me-host",
            observer=self.events.append,
        )
        self.transport = FakeDatagramTransport()
        for host, port in PEERS:
            self.proto.add_destination(host, port)
        self.proto.makeConnection(self.transport)
        self.addCleanup(self.proto.doStop)

    def hear_everyone(self, seq: int) -> None:
        for i, (host, port) in enumerate(PEERS):
            self.proto.datagramReceived(peer_hello(f"peer-{i}", seq=seq), (host, port))

    def run_until(self, when: float) -> None:
        """Advance the clock to each timer's own time, then to C{when}."""
        while True:
            due = [c.getTime() for c in self.clock.getDelayedCalls()]
            due = [t for t in due if t <= when]
            if not due:
                break
            self.clock.advance(max(0.0, min(due) - self.clock.seconds()))
        self.clock.advance(when - self.clock.seconds())

    def sent_at(self) -> int:
        count = len(self.transport.written)
        self.transport.written.clear()
        return count

    def test_hellos_go_out_at_bind_then_on_the_beat(self) -> None:
        """The first hellos at once, the next ones on the whole seconds."""
        self.assertEqual(self.sent_at(), len(PEERS))
        self.clock.advance(1_001.0 - START - 0.001)
        self.assertEqual(self.sent_at(), 0)
        self.clock.advance(0.001)
        self.assertEqual(self.sent_at(), len(PEERS))
        self.clock.advance(0.999)
        self.assertEqual(self.sent_at(), 0)
        self.clock.advance(0.001)
        self.assertEqual(self.sent_at(), len(PEERS))

    def test_an_idle_node_wakes_once_per_interval_with_thirty_peers(self) -> None:
        """Thirty peers saying hello between beats: after the election phases,
        every check runs on a beat, and only beats have timers."""
        for second in range(1, 11):
            self.run_until(START + second)  # the peers' hellos, 0.37 after a beat
            self.hear_everyone(second)
        after_phases = [t for t in self.membership.ticks if t > START + 2.01]
        self.assertTrue(after_phases)
        for when in after_phases:
            self.assertAlmostEqual(when, round(when), places=6)
        pending = {round(c.getTime(), 6) for c in self.clock.getDelayedCalls()}
        beat = [t for t in pending if t <= self.clock.seconds() + 1.0]
        self.assertEqual(beat, [float(round(self.clock.seconds() + 0.5))])
        self.assertEqual([e for e in self.events if isinstance(e, Removed)], [])

    def test_silent_member_goes_on_the_beat_after_its_timeout(self) -> None:
        """A member last heard at 1004.6 times out at 1006.6 and goes at 1007.0:
        within nodeTimeout plus one helloInterval."""
        self.clock.advance(1_004.6 - START)
        self.hear_everyone(1)
        self.clock.advance(1_006.6 - self.clock.seconds())
        self.assertEqual([e for e in self.events if isinstance(e, Removed)], [])
        self.clock.advance(1_007.0 - self.clock.seconds() - 0.01)
        self.assertEqual([e for e in self.events if isinstance(e, Removed)], [])
        self.clock.advance(0.01)
        removed = [e for e in self.events if isinstance(e, Removed)]
        self.assertEqual(len(removed), len(PEERS))

    def test_beats_are_the_multiples_of_the_hello_interval(self) -> None:
        self.assertEqual(self.proto.next_beat(1_000.37), 1_001.0)
        self.assertEqual(self.proto.next_beat(1_001.0), 1_002.0)
        self.assertEqual(self.proto.beat_at_or_after(1_001.0), 1_001.0)
        self.assertEqual(self.proto.beat_at_or_after(1_000.9995), 1_000.9995)
        self.assertEqual(self.proto.beat_at_or_after(1_001.2), 1_002.0)


class DropLogTests(SynchronousTestCase):
    def test_a_flood_of_bad_datagrams_logs_one_line_per_reason_per_interval(
        self,
    ) -> None:
        """10,000 bad datagrams in a second: every one counted, one debug line;
        the next line, DROP_LOG_EVERY later, says how many it left out."""
        clock = Clock()
        membership = Membership(IID, SETTINGS, started_at=0.0)
        proto = HelloProtocol(
            membership=membership, clock=clock, pid="my-pid", host_name="me-host"
        )
        proto.makeConnection(FakeDatagramTransport())
        self.addCleanup(proto.doStop)
        with capturedLogs() as logs:
            for _ in range(10_000):
                proto.datagramReceived(b"not json", ("10.0.0.9", 1))
            clock.advance(DROP_LOG_EVERY)
            proto.datagramReceived(b"not json", ("10.0.0.9", 1))
        lines = [e for e in logs if "dropped a datagram" in e["log_format"]]
        self.assertEqual(len(lines), 2)
        self.assertEqual(lines[1]["left_out"], 9_999)
        self.assertEqual(sum(membership.dropped.values()), 10_001)
