"""The UDP adapter, with FakeDatagramTransport and a Clock (spec §3, §4, §8)."""

from __future__ import annotations

import json
from typing import Any

from attrs import evolve
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twistednode.discovery import wire
from twistednode.discovery.authority import ListedPeer, RegistryAuthority
from twistednode.discovery.legacykey import LegacyKey
from twistednode.discovery.membership import (
    BYE_EVENT,
    EXTENSION_KEY,
    Added,
    Demotion,
    HelloReceived,
    MasterSeen,
    Membership,
    MembershipEvent,
    Promotion,
    Removed,
)
from twistednode.discovery.protocol import HelloProtocol
from twistednode.discovery.settings import make_settings

SETTINGS = make_settings(epoch_ms=1732629600000, weight=0.0)
IID = "11111111-1111-4111-8111-111111111111"
PID = "22222222-2222-4222-8222-222222222222"
PEER = ("10.0.0.7", 12345)


def peer_hello(
    iid: str = "peer",
    *,
    seq: int = 1,
    master: bool = False,
    ours: bool = True,
    **extra: Any,
) -> bytes:
    data: dict[str, Any] = {
        "isMaster": master,
        "isMasterEligible": True,
        "weight": -1.0,
        "address": "127.0.0.1",
    }
    if ours:
        data[EXTENSION_KEY] = {
            "v": 1,
            "seq": seq,
            "idx": None,
            "view": None,
            "hw": None,
        }
    data.update(extra)
    return wire.encode(wire.Envelope("hello", "other-pid", iid, "peer-host", data))


def run_due_calls(clock: Clock) -> None:
    """One reactor turn's timers: the calls due now, but none they schedule."""
    due = [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]
    for call in sorted(due, key=lambda c: c.getTime()):
        if call.active():
            clock.calls.remove(call)  # type: ignore[arg-type]
            call.called = 1
            call.func(*call.args, **call.kw)


class FailingTransport(FakeDatagramTransport):
    """A transport whose writes fail like an unreachable network."""

    def write(self, packet: bytes, addr: Any = None) -> None:
        raise OSError(101, "Network is unreachable")


class HelloProtocolTests(SynchronousTestCase):
    """Sending, receiving and scheduling on one socket."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000.0)
        self.events: list[MembershipEvent] = []
        self.membership = Membership(IID, SETTINGS, started_at=0.0)
        self.names: dict[str, Deferred[str]] = {}
        self.proto = self.make(self.membership)
        self.transport = FakeDatagramTransport()

    def make(self, membership: Membership, **kwargs: Any) -> HelloProtocol:
        options: dict[str, Any] = {
            "observer": self.events.append,
            "resolver": self.resolve,
        }
        options.update(kwargs)
        return HelloProtocol(
            membership=membership,
            clock=self.clock,
            pid=PID,
            host_name="me-host",
            **options,
        )

    def resolve(self, name: str) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        self.names[name] = d
        return d

    def start(self, proto: HelloProtocol | None = None) -> FakeDatagramTransport:
        proto = proto or self.proto
        proto.makeConnection(self.transport)
        self.addCleanup(proto.doStop)
        return self.transport

    def sent(self) -> list[tuple[wire.Envelope, Any]]:
        """Decode and clear what was written."""
        out = [(wire.decode(p), a) for p, a in self.transport.written]
        self.transport.written.clear()
        return out

    def test_hello_at_start_and_fixed_rate(self) -> None:
        """One hello right after the bind, then one every helloInterval."""
        self.proto.add_destination("10.0.0.2", 12345)
        self.start()
        self.assertEqual(self.membership.started_at, 1000.0)
        ((envelope, address),) = self.sent()
        self.assertEqual(address, ("10.0.0.2", 12345))
        self.assertEqual(
            (envelope.event, envelope.pid, envelope.iid, envelope.host_name),
            ("hello", PID, IID, "me-host"),
        )
        assert isinstance(envelope.data, dict)
        self.assertEqual(envelope.data["address"], "127.0.0.1")
        self.clock.advance(0.999)
        self.assertEqual(self.sent(), [])
        self.clock.advance(0.001)
        self.assertEqual(len(self.sent()), 1)
        self.clock.advance(0.9)
        self.assertEqual(self.sent(), [])

    def test_fan_out_in_order(self) -> None:
        """Each hello goes once to every destination, in list order."""
        for host in ("10.0.0.3", "10.0.0.2", "10.0.0.3"):
            self.proto.add_destination(host, 12345)
        self.proto.add_destination("10.0.0.4", 5, source="registry")
        self.start()
        self.assertEqual(
            [a for _e, a in self.sent()],
            [("10.0.0.3", 12345), ("10.0.0.2", 12345), ("10.0.0.4", 5)],
        )

    def test_client_sends_no_hellos(self) -> None:
        """A client-only node sends no hellos but tracks peers."""
        membership = Membership(IID, evolve(SETTINGS, client=True), 0.0)
        proto = self.make(membership)
        proto.add_destination("10.0.0.2", 12345)
        self.start(proto)
        proto.datagramReceived(peer_hello(), PEER)
        self.clock.advance(5.0)
        self.assertEqual(self.transport.written, [])
        self.assertEqual([m.id for m in membership.members], [])  # timed out by now
        self.assertIn(Added, [type(e) for e in self.events])

    def test_receive_events_and_reply(self) -> None:
        """A new peer's hello gives added/master/helloReceived and a hello back."""
        self.start()
        self.proto.datagramReceived(peer_hello(master=True), PEER)
        self.assertEqual(
            [type(e) for e in self.events], [Added, MasterSeen, HelloReceived]
        )
        ((envelope, address),) = self.sent()
        self.assertEqual((envelope.event, address), ("hello", PEER))

    def test_learned_destination(self) -> None:
        """An accepted hello's source gets our hellos until the peer is removed."""
        self.start()
        self.proto.datagramReceived(peer_hello(), PEER)
        self.sent()
        self.clock.advance(1.0)
        self.assertEqual([a for _e, a in self.sent()], [PEER])
        self.clock.advance(1.2)  # silent for > nodeTimeout: removed
        self.assertIn(Removed, [type(e) for e in self.events])
        self.sent()
        self.assertEqual(self.proto.destinations(), [])

    def test_first_election_at_check_interval(self) -> None:
        """With static peers the first election runs just after checkInterval."""
        self.proto.add_destination("10.0.0.2", 12345)
        self.start()
        self.clock.advance(1.9)
        self.assertFalse(self.membership.is_master)
        self.sent()
        self.clock.pump([0.05, 0.05, 0.05])
        self.assertTrue(self.membership.is_master)
        self.assertIn(Promotion, [type(e) for e in self.events])
        envelope, _address = self.sent()[-1]
        assert isinstance(envelope.data, dict)
        self.assertTrue(envelope.data["isMaster"])  # announced at once

    def test_early_election_from_registry(self) -> None:
        """Alone in the registry, we promote at early_delay, not checkInterval."""
        self.start()
        self.proto.registry_view({IID: 3}, 3, 3)
        self.clock.pump([0.1] * 4)
        self.assertFalse(self.membership.is_master)
        self.clock.pump([0.1] * 2)
        self.assertTrue(self.membership.is_master)

    def test_registry_acknowledgement(self) -> None:
        """A peer heard before the registry lists it gets a hello once it is listed."""
        self.start()
        self.proto.datagramReceived(peer_hello(), PEER)
        self.sent()
        self.proto.registry_view({IID: 3, "peer": 2}, 3, 3)
        ((envelope, address),) = self.sent()
        assert isinstance(envelope.data, dict)
        self.assertEqual((address, envelope.data[EXTENSION_KEY]["hw"]), (PEER, 3))

    def test_peer_left(self) -> None:
        """A deleted registry record removes a member that has already left."""
        self.start()
        self.proto.datagramReceived(peer_hello(seq=1), PEER)
        self.proto.peer_left("peer")
        self.assertEqual(len(self.membership.members), 1)  # still eligible
        self.proto.datagramReceived(peer_hello(seq=2, isMasterEligible=False), PEER)
        self.proto.peer_left("peer")
        self.assertEqual(self.membership.members, ())

    def test_silent_member_removed_at_its_deadline(self) -> None:
        """A silent member goes just after nodeTimeout, with no periodic polling."""
        self.start()
        self.proto.datagramReceived(peer_hello(), PEER)
        self.clock.advance(2.0)
        self.assertNotIn(Removed, [type(e) for e in self.events])
        self.clock.advance(0.002)
        self.assertIn(Removed, [type(e) for e in self.events])

    def test_check_after_a_pause_reads_waiting_hellos_first(self) -> None:
        """A check that runs long overdue (SIGSTOP, then SIGCONT) waits one reactor
        turn: the hellos queued meanwhile keep their senders, and nobody promotes."""
        self.start()
        self.proto.datagramReceived(peer_hello(master=True), PEER)
        self.events.clear()
        self.clock.rightNow += 5.0  # the process was stopped: no timer ran
        run_due_calls(self.clock)  # the first turn after SIGCONT: timers only
        self.assertEqual(self.events, [])
        self.assertEqual(self.proto.paused_checks, 1)
        self.proto.datagramReceived(peer_hello(seq=2, master=True), PEER)
        run_due_calls(self.clock)  # the next turn: the check, with fresh hellos
        kinds = [type(e) for e in self.events]
        self.assertNotIn(Removed, kinds)
        self.assertNotIn(Promotion, kinds)
        self.assertFalse(self.membership.is_master)

    def test_check_on_time_is_not_deferred(self) -> None:
        """An ordinary check runs at once, and a silent peer still times out."""
        self.start()
        self.proto.datagramReceived(peer_hello(), PEER)
        self.clock.pump([0.05] * 42)
        self.assertIn(Removed, [type(e) for e in self.events])
        self.assertEqual(self.proto.paused_checks, 0)

    def test_idle_node_checks_at_node_discover_cadence(self) -> None:
        """While peers keep saying hello, the check wakes once per checkInterval."""
        ticks: list[float] = []

        class Counting(Membership):
            def tick(self, now: float) -> list[Any]:
                ticks.append(now)
                return super().tick(now)

        self.proto = self.make(Counting(IID, SETTINGS, started_at=0.0))
        self.start()
        for seq in range(1, 41):
            self.proto.datagramReceived(peer_hello(seq=seq), PEER)
            self.clock.advance(0.5)
        # 20 s of steady hellos: the two election phases, then every 2 s.
        self.assertLessEqual(len(ticks), 13)

    def test_masters_conflict_warning(self) -> None:
        """Two masters for longer than masterTimeout log a warning once."""
        self.proto.add_destination("10.0.0.2", 12345)
        self.start()
        self.proto.promote()
        with capturedLogs() as logs:
            for seq in range(1, 30):
                self.proto.datagramReceived(peer_hello(seq=seq, master=True), PEER)
                self.clock.advance(0.1)
        warnings = [e for e in logs if "masters for over" in e["log_format"]]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["count"], 2)

    def test_receive_rules(self) -> None:
        """R4, R5, R7, not-joined and bad datagrams are dropped and counted."""
        self.start()
        own = wire.encode(wire.Envelope("hello", PID, IID, None, {"isMaster": True}))
        same_process = wire.encode(wire.Envelope("jobs", PID, "sibling", None, 1))
        error = wire.encode(wire.Envelope("jobs", "p", "x", None, 1)).replace(
            b'"jobs"', b'"error"'
        )
        for datagram in (
            own,
            same_process,
            error,
            wire.encode(wire.Envelope("nobody", "p", "x", None, 1)),
            b"null",
            b"\xff",
            b'{"event":"hello","iid":"x","data":"ghost"}',
        ):
            self.proto.datagramReceived(datagram, PEER)
        self.assertEqual(
            dict(self.membership.dropped),
            {
                "own-instance": 1,
                "same-process": 1,
                "error-event": 1,
                "not-joined": 1,
                "not-object": 1,
                "bad-utf8": 1,
                "bad-hello-data": 1,
            },
        )
        self.assertEqual(self.events, [])

    def test_ignore_flags(self) -> None:
        """With ignoreInstance/ignoreProcess off we hear our own channel messages."""
        proto = self.make(self.membership, ignore_instance=False, ignore_process=False)
        self.start(proto)
        got: list[object] = []
        proto.subscribe("jobs", lambda payload, _e, _s: got.append(payload))
        proto.datagramReceived(
            wire.encode(wire.Envelope("jobs", PID, IID, None, 1)), PEER
        )
        proto.datagramReceived(
            wire.encode(wire.Envelope("jobs", PID, "x", None, 2)), PEER
        )
        own_hello = wire.encode(wire.Envelope("hello", PID, IID, None, {"a": 1}))
        proto.datagramReceived(own_hello, PEER)
        self.assertEqual(got, [1, 2])
        self.assertEqual(self.membership.members, ())

    @given(st.binary(max_size=200))
    @settings(max_examples=200, deadline=None)
    def test_never_raises(self, datagram: bytes) -> None:
        """No datagram makes datagramReceived raise."""
        proto = self.make(Membership(IID, SETTINGS, 0.0))
        proto.makeConnection(FakeDatagramTransport())
        try:
            proto.datagramReceived(datagram, PEER)
            proto.datagramReceived(
                b'{"event":"hello","iid":"a","data":{}}' + datagram, PEER
            )
        finally:
            proto.doStop()

    def test_internal_error_is_contained(self) -> None:
        """An unexpected error while handling a datagram is logged and counted."""

        class Broken(Membership):
            def hello_received(self, *_args: object) -> list[Any]:
                raise RuntimeError("boom")

        membership = Broken(IID, SETTINGS, 0.0)
        proto = self.make(membership)
        self.start(proto)
        proto.datagramReceived(peer_hello(), PEER)
        self.assertEqual(membership.dropped["internal-error"], 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_observer_errors_are_contained(self) -> None:
        """An observer that raises does not stop event processing."""
        calls: list[MembershipEvent] = []

        def observer(event: MembershipEvent) -> None:
            calls.append(event)
            raise ValueError("observer bug")

        proto = self.make(self.membership, observer=observer)
        self.start(proto)
        proto.datagramReceived(peer_hello(master=True), PEER)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 3)
        self.assertEqual(len(calls), 3)
        self.assertEqual(len(self.membership.members), 1)

    def test_send_errors_logged(self) -> None:
        """A failing write is logged, not raised."""
        self.transport = FailingTransport()
        self.proto.add_destination("10.0.0.2", 12345)
        with capturedLogs() as logs:
            self.start()
        self.assertTrue(any("failed" in e["log_format"] for e in logs))

    def test_oversized_hello_not_sent(self) -> None:
        """A hello over 65,507 bytes is reported and not sent."""
        self.proto.add_destination("10.0.0.2", 12345)
        self.membership.set_advertisement("x" * 70_000)
        with capturedLogs() as logs:
            self.start()
        self.assertEqual(self.transport.written, [])
        self.assertTrue(any("not sending" in e["log_format"] for e in logs))

    def test_set_advertisement(self) -> None:
        """A new advertisement goes out at once; a too large one is refused."""
        self.proto.add_destination("10.0.0.2", 12345)
        self.start()
        self.sent()
        self.proto.set_advertisement({"svc": "api"})
        ((envelope, _a),) = self.sent()
        assert isinstance(envelope.data, dict)
        self.assertEqual(envelope.data["advertisement"], {"svc": "api"})
        self.assertRaises(
            wire.MessageTooLarge, self.proto.set_advertisement, "x" * 70_000
        )
        self.assertEqual(self.membership.me()["advertisement"], {"svc": "api"})

    def test_large_datagram_warning(self) -> None:
        """A datagram above ~1,200 bytes logs a fragmentation warning once."""
        self.proto.add_destination("10.0.0.2", 12345)
        self.start()
        with capturedLogs() as logs:
            self.proto.set_advertisement("x" * 2000)
            self.proto.set_advertisement("y" * 2000)
        self.assertEqual(sum("fragmented" in e["log_format"] for e in logs), 1)
        self.assertEqual(len(self.transport.written), 3)

    def test_keyed(self) -> None:
        """With a key, datagrams are encrypted both ways; plain ones are dropped."""
        key = LegacyKey.from_password("secret")
        proto = self.make(self.membership, key=key)
        proto.add_destination("10.0.0.2", 12345)
        self.start(proto)
        packet, _address = self.transport.written[0]
        self.assertEqual(wire.decode(packet, key).iid, IID)
        proto.datagramReceived(peer_hello(), PEER)
        self.assertEqual(self.membership.dropped["bad-cipher"], 1)
        keyed = wire.encode(wire.decode(peer_hello()), key)
        proto.datagramReceived(keyed, PEER)
        self.assertEqual(len(self.membership.members), 1)

    def test_hello_to(self) -> None:
        """hello_to sends one hello at once, resolving a name first."""
        self.start()
        self.sent()
        self.proto.hello_to(("10.0.0.9", 7))
        self.assertEqual([a for _e, a in self.sent()], [("10.0.0.9", 7)])
        self.proto.hello_to(("node-b.example", 7))
        self.assertEqual(self.sent(), [])
        self.names["node-b.example"].callback("10.0.0.10")
        self.assertEqual([a for _e, a in self.sent()], [("10.0.0.10", 7)])

    def test_static_host_names(self) -> None:
        """Static peers given by name are resolved, then re-resolved periodically."""
        self.proto.add_destination("peer.example", 9)
        self.assertTrue(self.membership.static_peers)
        self.assertEqual(self.proto.destinations(), [])
        self.names.pop("peer.example").callback("10.1.1.1")
        self.assertEqual(self.proto.destinations(), [("10.1.1.1", 9)])
        self.start()
        self.clock.advance(self.proto.resolve_interval)
        self.names.pop("peer.example").callback("10.1.1.2")
        self.assertEqual(self.proto.destinations(), [("10.1.1.2", 9)])
        self.clock.advance(self.proto.resolve_interval)
        with capturedLogs() as logs:
            self.names.pop("peer.example").errback(OSError("no such host"))
        self.assertEqual(self.proto.destinations(), [("10.1.1.2", 9)])  # kept
        self.assertTrue(any("cannot resolve" in e["log_format"] for e in logs))

    def test_default_resolver_is_the_clock(self) -> None:
        """Without a resolver, the reactor's resolve() is used."""

        class ResolvingClock(Clock):
            def resolve(self, name: str) -> Deferred[str]:
                return succeed("10.2.2.2")

        proto = HelloProtocol(self.membership, ResolvingClock(), PID, None)
        proto.add_destination("peer.example", 9)
        self.assertEqual(proto.destinations(), [("10.2.2.2", 9)])
        bad = HelloProtocol(self.membership, Clock(), PID, None)
        with capturedLogs():
            bad.add_destination("peer.example", 9)
        self.assertEqual(bad.destinations(), [])

    def test_resolver_failure_and_non_ipv4(self) -> None:
        """A failed or non-IPv4 resolution leaves the destination unresolved."""
        proto = self.make(self.membership, resolver=lambda _n: fail(OSError("x")))
        with capturedLogs():
            proto.add_destination("a.example", 1)
        proto2 = self.make(self.membership, resolver=lambda _n: succeed("::1"))
        with capturedLogs():
            proto2.add_destination("b.example", 1)
        self.assertEqual(proto.destinations() + proto2.destinations(), [])

    def test_destination_validation(self) -> None:
        """Bad hosts, ports and sources are refused with ValueError."""
        for host, port in (
            ("", 1),
            ("a b", 1),
            ("::1", 1),
            ("host:1", 1),
            ("10.0.0.1", 0),
            ("10.0.0.1", 65536),
            ("10.0.0.1", "80"),
            ("10.0.0.1", True),
        ):
            with self.subTest(host=host, port=port):
                self.assertRaises(ValueError, self.proto.add_destination, host, port)
        self.assertRaises(ValueError, self.proto.add_destination, "10.0.0.1", 1, "x")

    def test_remove_destination(self) -> None:
        """A destination stays while any source lists it."""
        self.proto.add_destination("10.0.0.1", 1, "static")
        self.proto.add_destination("10.0.0.1", 1, "registry")
        self.proto.remove_destination("10.0.0.1", 1, "static")
        self.assertFalse(self.membership.static_peers)
        self.assertEqual(self.proto.destinations(), [("10.0.0.1", 1)])
        self.proto.remove_destination("10.0.0.1", 1, "registry")
        self.proto.remove_destination("10.0.0.1", 1, "registry")
        self.assertEqual(self.proto.destinations(), [])

    def test_registry_destinations_keep_early_election(self) -> None:
        """Registry destinations are not static peers."""
        self.proto.add_destination("10.0.0.1", 1, "registry")
        self.assertFalse(self.membership.static_peers)

    def test_leave(self) -> None:
        """leave() sends two ineligible non-master hellos, then a goodbye."""
        self.proto.add_destination("10.0.0.2", 12345)
        self.start()
        self.proto.promote()
        self.sent()
        self.events.clear()
        self.proto.leave()
        sent = [e for e, _a in self.sent()]
        self.assertEqual([e.event for e in sent], ["hello", "hello", BYE_EVENT])
        for envelope in sent[:2]:
            assert isinstance(envelope.data, dict)
            self.assertFalse(envelope.data["isMaster"])
            self.assertFalse(envelope.data["isMasterEligible"])
        assert isinstance(sent[2].data, dict)
        self.assertGreater(
            sent[2].data[EXTENSION_KEY]["seq"],
            sent[1].data[EXTENSION_KEY]["seq"],  # type: ignore[index]
        )
        self.assertEqual([type(e) for e in self.events], [Demotion])

    def test_goodbye_removes_peer(self) -> None:
        """A goodbye from a peer removes it at once."""
        self.start()
        self.proto.datagramReceived(peer_hello(seq=1), PEER)
        bye = wire.Envelope(
            BYE_EVENT, "p", "peer", None, {EXTENSION_KEY: {"v": 1, "seq": 2}}
        )
        self.proto.datagramReceived(wire.encode(bye), PEER)
        self.assertEqual(self.membership.members, ())
        self.assertIsInstance(self.events[-1], Removed)

    def test_publish_and_subscribe(self) -> None:
        """Channel messages go to every destination and reach the handler."""
        self.proto.add_destination("10.0.0.2", 12345)
        self.start()
        self.sent()
        self.proto.publish("jobs", {"id": 42})
        ((envelope, _a),) = self.sent()
        self.assertEqual((envelope.event, envelope.data), ("jobs", {"id": 42}))
        got: list[tuple[object, str, object]] = []
        unsubscribe = self.proto.subscribe(
            "jobs", lambda payload, env, source: got.append((payload, env.iid, source))
        )
        message = wire.encode(wire.Envelope("jobs", "p", "peer", None, [1]))
        self.proto.datagramReceived(message, PEER)
        self.assertEqual(got, [([1], "peer", PEER)])
        unsubscribe()
        unsubscribe()
        self.proto.datagramReceived(message, PEER)
        self.assertEqual(len(got), 1)
        self.assertEqual(self.membership.dropped["not-joined"], 1)

    def test_publish_refusals(self) -> None:
        """Reserved channels, falsy, non-JSON and oversized payloads are refused."""
        for channel in (
            "hello",
            "error",
            "master",
            "check",
            "helloReceived",
            "",
            BYE_EVENT,
        ):
            with self.subTest(channel=channel):
                self.assertRaises(ValueError, self.proto.publish, channel, 1)
                self.assertRaises(ValueError, self.proto.subscribe, channel, print)
        for payload in (None, False, 0, "", float("nan"), {1}):
            with self.subTest(payload=payload):
                self.assertRaises(ValueError, self.proto.publish, "jobs", payload)
        self.assertRaises(
            wire.MessageTooLarge, self.proto.publish, "jobs", "x" * 70_000
        )
        self.proto.subscribe("jobs", print)
        self.assertRaises(ValueError, self.proto.subscribe, "jobs", print)

    def test_handler_errors_are_contained(self) -> None:
        """A channel handler that raises is logged; later messages still arrive."""
        self.start()
        seen: list[object] = []

        def handler(payload: object, _e: wire.Envelope, _s: tuple[str, int]) -> None:
            seen.append(payload)
            raise KeyError(payload)

        self.proto.subscribe("jobs", handler)
        for n in (1, 2):
            self.proto.datagramReceived(
                wire.encode(wire.Envelope("jobs", "p", "x", None, n)), PEER
            )
        self.assertEqual(seen, [1, 2])
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 2)

    def test_stop_cancels_timers(self) -> None:
        """Stopping the protocol leaves no delayed calls behind."""
        self.proto.makeConnection(self.transport)
        self.assertTrue(self.clock.getDelayedCalls())
        self.proto.doStop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_not_started_sends_nothing(self) -> None:
        """Before the transport exists, sends are skipped quietly."""
        self.proto.hello_to(("10.0.0.1", 1))
        self.proto.publish("jobs", 1)

    def test_wire_bytes_of_a_hello(self) -> None:
        """Our hello is compact JSON in node-discover's key order."""
        self.proto.add_destination("10.0.0.2", 12345)
        self.start()
        packet, _address = self.transport.written[0]
        text = packet.decode()
        expected = (
            (
                '{"event":"hello","pid":"PID","iid":"IID","hostName":"me-host",'
                '"data":{"isMaster":false,"isMasterEligible":true,"weight":0.0,'
                '"address":"127.0.0.1","x-twistednode":{"v":1,"seq":1,'
            )
            .replace("PID", PID)
            .replace("IID", IID)
        )
        self.assertTrue(text.startswith(expected), text)
        self.assertEqual(json.loads(text)["data"]["x-twistednode"]["seq"], 1)


class RegistryAuthorityChannelTests(SynchronousTestCase):
    """Under the registry's authority a channel message counts only from a listed
    id at its record's address and port."""

    def test_channel_message_from_unlisted_or_elsewhere_is_dropped(self) -> None:
        """Unlisted ids and wrong addresses are dropped and counted; the member at
        its record's address is delivered."""
        clock = Clock()
        membership = Membership(
            IID, SETTINGS, started_at=0.0, authority=RegistryAuthority()
        )
        proto = HelloProtocol(
            membership=membership, clock=clock, pid=PID, host_name="me"
        )
        proto.makeConnection(FakeDatagramTransport())
        self.addCleanup(proto.doStop)
        membership.registry_view(
            0.0, {"peer": 3}, 3, None, peers={"peer": ListedPeer(*PEER, (3, 1.0))}
        )
        got: list[object] = []
        proto.subscribe("jobs", lambda payload, _e, _s: got.append(payload))
        for iid, source in [("stranger", PEER), ("peer", ("10.9.9.9", PEER[1]))]:
            message = wire.Envelope("jobs", "p", iid, None, {"forged": True})
            proto.datagramReceived(wire.encode(message), source)
        message = wire.Envelope("jobs", "p", "peer", None, {"real": True})
        proto.datagramReceived(wire.encode(message), PEER)
        self.assertEqual(got, [{"real": True}])
        self.assertEqual(
            (membership.dropped["unlisted"], membership.dropped["address"]), (1, 1)
        )
