"""The UDP adapter with a keyring: it seals what it sends and opens what it reads,
and drops (as "auth") everything else before any JSON parsing."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.discovery.test_protocol import IID, PEER, PID, SETTINGS, peer_hello
from twistednode.discovery import wire
from twistednode.discovery.membership import BYE_EVENT, EXTENSION_KEY, Membership
from twistednode.discovery.protocol import HelloProtocol
from twistednode.trust.keyring import Keyring
from twistednode.trust.seal import OVERHEAD, Sealer

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


class SealedProtocolTests(SynchronousTestCase):
    """Sealing on one socket, with FakeDatagramTransport and a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_764_800_000.0)
        self.membership = Membership(IID, SETTINGS, started_at=0.0)
        self.handled: list[object] = []
        self.proto = HelloProtocol(
            membership=self.membership,
            clock=self.clock,
            pid=PID,
            host_name="me-host",
            sealer=Sealer(Keyring((KEY,)), "prod"),
        )
        self.proto.subscribe("jobs", lambda payload, *_: self.handled.append(payload))
        self.transport = FakeDatagramTransport()
        self.proto.makeConnection(self.transport)
        self.addCleanup(self.proto.doStop)
        self.peer = Sealer(Keyring((KEY,)), "prod")

    def sealed(self, datagram: bytes, sealer: Sealer | None = None) -> bytes:
        return (sealer or self.peer).seal(self.clock.seconds(), datagram)

    def receive(self, datagram: bytes) -> None:
        self.proto.datagramReceived(datagram, PEER)

    def test_sent_hellos_are_sealed(self) -> None:
        """A hello leaves sealed: no JSON on the wire, and the peer opens it."""
        self.proto.add_destination(*PEER)
        self.proto.hello_to(PEER)
        ((packet, _addr),) = self.transport.written
        self.assertNotIn(b"isMaster", packet)
        plain = self.peer.open(self.clock.seconds(), packet)
        self.assertEqual(wire.decode(plain).iid, IID)
        self.assertEqual(len(packet), len(plain) + OVERHEAD)

    def test_sealed_hello_is_accepted(self) -> None:
        """A hello sealed with our key and cluster adds the member."""
        self.receive(self.sealed(peer_hello()))
        self.assertEqual([m.id for m in self.membership.members], ["peer"])

    def test_unsealed_hello_is_dropped_as_auth(self) -> None:
        """Plain node-discover JSON is dropped, counted "auth", never parsed."""
        self.receive(peer_hello(master=True, weight=1e300))
        self.assertEqual(self.membership.members, ())
        self.assertEqual(dict(self.membership.dropped), {"auth": 1})

    def test_other_clusters_datagram_is_dropped(self) -> None:
        """A hello of another cluster under the same key does not open."""
        staging = Sealer(Keyring((KEY,)), "staging")
        self.receive(self.sealed(peer_hello(), staging))
        self.assertEqual(self.membership.members, ())
        self.assertEqual(self.membership.dropped["auth"], 1)

    def test_other_key_is_dropped(self) -> None:
        """A hello sealed with a key we do not hold is dropped."""
        self.receive(self.sealed(peer_hello(), Sealer(Keyring((OTHER,)), "prod")))
        self.assertEqual(self.membership.dropped["auth"], 1)

    def test_replayed_hello_is_dropped(self) -> None:
        """The same sealed hello twice: the second is a replay, dropped as auth."""
        datagram = self.sealed(peer_hello())
        self.receive(datagram)
        self.receive(datagram)
        self.assertEqual(self.membership.dropped["auth"], 1)

    def test_forged_goodbye_does_not_remove(self) -> None:
        """An unsealed goodbye in a member's name leaves the member in place."""
        self.receive(self.sealed(peer_hello()))
        bye = wire.Envelope(
            BYE_EVENT, "other-pid", "peer", None, {EXTENSION_KEY: {"v": 1, "seq": 9}}
        )
        self.receive(wire.encode(bye))
        self.assertEqual([m.id for m in self.membership.members], ["peer"])
        self.assertEqual(self.membership.dropped["auth"], 1)

    def test_sealed_channel_message_is_delivered_and_forged_one_not(self) -> None:
        """The handler sees a sealed message, never an unsealed one."""
        message = wire.encode(wire.Envelope("jobs", "other-pid", "peer", None, "run"))
        self.receive(message)
        self.receive(self.sealed(message))
        self.assertEqual(self.handled, ["run"])

    def test_published_message_is_sealed(self) -> None:
        """publish() seals too."""
        self.proto.add_destination(*PEER)
        self.transport.written.clear()
        self.proto.publish("jobs", {"n": 1})
        ((packet, _),) = self.transport.written
        envelope = wire.decode(self.peer.open(self.clock.seconds(), packet))
        self.assertEqual((envelope.event, envelope.data), ("jobs", {"n": 1}))

    def test_too_large_after_sealing_is_refused(self) -> None:
        """A payload that fits unsealed but not with the seal's overhead."""
        self.proto.add_destination(*PEER)
        fits_plain = wire.MAX_DATAGRAM - 100
        probe = wire.encode(wire.Envelope("jobs", PID, IID, "me-host", "x"))
        payload = "x" * (fits_plain - len(probe) + 1 + 60)
        self.assertRaises(wire.MessageTooLarge, self.proto.publish, "jobs", payload)

    def test_garbage_never_raises(self) -> None:
        """Random sealed-looking bytes are counted, never an internal error."""
        for size in range(0, 120, 7):
            self.receive(b"\xffTN\x01" + bytes(size))
        self.assertNotIn("internal-error", self.membership.dropped)

    def test_unsealed_key_is_not_parsed(self) -> None:
        """Even valid-looking JSON of a node-discover peer is not a drop reason of
        the JSON layer: nothing past the seal check ran."""
        self.receive(b"not json at all")
        self.assertEqual(dict(self.membership.dropped), {"auth": 1})
