"""Tests for twistednode.registry.v3 over the fake v3 gateway (StubTreq, Clock)."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.defer import CancelledError, Deferred

from tests.etcd.test_v3 import DIR, URLS, V3TestCase
from tests.registry.test_service import RecordingListener, make_id, rec
from twistednode.etcd.v3 import (
    Credentials,
)
from twistednode.registry.backend import (
    BackendUnavailable,
    Change,
    Entry,
    HistoryLost,
    RecordExists,
    RecordMissing,
    RegistryBackend,
    WatchEnded,
    WatchTimedOut,
)
from twistednode.registry.service import Registry
from twistednode.registry.v3 import AuthenticationFailed, EtcdV3Backend
from twistednode.registry.v3codec import (
    LEAVING,
    decode,
)


class BackendRecordTests(V3TestCase):
    KEY = DIR + "/a"

    def test_create_under_a_lease(self) -> None:
        """create grants a lease, writes the key on it, returns its revision."""
        backend = self.backend()
        revision = self.result(backend.create(self.KEY, "v", 10))
        stored = self.etcd.kvs[self.KEY.encode()]
        self.assertEqual(stored.create_revision, revision)
        lease = backend.lease_of(self.KEY)
        assert lease is not None
        self.assertEqual(stored.lease, lease.id)
        self.assertEqual(self.etcd.leases[lease.id].ttl, 10)

    def test_create_existing(self) -> None:
        """create of an existing key is RecordExists; replace then keeps it."""
        other = self.etcd.put(self.KEY, "theirs")
        backend = self.backend()
        self.failure(backend.create(self.KEY, "v", 10), RecordExists)
        self.assertEqual(self.result(backend.replace(self.KEY, "mine", 10)), other)
        stored = self.etcd.kvs[self.KEY.encode()]
        self.assertEqual(stored.value, b"mine")
        lease = backend.lease_of(self.KEY)
        assert lease is not None
        self.assertEqual(stored.lease, lease.id)

    def test_replace_missing(self) -> None:
        """replace of a key that is gone is RecordMissing."""
        backend = self.backend()
        self.failure(backend.replace(self.KEY, "v", 10), RecordMissing)

    def test_refresh_keeps_record_alive(self) -> None:
        """Keepalives every ttl/3 keep the record well past its TTL."""
        backend = self.backend()
        self.result(backend.create(self.KEY, "v", 6))
        for _ in range(10):
            self.clock.advance(2)
            self.result(backend.refresh(self.KEY, 6))
        self.assertIn(self.KEY.encode(), self.etcd.kvs)

    def test_lost_lease_is_record_missing(self) -> None:
        """A lease that ran out makes refresh fail with RecordMissing."""
        backend = self.backend()
        self.result(backend.create(self.KEY, "v", 6))
        self.clock.advance(6.5)
        self.assertNotIn(self.KEY.encode(), self.etcd.kvs)
        self.failure(backend.refresh(self.KEY, 6), RecordMissing)
        self.assertIsNone(backend.lease_of(self.KEY))
        self.failure(backend.refresh(self.KEY, 6), RecordMissing)
        revision = self.result(backend.create(self.KEY, "v", 6))
        self.assertEqual(self.etcd.kvs[self.KEY.encode()].create_revision, revision)

    def test_deleted_record_is_missing(self) -> None:
        """A record someone deleted (lease still alive) is RecordMissing."""
        backend = self.backend()
        self.result(backend.create(self.KEY, "v", 10))
        self.etcd.delete(self.KEY)
        self.failure(backend.refresh(self.KEY, 10), RecordMissing)

    def test_record_taken_over(self) -> None:
        """A record rewritten under another lease is no longer ours."""
        backend = self.backend()
        self.result(backend.create(self.KEY, "v", 10))
        self.etcd.put(self.KEY, "v", self.etcd.grant(10))
        self.failure(backend.refresh(self.KEY, 10), RecordMissing)

    def test_replace_after_lease_lost(self) -> None:
        """replace on a lease that vanished is RecordMissing (then re-created)."""
        backend = self.backend()
        self.result(backend.create(self.KEY, "v", 10))
        lease = backend.lease_of(self.KEY)
        assert lease is not None
        self.etcd.leases.pop(lease.id)  # gone without its key (as after a restore)
        self.failure(backend.replace(self.KEY, "w", 10), RecordMissing)
        self.assertIsNone(backend.lease_of(self.KEY))

    def test_delete_marks_and_revokes(self) -> None:
        """delete removes the key with a leaving marker, then revokes the lease."""
        backend = self.backend()
        self.result(backend.create(self.KEY, "v", 10))
        lease = backend.lease_of(self.KEY)
        assert lease is not None
        self.result(backend.delete(self.KEY))
        self.assertEqual(self.etcd.kvs, {})
        self.assertNotIn(lease.id, self.etcd.leases)
        (_, events), (_, revoked) = self.etcd.history[-2:]
        self.assertEqual(
            [e.get("type", "PUT") for e in events], ["DELETE", "PUT"], "one revision"
        )
        self.assertEqual(decode(revoked[0]["kv"]["key"]).decode(), self.KEY + LEAVING)

    def test_delete_unknown_and_missing(self) -> None:
        """Deleting a key we hold no lease for, or that is gone, is not an error."""
        backend = self.backend()
        self.etcd.put(self.KEY, "v")
        self.result(backend.delete(self.KEY))
        self.assertEqual(self.etcd.kvs, {})
        self.result(backend.delete(self.KEY))
        self.result(backend.create(self.KEY, "v", 2))
        self.clock.advance(3)
        self.result(backend.delete(self.KEY))

    def test_bad_ttl(self) -> None:
        """A TTL that is not a positive whole number is a ValueError at once."""
        backend = self.backend()
        for ttl in (0, -1, 1.5, True):
            self.assertRaises(ValueError, backend.create, self.KEY, "v", ttl)

    def test_errors_map_to_backend_errors(self) -> None:
        """Unreachable is BackendUnavailable; bad auth is AuthenticationFailed."""
        self.http.down.add("e1")
        self.failure(self.backend().list(DIR), BackendUnavailable)
        self.http.down.clear()
        self.etcd.auth_enabled = True
        backend = self.backend(credentials=Credentials("root", "x"))
        error = self.failure(backend.list(DIR), AuthenticationFailed).value
        self.assertIn("root", str(error))


class BackendWatchTests(V3TestCase):
    def setUp(self) -> None:
        super().setUp()
        self.backend_ = self.backend()

    def watch(self, from_index: int, timeout: float = 60.0) -> Deferred[Any]:
        d = self.backend_.watch(DIR, from_index, timeout)
        self.stub.flush()
        return d

    def test_list(self) -> None:
        """list gives the entries below the directory and the header revision."""
        self.etcd.put(DIR + "/a", "va")
        self.etcd.put(DIR + "2/x", "not ours")
        self.etcd.put(DIR + "/a" + LEAVING, "")
        listing = self.result(self.backend_.list(DIR))
        self.assertEqual(listing.entries, (Entry("a", "va", 2, 2),))
        self.assertEqual(listing.index, self.etcd.revision)

    def test_watch_from_next_revision(self) -> None:
        """A watch fires with the next change below the directory, nothing else."""
        listing = self.result(self.backend_.list(DIR))
        d = self.watch(listing.index + 1)
        self.assertNoResult(d)
        self.etcd.put(DIR + "2/x", "not ours")
        self.stub.flush()
        self.assertNoResult(d)
        revision = self.etcd.put(DIR + "/a", "va")
        self.stub.flush()
        self.assertEqual(
            self.successResultOf(d), [Change("put", "a", "va", revision, revision)]
        )

    def test_watch_of_one_child(self) -> None:
        """With only=, the stream is on that key alone: other changes below the
        directory do not wake it, and its changes keep their name."""
        d = self.backend_.watch(DIR, self.etcd.revision + 1, 60, only="master")
        self.stub.flush()
        self.etcd.put(DIR + "/a", "va")
        self.etcd.put(DIR + "/master/x", "below it")
        self.stub.flush()
        self.assertNoResult(d)
        revision = self.etcd.put(DIR + "/master", "me")
        self.stub.flush()
        self.assertEqual(
            self.successResultOf(d), [Change("put", "master", "me", revision, revision)]
        )

    def test_one_stream_across_calls(self) -> None:
        """Changes between two calls are buffered; the stream is not reopened."""
        first = self.etcd.put(DIR + "/a", "1")
        d = self.watch(first)
        self.assertEqual(len(self.successResultOf(d)), 1)
        second = self.etcd.put(DIR + "/b", "2")
        third = self.etcd.put(DIR + "/a", "3")
        self.stub.flush()
        got = self.successResultOf(self.watch(first + 1))
        self.assertEqual([c.index for c in got], [second, third])
        self.assertEqual(self.etcd.watch_requests, 1)

    def test_replays_history(self) -> None:
        """A watch from an older revision gets every change since, in order."""
        revisions = [self.etcd.put(DIR + f"/{n}", str(n)) for n in range(3)]
        got = self.successResultOf(self.watch(revisions[1]))
        self.assertEqual([c.index for c in got], revisions[1:])

    def test_earlier_index_reopens(self) -> None:
        """Asking again from an index already handed out opens a new stream."""
        revision = self.etcd.put(DIR + "/a", "1")
        self.successResultOf(self.watch(revision))
        again = self.successResultOf(self.watch(revision))
        self.assertEqual([c.index for c in again], [revision])
        self.assertEqual(self.etcd.watch_requests, 2)
        self.assertEqual(len(self.etcd.watchers), 1, "the old stream was closed")

    def test_skips_changes_before_from_index(self) -> None:
        """Buffered changes older than from_index (seen in a listing) are dropped."""
        revision = self.etcd.put(DIR + "/a", "1")
        self.successResultOf(self.watch(revision))
        self.etcd.put(DIR + "/b", "2")
        later = self.etcd.put(DIR + "/c", "3")
        self.stub.flush()
        got = self.successResultOf(self.watch(later))
        self.assertEqual([c.name for c in got], ["c"])
        self.assertEqual(self.etcd.watch_requests, 1)

    def test_expiry_and_clean_leave(self) -> None:
        """A lease running out is "expired"; a delete by its owner is "deleted"."""
        writer = self.backend()
        a = self.result(writer.create(DIR + "/a", "va", 4))
        self.result(writer.create(DIR + "/b", "vb", 10))
        d = self.watch(self.etcd.revision + 1)
        self.clock.advance(4)
        self.stub.flush()
        (expired,) = self.successResultOf(d)
        self.assertEqual(
            (expired.kind, expired.name, expired.created_index), ("expired", "a", a)
        )
        d = self.watch(expired.index + 1)
        self.result(writer.delete(DIR + "/b"))
        self.assertEqual(
            [(c.kind, c.name) for c in self.successResultOf(d)], [("deleted", "b")]
        )

    def test_compaction_is_history_lost(self) -> None:
        """A start revision that was compacted away is HistoryLost."""
        for n in range(5):
            self.etcd.put(DIR + "/a", str(n))
        self.etcd.compact(self.etcd.revision - 1)
        error = self.failure(self.watch(3), HistoryLost).value
        self.assertIn("compacted", str(error))
        self.assertEqual(self.etcd.watchers, [])

    def test_stream_end_is_watch_ended(self) -> None:
        """A stream the server ends (a member going away) is WatchEnded."""
        d = self.watch(self.etcd.revision + 1)
        self.etcd.end_watches()
        self.failure(d, WatchEnded)
        d = self.watch(self.etcd.revision + 1)
        self.assertEqual(self.etcd.watch_requests, 2)
        revision = self.etcd.put(DIR + "/a", "1")
        self.stub.flush()
        self.assertEqual(self.successResultOf(d)[0].index, revision)

    def test_timeout_keeps_stream(self) -> None:
        """No change within the timeout is WatchTimedOut; the stream stays."""
        d = self.watch(self.etcd.revision + 1, timeout=30)
        self.clock.advance(29)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.failureResultOf(d, WatchTimedOut)
        revision = self.etcd.put(DIR + "/a", "1")
        self.stub.flush()
        self.assertEqual(self.successResultOf(self.watch(revision))[0].index, revision)
        self.assertEqual(self.etcd.watch_requests, 1)

    def test_stream_follows_client_to_another_member(self) -> None:
        """Once calls move to another member, a silent stream there is ended."""
        backend = self.backend(urls=URLS[:2])
        start = self.etcd.revision + 1
        d = backend.watch(DIR, start, 60)
        self.stub.flush()
        self.http.down.add("e1")  # e1 cut off; its open stream just goes quiet
        self.result(backend.list(DIR))
        self.assertEqual(backend.endpoint, URLS[1])
        error = self.failureResultOf(d, WatchEnded).value
        self.assertIn("moved from http://e1:2379 to http://e2:2379", str(error))
        d = backend.watch(DIR, start, 60)
        self.stub.flush()
        revision = self.etcd.put(DIR + "/a", "1")
        self.stub.flush()
        self.assertEqual(self.successResultOf(d)[0].index, revision)
        self.assertEqual(len(self.etcd.watchers), 1)

    def test_cancel_and_close(self) -> None:
        """A cancelled watch leaves the stream; close() ends it on the server."""
        d = self.watch(self.etcd.revision + 1)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(len(self.etcd.watchers), 1)
        self.successResultOf(self.backend_.close())
        self.stub.flush()
        self.assertEqual(self.etcd.watchers, [])

    def test_bad_watch_message(self) -> None:
        """A watch line that is not etcd's shape ends the watch, not the node."""
        d = self.watch(self.etcd.revision + 1)
        (watcher,) = self.etcd.watchers
        watcher.send({"result": {"events": [{"type": "BOOM"}]}})
        self.stub.flush()
        error = self.failureResultOf(d, WatchEnded).value
        self.assertIn("bad watch message", str(error))

    def test_cancelled_by_etcd_for_auth(self) -> None:
        """etcd cancelling a watch for a bad token drops the token: WatchEnded."""
        self.etcd.auth_enabled = True
        self.etcd.users["root"] = "pw"
        backend = self.backend(credentials=Credentials("root", "pw"))
        self.result(backend.list(DIR))
        d = backend.watch(DIR, self.etcd.revision + 1, 60)
        self.stub.flush()
        (watcher,) = self.etcd.watchers
        reason = (
            "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"
        )
        watcher.send({"result": {"canceled": True, "cancel_reason": reason}})
        self.stub.flush()
        self.assertIn(
            "invalid auth token", str(self.failureResultOf(d, WatchEnded).value)
        )
        self.result(backend.list(DIR))
        self.assertEqual(self.etcd.calls.count("v3/auth/authenticate"), 2)


class RegistryOverV3Tests(V3TestCase):
    """The registry service over the v3 backend and the fake gateway."""

    def setUp(self) -> None:
        super().setUp()
        self.registries: list[Registry] = []
        self.addCleanup(self.stop_all)

    def stop_all(self) -> None:
        for registry in self.registries:
            if registry.running:
                d = registry.stopService()
                self.stub.flush()
                self.successResultOf(d)
        self.assertEqual(self.etcd.watchers, [], "a watch stream was left open")

    def start(self, member: str, **kwargs: Any) -> tuple[Registry, RecordingListener]:
        listener = RecordingListener()
        backend = EtcdV3Backend(self.client(), self.clock)
        registry = Registry(
            backend=backend,
            cluster="c",
            listener=listener,
            clock=self.clock,
            record=rec(member),
            random=lambda: 0.0,
            **kwargs,
        )
        self.registries.append(registry)
        registry.startService()
        self.stub.flush()
        self.assertEqual(registry.state, "watching")
        return registry, listener

    def run_for(self, seconds: float, step: float = 0.1) -> None:
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            self.stub.flush()

    def test_join_change_leave(self) -> None:
        """Peers join, change, leave cleanly ("deleted") and expire ("expired")."""
        a, heard = self.start(make_id(1))
        b, _ = self.start(make_id(2))
        self.assertEqual(heard.events, [("added", make_id(2), b.own_index)])
        b.set_record(rec(make_id(2), advertisement={"v": 2}))
        self.stub.flush()
        self.assertEqual(heard.events[-1], ("changed", make_id(2), {"v": 2}))
        d = b.stopService()
        self.stub.flush()
        self.successResultOf(d)
        self.assertEqual(heard.events[-1], ("removed", make_id(2), "deleted"))
        crashed = make_id(3)
        self.etcd.put(
            f"{a.directory}/{crashed}", rec(crashed).to_json(), self.etcd.grant(3)
        )
        self.stub.flush()
        self.assertEqual(heard.events[-1][:2], ("added", crashed))
        self.run_for(3.1)
        self.assertEqual(heard.events[-1], ("removed", crashed, "expired"))
        self.assertEqual(a.stats.watch_restarts, 0)
        self.assertEqual(self.etcd.watch_requests, 2, "one stream per registry")

    def test_refreshes_keep_record(self) -> None:
        """The registry's refreshes keep its lease alive for many TTLs."""
        registry, _ = self.start(make_id(1), ttl=3)
        own = registry.own_index
        self.run_for(30)
        self.assertEqual(registry.own_index, own)
        self.assertEqual(registry.stats.recreations, 0)
        self.assertGreaterEqual(registry.stats.refreshes, 25)

    def test_lease_loss_recreates(self) -> None:
        """A revoked lease (our record gone) makes the registry write it again."""
        registry, _ = self.start(make_id(1))
        peer, heard_by_peer = self.start(make_id(2))
        lease = cast(EtcdV3Backend, registry._backend).lease_of(
            f"{registry.directory}/{make_id(1)}"
        )
        assert lease is not None
        self.etcd.revoke(lease.id)
        self.stub.flush()
        self.run_for(0.5)
        self.assertEqual(registry.stats.recreations, 1)
        self.assertIn(f"{registry.directory}/{make_id(1)}".encode(), self.etcd.kvs)
        self.assertEqual(
            [e[:2] for e in heard_by_peer.events[-2:]],
            [("removed", make_id(1)), ("added", make_id(1))],
        )

    def test_compaction_relists(self) -> None:
        """A compacted resume point is survived by a re-list; no join is lost."""
        registry, heard = self.start(make_id(1))
        self.etcd.hold_watches = True
        self.etcd.end_watches()  # the stream breaks: re-list, then a slow re-watch
        self.stub.flush()
        self.assertEqual(len(self.etcd.held), 1)
        late = make_id(4)
        self.etcd.put(f"{registry.directory}/{late}", rec(late).to_json())
        for n in range(5):
            self.etcd.put("/elsewhere", str(n))
        self.etcd.compact(self.etcd.revision)
        self.assertNotIn(late, registry.peers)
        self.etcd.release_watches()  # from a revision that is compacted now
        self.stub.flush()
        self.run_for(1.0)
        self.assertIn(late, registry.peers)
        self.assertEqual(heard.events[-1][:2], ("added", late))
        self.assertEqual(registry.stats.lists, 3, "start, stream end, compaction")
        self.assertEqual(registry.stats.watch_restarts, 2)
        self.assertEqual(registry.state, "watching")
        self.assertEqual(len(self.etcd.watchers), 1)


def is_backend(backend: EtcdV3Backend) -> RegistryBackend:
    """EtcdV3Backend satisfies the RegistryBackend protocol (checked by mypy)."""
    return backend
