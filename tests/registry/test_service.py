"""Tests for twistednode.registry.service: the record kept alive, the peers reported."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import attrs
from attrs import define, field
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from minietcd.api import KeysAPI
from tests.etcd.test_v2 import RefusingHosts
from tests.harness.servers import shared_minietcd, shared_real_etcd
from twistednode.etcd.v2 import EtcdResult, EtcdV2Client, EtcdV2Error
from twistednode.registry.backend import Entry
from twistednode.registry.record import MemberRecord
from twistednode.registry.service import Registry
from twistednode.registry.v2 import EtcdV2Backend
from twistednode.registry.view import (
    MAX_RECORD_BYTES,
    RemovalReason,
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


@define(eq=False)
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


class Tap(Resource):
    """In front of minietcd's resource: records requests so a test can drop their
    connections (etcd crashed), and can hold DELETEs or watches forever (hung)."""

    isLeaf = True

    def __init__(self, inner: IResource) -> None:
        super().__init__()
        self.inner = inner
        self.requests: list[Request] = []
        self.hold_deletes = False
        self.hold_watches = False

    def render(self, request: Request) -> bytes | int:
        self.requests.append(request)
        if self.hold_deletes and request.method == b"DELETE":
            return NOT_DONE_YET
        if self.hold_watches and b"wait=true" in request.uri:
            return NOT_DONE_YET
        return cast(bytes | int, self.inner.render(request))

    def drop_connections(self) -> None:
        for request in self.requests:
            if not request.finished and request.transport is not None:
                request.transport.loseConnection()


class RegistryServiceTests(SynchronousTestCase):
    """The registry over minietcd's KeysAPI through StubTreq, on a task.Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        # etcd (and minietcd) ignore expirations before 2000: start at a real date.
        self.clock.advance(1_764_165_000)
        self.api = KeysAPI(self.clock)
        self.addCleanup(self.api.stop)
        self.stubs: list[StubTreq] = []
        self.writer = self.client()
        self.registries: list[Registry] = []
        self.listeners: list[RecordingListener] = []
        self.addCleanup(self.stop_all)

    def client(self, resource: IResource | None = None) -> EtcdV2Client:
        """A v2 client on its own StubTreq (so its traffic flushes only itself)."""
        stub = StubTreq(resource or self.api.resource())
        self.stubs.append(stub)
        http = RefusingHosts(stub)
        return EtcdV2Client(self.clock, ["http://etcd:2379"], http=http)

    def registry(
        self,
        record: MemberRecord | None,
        listener: Any = None,
        client: EtcdV2Client | None = None,
        **kwargs: Any,
    ) -> tuple[Registry, RecordingListener]:
        listener = listener or RecordingListener()
        registry = Registry(
            backend=EtcdV2Backend(client or self.client()),
            cluster="c",
            listener=listener,
            clock=self.clock,
            record=record,
            random=lambda: 0.0,
            **kwargs,
        )
        self.registries.append(registry)
        if isinstance(listener, RecordingListener):
            self.listeners.append(listener)
        return registry, listener

    def stop_all(self) -> None:
        for registry in self.registries:
            if registry.running:
                d = registry.stopService()
                self.flush()
                self.successResultOf(d)
        self.flush()
        self.assertEqual(self.api.store.watcher_count, 0, "a watch was left behind")
        for listener in self.listeners:
            for members, view_index, own_index in listener.views:
                if own_index is not None:
                    self.assertLessEqual(own_index, view_index)
                    self.assertIn(own_index, members.values())

    def flush(self) -> None:
        for _ in range(3):
            for stub in self.stubs:
                stub.flush()

    def run_for(self, seconds: float, step: float = 0.05) -> None:
        """Let C{seconds} pass on the clock, delivering HTTP traffic as it goes."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            self.flush()

    def key(self, member_id: str) -> str:
        return f"/twistednode/c/members/{member_id}"

    def stored(self, member_id: str) -> EtcdResult | None:
        """Our view of the key in the store (None if it is not there)."""
        d = self.writer.get(self.key(member_id))
        self.flush()
        found: list[EtcdResult | None] = []
        d.addCallbacks(
            found.append, lambda f: found.append(f.trap(EtcdV2Error) and None)
        )
        return found[0]

    def write(self, member_id: str, value: str, ttl: int | None = 10) -> int:
        d = self.writer.set(self.key(member_id), value, ttl=ttl)
        self.flush()
        return self.successResultOf(d).node.modified_index

    def remove(self, member_id: str) -> None:
        self.successResultOf(self.writer.delete(self.key(member_id)))
        self.flush()

    def start(
        self, record: MemberRecord, **kwargs: Any
    ) -> tuple[Registry, RecordingListener]:
        registry, listener = self.registry(record, **kwargs)
        registry.startService()
        self.flush()
        self.assertEqual(registry.state, "watching")
        return registry, listener

    def test_registers_and_watches(self) -> None:
        """Start writes our record with the TTL, lists, and reports our own index."""
        registry, heard = self.start(rec(OWN))
        stored = self.stored(OWN)
        assert stored is not None
        self.assertEqual(MemberRecord.from_json(stored.node.value or "", OWN), rec(OWN))
        self.assertEqual(stored.node.ttl, 10)
        own = registry.own_index
        self.assertEqual(heard.views[-1], ({OWN: own}, heard.views[-1][1], own))
        self.assertGreaterEqual(heard.views[-1][1], cast(int, own))
        self.assertEqual(heard.events, [])
        self.assertEqual(registry.endpoint, "http://etcd:2379")
        self.assertEqual(registry.stats.lists, 1)

    def test_lists_before_it_writes_its_record(self) -> None:
        """The listing is asked for before the record is written, so a joining node
        knows its peers before they learn of it; its own record comes by the watch."""
        tap = Tap(self.api.resource())
        registry, heard = self.start(rec(OWN), client=self.client(tap))
        kinds = [(r.method, b"wait=true" in r.uri) for r in tap.requests]
        self.assertLess(kinds.index((b"GET", False)), kinds.index((b"PUT", False)))
        own = registry.own_index
        self.assertIsNotNone(own)
        self.assertEqual(heard.views[-1][0], {OWN: own})

    def test_status_document(self) -> None:
        """status() summarises state, endpoint, indices, peers and counters as JSON."""
        registry, _ = self.start(rec(OWN))
        self.write(A, rec(A, 4100).to_json())
        status = registry.status()
        json.dumps(status)
        self.assertEqual(status["state"], "watching")
        self.assertEqual(status["endpoint"], "http://etcd:2379")
        self.assertEqual(status["ownIndex"], registry.own_index)
        self.assertEqual(status["viewIndex"], registry.view_index)
        self.assertEqual(
            status["peers"],
            {A: {"address": "127.0.0.1", "port": 4100, "hostName": "h"}},
        )
        self.assertEqual(status["counters"]["lists"], 1)
        self.assertIsNone(status["lastError"])

    def test_refreshes_well_inside_ttl(self) -> None:
        """The record is refreshed every ttl/3 and never expires or changes index."""
        registry, heard = self.start(rec(OWN))
        own = registry.own_index
        for _ in range(12):
            self.run_for(3.0)
            stored = self.stored(OWN)
            assert stored is not None
            self.assertGreaterEqual(cast(int, stored.node.ttl), 6)
        self.assertEqual(registry.own_index, own)
        self.assertGreaterEqual(registry.stats.refreshes, 10)
        self.assertEqual(registry.stats.recreations, 0)
        self.assertEqual(heard.events, [])

    def test_peer_join_seen_at_once(self) -> None:
        """A peer's new record is reported without any clock advance."""
        registry, heard = self.start(rec(OWN))
        index = self.write(A, rec(A, 4100).to_json())
        self.assertEqual(heard.events, [("added", A, index)])
        self.assertEqual(registry.peers, {A: rec(A, 4100)})
        self.assertEqual(heard.views[-1][0], {OWN: registry.own_index, A: index})
        self.assertEqual(heard.views[-1][1], index)

    def test_peer_deleted_removed_at_once(self) -> None:
        """A peer's deleted record is reported as "deleted" at once."""
        registry, heard = self.start(rec(OWN))
        self.write(A, rec(A).to_json())
        self.remove(A)
        self.assertEqual(heard.events[-1], ("removed", A, "deleted"))
        self.assertEqual(registry.peers, {})

    def test_peer_expiry(self) -> None:
        """A peer whose record's TTL runs out is reported as "expired"."""
        registry, heard = self.start(rec(OWN))
        self.write(A, rec(A).to_json(), ttl=2)
        self.run_for(1.5)
        self.assertIn(A, registry.peers)
        self.run_for(1.0)
        self.assertEqual(heard.events[-1], ("removed", A, "expired"))
        self.assertEqual(set(registry.members), {OWN})

    def test_peer_changes(self) -> None:
        """A peer rewriting its record is reported with the new record."""
        registry, heard = self.start(rec(OWN))
        self.write(A, rec(A).to_json())
        self.write(A, rec(A, advertisement={"x": 1}).to_json())
        self.assertEqual(heard.events[-1], ("changed", A, {"x": 1}))

    def test_watch_gap_relists(self) -> None:
        """After a 401 (over 1000 events missed) a re-list finds every change."""
        self.write(A, rec(A).to_json())
        registry, heard = self.start(rec(OWN))
        # B's event goes out on the watch stream, which the server then ends; the
        # answer waits in the fake network while 1100 other writes push B's index
        # out of etcd's history window, so the next watch cannot resume.
        d = self.writer.set(self.key(B), rec(B).to_json(), ttl=10)
        self.stubs[0].flush()
        self.successResultOf(d)
        self.api.stop()
        for n in range(1100):
            self.api.store.set("/elsewhere", str(n), self.clock.seconds())
        self.successResultOf(self.writer.delete(self.key(A)))
        c = make_id(4)
        self.successResultOf(self.writer.set(self.key(c), rec(c).to_json(), ttl=10))
        self.stubs[0].flush()
        self.flush()
        self.assertEqual(set(registry.peers), {B, c})
        self.assertEqual(
            [e[:2] for e in heard.events],
            [("added", A), ("added", B), ("removed", A), ("added", c)],
        )
        self.assertEqual(heard.events[2], ("removed", A, "vanished"))
        self.assertEqual(registry.stats.watch_restarts, 1)
        self.assertEqual(registry.stats.lists, 2)
        self.assertEqual(registry.state, "watching")

    def test_watch_ended_by_the_server_loses_no_change(self) -> None:
        """A watch the server ends is followed by another (resumed after the last
        event it carried, or after a re-list): a change made meanwhile is found."""
        registry, heard = self.start(rec(OWN))
        self.api.stop()  # ends every open watch
        self.write(A, rec(A).to_json())  # no watcher is registered for this one
        self.flush()
        self.assertEqual(heard.events, [("added", A, registry.members[A])])
        self.assertEqual(self.api.store.watcher_count, 1, "watching again")
        self.write(B, rec(B).to_json())
        self.assertEqual(heard.events[-1][:2], ("added", B))

    def test_etcd_gone_and_back(self) -> None:
        """Peers are kept while etcd is unreachable; the expired record comes back."""
        tap = Tap(self.api.resource())
        flaky = self.client(tap)
        registry, heard = self.start(rec(OWN), client=flaky)
        peer, heard_by_peer = self.start(rec(A))
        self.flush()
        self.assertEqual(set(registry.peers), {A})
        own = registry.own_index

        cast(RefusingHosts, flaky._http).down.add("etcd")
        tap.drop_connections()
        self.flush()
        self.run_for(1.0)
        self.assertEqual(registry.state, "unreachable")
        self.assertIn("unreachable", registry.last_error or "")
        self.run_for(12.0)
        self.assertEqual(heard_by_peer.events[-1], ("removed", OWN, "expired"))
        self.assertEqual(set(registry.peers), {A}, "the last known peers are kept")
        self.assertEqual(registry.state, "unreachable")

        cast(RefusingHosts, flaky._http).down.clear()
        self.run_for(6.0)
        self.assertEqual(registry.state, "watching")
        self.assertEqual(registry.stats.recreations, 1)
        self.assertIsNotNone(self.stored(OWN))
        self.assertGreater(cast(int, registry.own_index), cast(int, own))
        self.assertEqual(heard_by_peer.events[-1][:2], ("added", OWN))
        self.assertEqual(heard.views[-1][2], registry.own_index)
        self.assertGreater(registry.stats.errors, 0)

    def test_own_record_deleted_is_recreated(self) -> None:
        """Someone deleting our record makes us write it again at once."""
        registry, heard = self.start(rec(OWN))
        own = registry.own_index
        self.remove(OWN)
        self.flush()
        self.assertIsNotNone(self.stored(OWN))
        self.assertEqual(registry.stats.recreations, 1)
        self.assertGreater(cast(int, registry.own_index), cast(int, own))
        self.assertEqual(heard.views[-1][2], registry.own_index)
        self.assertEqual(heard.events, [])

    def test_own_record_expired_is_recreated(self) -> None:
        """A refresh answered 404 (the record expired unseen) leads to a new create."""
        tap = Tap(self.api.resource())
        registry, heard = self.start(rec(OWN), client=self.client(tap))
        own = registry.own_index
        tap.hold_watches = True
        tap.drop_connections()  # the next watch hangs: the registry sees nothing
        self.flush()
        self.assertEqual(registry.stats.watch_restarts, 1)
        # Expire the record behind the registry's back: a 1 s TTL.
        self.successResultOf(self.writer.update(self.key(OWN), "{}", ttl=1))
        self.run_for(1.2)
        self.assertIsNone(self.stored(OWN))
        self.assertEqual(registry.stats.recreations, 0)
        self.run_for(2.5)  # the refresh due at ttl/3 finds it gone
        self.assertEqual(registry.stats.recreations, 1)
        stored = self.stored(OWN)
        assert stored is not None
        self.assertEqual(MemberRecord.from_json(stored.node.value or ""), rec(OWN))
        self.assertGreater(cast(int, registry.own_index), cast(int, own))

    def test_own_record_overwritten_is_rewritten(self) -> None:
        """Junk written over our record is replaced by our record, same index."""
        registry, _ = self.start(rec(OWN))
        own = registry.own_index
        self.write(OWN, "junk")
        self.flush()
        stored = self.stored(OWN)
        assert stored is not None
        self.assertEqual(MemberRecord.from_json(stored.node.value or ""), rec(OWN))
        self.assertEqual(registry.stats.rewrites, 1)
        self.assertEqual(registry.stats.recreations, 0)
        self.assertNotEqual(registry.own_index, own, "a set replaced the key")

    def test_bad_values_ignored(self) -> None:
        """Junk, misnamed and nested keys are logged and ignored, not peers."""
        registry, heard = self.start(rec(OWN))
        self.write(A, "junk")
        self.write("not-a-uuid", rec(B).to_json())
        self.successResultOf(self.writer.set(self.key(B) + "/x", "1"))
        self.flush()
        self.write(make_id(4), rec(make_id(4)).to_json())
        self.assertEqual(
            heard.events, [("added", make_id(4), registry.members[make_id(4)])]
        )
        self.assertEqual(registry.state, "watching")
        self.assertGreaterEqual(registry.stats.rejected, 3)
        registry.stopService()
        self.flush()
        registry.startService()
        self.flush()
        self.assertEqual(set(registry.peers), {make_id(4)})
        self.assertEqual(len(heard.events), 1)

    def test_peer_overwritten_with_junk_leaves(self) -> None:
        """A valid peer whose value turns invalid is removed ("vanished")."""
        registry, heard = self.start(rec(OWN))
        self.write(A, rec(A).to_json())
        self.write(A, '{"id": 1}')
        self.assertEqual(heard.events[-1], ("removed", A, "vanished"))

    def test_clean_stop_deletes_record(self) -> None:
        """stopService deletes our record; a peer is told "deleted" at once."""
        registry, _ = self.start(rec(OWN))
        peer, heard_by_peer = self.start(rec(A))
        d = registry.stopService()
        self.flush()
        self.successResultOf(d)
        self.assertIsNone(self.stored(OWN))
        self.assertEqual(heard_by_peer.events[-1], ("removed", OWN, "deleted"))
        self.assertEqual(registry.state, "stopped")
        self.assertEqual(self.api.store.watcher_count, 1, "only the peer still watches")

    def test_stop_wait_is_bounded(self) -> None:
        """A hung etcd cannot hold up stopService beyond the stop timeout."""
        tap = Tap(self.api.resource())
        registry, _ = self.start(rec(OWN), client=self.client(tap), stop_timeout=2.0)
        tap.hold_deletes = True
        d = registry.stopService()
        self.flush()
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.flush()
        self.successResultOf(d)
        self.flushLoggedErrors()

    def test_record_given_after_start_and_rewritten(self) -> None:
        """Without a record it waits; a new record is rewritten in place."""
        registry, heard = self.registry(None)
        registry.startService()
        self.flush()
        self.assertEqual(registry.state, "registering")
        self.assertIsNone(self.stored(OWN))
        peer, heard_by_peer = self.start(rec(A))
        registry.set_record(rec(OWN))
        self.flush()
        self.assertEqual(registry.state, "watching")
        own = registry.own_index
        registry.set_record(rec(OWN, 4001, advertisement=[1]))
        self.flush()
        stored = self.stored(OWN)
        assert stored is not None
        self.assertEqual(MemberRecord.from_json(stored.node.value or "").port, 4001)
        self.assertEqual(stored.node.created_index, own)
        self.assertEqual(registry.own_index, own)
        self.assertEqual(registry.stats.rewrites, 1)
        self.assertEqual(heard_by_peer.events[-1], ("changed", OWN, [1]))
        with self.assertRaises(ValueError):
            registry.set_record(rec(B))

    def test_bad_settings(self) -> None:
        """A bad cluster name, TTL or timeout is a clear ValueError."""
        for kwargs in (
            {"cluster": "a/b"},
            {"cluster": "_hidden"},
            {"cluster": ""},
            {"ttl": 0},
            {"ttl": 2.5},
            {"watch_timeout": 0},
            {"stop_timeout": float("nan")},
        ):
            settings: dict[str, Any] = {
                "backend": EtcdV2Backend(self.writer),
                "cluster": "c",
                "listener": RecordingListener(),
                "clock": self.clock,
                **kwargs,
            }
            with self.assertRaises(ValueError, msg=str(kwargs)):
                Registry(**settings)

    def test_listener_failure_is_contained(self) -> None:
        """A listener that raises is logged; the registry keeps going."""

        class Broken(RecordingListener):
            def peer_added(self, record: MemberRecord, created_index: int) -> None:
                super().peer_added(record, created_index)
                raise RuntimeError("listener bug")

        registry, heard = self.start(rec(OWN), listener=Broken())
        self.write(A, rec(A).to_json())
        self.write(B, rec(B).to_json())
        self.assertEqual([e[1] for e in heard.events], [A, B])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertEqual(registry.state, "watching")

    def test_watch_timeout_relists(self) -> None:
        """A watch with no event for watch_timeout is replaced after a re-list."""
        registry, heard = self.start(rec(OWN), watch_timeout=30.0)
        self.run_for(31.0, step=0.5)
        self.assertEqual(registry.stats.watch_restarts, 1)
        self.assertEqual(registry.stats.lists, 2)
        self.write(A, rec(A).to_json())
        self.assertEqual(heard.events[-1][:2], ("added", A))

    # -- input limits (issue 12 item 3) ------------------------------------------------

    def warnings_about(self, events: Sequence[Mapping[str, Any]], key: str) -> int:
        return sum(
            1
            for e in events
            if e.get("log_level") == LogLevel.warn and e.get("key") == key
        )

    def test_oversized_record_is_refused_with_one_warning(self) -> None:
        """A peer's record over 64 KiB is not a peer, and is warned about once,
        however often it is refreshed."""
        registry, heard = self.start(rec(OWN))
        big = rec(A, advertisement="x" * (MAX_RECORD_BYTES + 1)).to_json()
        with capturedLogs() as events:
            for _ in range(3):
                self.write(A, big)
        self.assertEqual(registry.peers, {})
        self.assertEqual(heard.events, [])
        self.assertEqual(self.warnings_about(events, A), 1)
        self.write(A, rec(A, advertisement="small").to_json())
        self.assertEqual(set(registry.peers), {A})

    def test_members_beyond_the_limit_are_refused(self) -> None:
        """With max_members 3 (ours included), a third peer is refused, once; a
        listing keeps the oldest."""
        registry, heard = self.start(rec(OWN), max_members=3)
        third = make_id(4)
        with capturedLogs() as events:
            for member_id in (A, B, third, third):
                self.write(member_id, rec(member_id).to_json())
        self.assertEqual(set(registry.peers), {A, B})
        self.assertEqual(self.warnings_about(events, third), 1)
        registry.stopService()
        self.flush()
        registry.startService()
        self.flush()
        self.assertEqual(set(registry.peers), {A, B})

    def test_unusable_addresses_are_refused_with_one_warning(self) -> None:
        """IPv6 (hellos are IPv4), unspecified, broadcast and multicast addresses:
        refused, one warning each, no listener call (and so no traceback)."""
        registry, heard = self.start(rec(OWN))
        addresses = ["::1", "0.0.0.0", "255.255.255.255", "224.0.0.1"]
        ids = [make_id(10 + i) for i in range(len(addresses))]
        with capturedLogs() as events:
            for member_id, address in zip(ids, addresses, strict=True):
                self.write(member_id, rec(member_id, address=address).to_json())
                self.write(member_id, rec(member_id, address=address).to_json())
        self.assertEqual(registry.peers, {})
        self.assertEqual(heard.events, [])
        self.assertEqual([self.warnings_about(events, i) for i in ids], [1, 1, 1, 1])
        self.assertFalse([e for e in events if e.get("log_failure") is not None])

    def test_own_record_changed_by_someone_else_is_written_back(self) -> None:
        """A valid record written over ours (port 9, client) is replaced by ours."""
        registry, _ = self.start(rec(OWN))
        with capturedLogs() as events:
            self.write(OWN, rec(OWN, port=9, client=True).to_json())
            self.flush()
        stored = self.stored(OWN)
        assert stored is not None
        self.assertEqual(MemberRecord.from_json(stored.node.value or ""), rec(OWN))
        self.assertEqual(registry.stats.rewrites, 1)
        warned = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warned), 1, warned)
