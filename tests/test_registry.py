"""Tests for twistednode.registry: the pure member view, the service, the address."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, cast

import attrs
from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.servers import shared_minietcd, shared_real_etcd
from twistednode.backend import Change, Entry, Listing
from twistednode.etcdv2 import EtcdV2Backend, EtcdV2Client
from twistednode.record import MemberRecord
from twistednode.registry import (
    Member,
    MemberView,
    PeerAdded,
    PeerChanged,
    PeerEvent,
    PeerRemoved,
    Registry,
    RemovalReason,
    diff,
    local_address_towards,
    udp_source_address,
)


def make_id(n: int) -> str:
    return str(uuid.UUID(int=n))


OWN = make_id(1)
A = make_id(2)
B = make_id(3)
NOT_UUID = '{"id":"not-a-uuid","address":"127.0.0.1","port":1,"weight":0,"startedAt":0}'


def rec(member_id: str, port: int = 4000, **changes: Any) -> MemberRecord:
    r = MemberRecord(id=member_id, address="127.0.0.1", port=port, host_name="h")
    return attrs.evolve(r, **changes)


def entry(member_id: str, created: int, port: int = 4000) -> Entry:
    return Entry(member_id, rec(member_id, port).to_json(), created, created)


class DiffTests(SynchronousTestCase):
    def test_diff(self) -> None:
        """diff reports removals, additions (by createdIndex) and changed records."""
        old = {A: Member(rec(A), 5), B: Member(rec(B), 6)}
        c = make_id(4)
        new = {
            B: Member(rec(B, 4001), 6),
            c: Member(rec(c), 9),
            OWN: Member(rec(OWN), 2),
        }
        self.assertEqual(
            diff(old, new, OWN),
            (
                PeerRemoved(A, "vanished"),
                PeerChanged(rec(B, 4001)),
                PeerAdded(rec(c), 9),
            ),
        )

    def test_own_never_reported(self) -> None:
        """Our own record appearing, changing or leaving is never a peer event."""
        self.assertEqual(diff({}, {OWN: Member(rec(OWN), 1)}, OWN), ())
        self.assertEqual(diff({OWN: Member(rec(OWN), 1)}, {}, OWN), ())

    def test_unchanged_is_silent(self) -> None:
        """An identical record (even re-created with a new index) is no event."""
        self.assertEqual(diff({A: Member(rec(A), 5)}, {A: Member(rec(A), 8)}, OWN), ())


class MemberViewTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.view = MemberView(OWN)

    def test_listing(self) -> None:
        """A listing adds valid peers, keeps ours out of the peers, sets the index."""
        update = self.view.apply_listing(
            Listing((entry(OWN, 3), entry(A, 4), entry(B, 5)), 9)
        )
        self.assertEqual(update.events, (PeerAdded(rec(A), 4), PeerAdded(rec(B), 5)))
        self.assertEqual(self.view.index, 9)
        self.assertEqual(self.view.own_index, 3)
        self.assertEqual(self.view.created_indexes(), {OWN: 3, A: 4, B: 5})
        self.assertEqual(set(self.view.peers()), {A, B})

    def test_relisting_diffs(self) -> None:
        """A second listing reports only what changed, removals as "vanished"."""
        self.view.apply_listing(Listing((entry(A, 4), entry(B, 5)), 9))
        update = self.view.apply_listing(Listing((entry(B, 5, port=4001),), 20))
        self.assertEqual(
            update.events, (PeerRemoved(A, "vanished"), PeerChanged(rec(B, 4001)))
        )

    def test_bad_values_ignored(self) -> None:
        """Invalid values, directories and id mismatches are rejected, not peers."""
        bad = (
            Entry(A, "{oops", 4, 4),
            Entry(B, None, 5, 5),
            Entry(make_id(9), rec(A).to_json(), 6, 6),
            Entry("not-a-uuid", NOT_UUID, 7, 7),
        )
        update = self.view.apply_listing(Listing((*bad, entry(make_id(5), 8)), 9))
        self.assertEqual(update.events, (PeerAdded(rec(make_id(5)), 8),))
        reasons = dict(update.rejected)
        self.assertIn("not JSON", reasons[A])
        self.assertIn("directory", reasons[B])
        self.assertIn("does not match its key", reasons[make_id(9)])
        self.assertIn("not a UUID", reasons["not-a-uuid"])

    def test_changes(self) -> None:
        """put adds or changes, delete and expire remove with their own reason."""
        self.view.apply_listing(Listing((entry(A, 4),), 9))
        events: list[PeerEvent] = []
        for change in (
            Change("put", B, rec(B).to_json(), 10, 10),
            Change("put", A, rec(A, 4001).to_json(), 4, 11),
            Change("deleted", A, None, 4, 12),
            Change("expired", B, None, 10, 13),
            Change("deleted", A, None, 4, 14),
        ):
            events.extend(self.view.apply_change(change).events)
        self.assertEqual(
            events,
            [
                PeerAdded(rec(B), 10),
                PeerChanged(rec(A, 4001)),
                PeerRemoved(A, "deleted"),
                PeerRemoved(B, "expired"),
            ],
        )
        self.assertEqual(self.view.index, 14)
        self.assertEqual(self.view.members, {})

    def test_change_to_bad_value_removes(self) -> None:
        """A peer whose record is overwritten by junk leaves the view ("vanished")."""
        self.view.apply_listing(Listing((entry(A, 4),), 9))
        update = self.view.apply_change(Change("put", A, "junk", 4, 10))
        self.assertEqual(update.events, (PeerRemoved(A, "vanished"),))
        self.assertEqual(update.rejected[0][0], A)
        self.assertEqual(self.view.peers(), {})

    def test_directory_removed(self) -> None:
        """The members directory deleted or expired removes every peer at once."""
        self.view.apply_listing(Listing((entry(OWN, 3), entry(A, 4), entry(B, 5)), 9))
        update = self.view.apply_change(Change("deleted", "", None, 2, 10))
        self.assertEqual(
            update.events, (PeerRemoved(A, "deleted"), PeerRemoved(B, "deleted"))
        )
        self.assertIsNone(self.view.own_index)

    def test_own_record_changes(self) -> None:
        """Our own record's changes move own_index but make no peer events."""
        update = self.view.apply_change(Change("put", OWN, rec(OWN).to_json(), 7, 7))
        self.assertEqual((update.events, self.view.own_index), ((), 7))
        update = self.view.apply_change(Change("expired", OWN, None, 7, 8))
        self.assertEqual((update.events, self.view.own_index), ((), None))

    def test_nested_and_directory_puts_ignored(self) -> None:
        """A key nested below a member and a put on the directory change nothing."""
        self.view.apply_listing(Listing((entry(A, 4),), 9))
        self.assertEqual(
            self.view.apply_change(Change("deleted", A + "/x", None, 10, 10)).events, ()
        )
        self.assertEqual(
            self.view.apply_change(Change("put", "", None, 2, 11)).events, ()
        )
        self.assertEqual(set(self.view.peers()), {A})
        self.assertEqual(self.view.index, 11)


class LocalAddressTests(SynchronousTestCase):
    def test_uses_url_host_and_port(self) -> None:
        """The connect function gets the URL's host and port (default 80/443)."""
        calls: list[tuple[str, int]] = []

        def connect(host: str, port: int) -> str:
            calls.append((host, port))
            return "10.1.2.3"

        self.assertEqual(
            local_address_towards("http://etcd.example:2379", connect), "10.1.2.3"
        )
        local_address_towards("http://etcd.example", connect)
        local_address_towards("https://[::1]/", connect)
        self.assertEqual(
            calls, [("etcd.example", 2379), ("etcd.example", 80), ("::1", 443)]
        )

    def test_errors(self) -> None:
        """No host, a bad port, no route or a non-IP answer are clear ValueErrors."""

        def unreachable(host: str, port: int) -> str:
            raise OSError(101, "Network is unreachable")

        with self.assertRaises(ValueError):
            local_address_towards("http://:2379", lambda h, p: "1.2.3.4")
        with self.assertRaises(ValueError):
            local_address_towards("http://a:99999", lambda h, p: "1.2.3.4")
        with self.assertRaises(ValueError) as caught:
            local_address_towards("http://a:1", unreachable)
        self.assertIn("Network is unreachable", str(caught.exception))
        with self.assertRaises(ValueError):
            local_address_towards("http://a:1", lambda h, p: "hostname")

    def test_loopback_route(self) -> None:
        """The real UDP trick finds 127.0.0.1 towards a loopback server."""
        self.assertEqual(udp_source_address("127.0.0.1", 2379), "127.0.0.1")
        self.assertIn(udp_source_address("localhost", 2379), ("127.0.0.1", "::1"))


@define
class RecordingListener:
    """A RegistryListener that keeps what it is told."""

    events: list[tuple[str, str, object]] = field(factory=list)
    views: list[tuple[dict[str, int], int, int | None]] = field(factory=list)

    def peer_added(self, record: MemberRecord, created_index: int) -> None:
        self.events.append(("added", record.id, created_index))

    def peer_changed(self, record: MemberRecord) -> None:
        self.events.append(("changed", record.id, record.advertisement))

    def peer_removed(self, record_id: str, reason: RemovalReason) -> None:
        self.events.append(("removed", record_id, reason))

    def view_changed(
        self, members: Mapping[str, int], view_index: int, own_index: int | None
    ) -> None:
        self.views.append((dict(members), view_index, own_index))


async def eventually(
    condition: Callable[[], bool], what: str, timeout: float = 10.0
) -> None:
    """Poll C{condition} on the real reactor until it holds, for C{timeout} s."""
    from twisted.internet import reactor

    clock = cast(IReactorTime, reactor)
    deadline = clock.seconds() + timeout
    while not condition():
        if clock.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await deferLater(clock, 0.02)


class RegistryIntegrationMixin:
    """Two registries on a real server see each other join, change and leave."""

    def server_url(self) -> str:
        raise NotImplementedError

    def registry(
        self, cluster: str, member_id: str, port: int
    ) -> tuple[Registry, RecordingListener]:
        from twisted.internet import reactor

        listener = RecordingListener()
        client = EtcdV2Client(reactor, [self.server_url()])
        registry = Registry(
            backend=EtcdV2Backend(client),
            cluster=cluster,
            listener=listener,
            clock=reactor,
            record=rec(member_id, port),
        )
        return registry, listener

    def test_join_change_leave(self) -> Deferred[None]:
        """Peers appear, change, leave cleanly ("deleted") and expire ("expired")."""
        return Deferred.fromCoroutine(self._join_change_leave())

    async def _join_change_leave(self) -> None:
        from twisted.internet import reactor

        cluster = "it-" + uuid.uuid4().hex[:12]
        a, heard_a = self.registry(cluster, A, 5001)
        b, heard_b = self.registry(cluster, B, 5002)
        a.startService()
        try:
            await eventually(lambda: a.state == "watching", "A registered")
            b.startService()
            await eventually(lambda: B in a.peers and A in b.peers, "A and B meet")
            self.assertEqual(a.peers[B], rec(B, 5002))
            self.assertEqual(b.peers[A], rec(A, 5001))
            self.assertEqual([e[:2] for e in heard_a.events], [("added", B)])
            self.assertEqual([e[:2] for e in heard_b.events], [("added", A)])
            await eventually(lambda: set(heard_a.views[-1][0]) == {A, B}, "A's view")
            members, view_index, own_index = heard_a.views[-1]
            self.assertEqual(own_index, a.own_index)
            self.assertEqual(members[A], a.own_index)
            self.assertEqual(members[B], b.own_index)
            self.assertLess(members[A], members[B])
            self.assertGreaterEqual(view_index, members[B])

            created = b.own_index
            b.set_record(attrs.evolve(rec(B, 5002), advertisement={"v": 2}))
            await eventually(
                lambda: a.peers[B].advertisement == {"v": 2}, "A sees B's change"
            )
            self.assertEqual(b.own_index, created, "a rewrite keeps createdIndex")
            self.assertEqual(heard_a.events[-1], ("changed", B, {"v": 2}))

            await b.stopService()
            await eventually(lambda: B not in a.peers, "A sees B leave")
            self.assertEqual(heard_a.events[-1], ("removed", B, "deleted"))

            crashed = make_id(77)
            writer = EtcdV2Client(reactor, [self.server_url()])
            try:
                await writer.create(
                    f"{a.directory}/{crashed}", rec(crashed, 5003).to_json(), ttl=1
                )
                await eventually(lambda: crashed in a.peers, "A sees C")
                await eventually(lambda: crashed not in a.peers, "C expires")
                self.assertEqual(heard_a.events[-1], ("removed", crashed, "expired"))
            finally:
                await writer.close()
        finally:
            await a.stopService()
            if b.running:
                await b.stopService()
        self.assertEqual(a.state, "stopped")
        check = EtcdV2Client(reactor, [self.server_url()])
        try:
            listing = await EtcdV2Backend(check).list(a.directory)
        finally:
            await check.close()
        self.assertEqual(listing.entries, (), "clean stops deleted both records")


class RealEtcdRegistryTests(RegistryIntegrationMixin, TestCase):
    def setUp(self) -> None:
        self.etcd = shared_real_etcd()

    def server_url(self) -> str:
        return self.etcd.url


class MiniEtcdRegistryTests(RegistryIntegrationMixin, TestCase):
    def setUp(self) -> None:
        self.minietcd = shared_minietcd()

    def server_url(self) -> str:
        return self.minietcd.url
