"""Tests for the etcd v3 client, codec and registry backend.

Unit tests run over L{tests.fakev3.FakeEtcdV3} through C{StubTreq} on a C{Clock};
the integration tests at the end run against real etcd 3.4 started without v2.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from tests.fakev3 import FakeEtcdV3
from tests.servers import RealEtcd, shared_instance
from tests.test_etcdv2 import RefusingHosts
from tests.test_registry import RecordingListener, eventually, make_id, rec
from twistednode.backend import (
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
from twistednode.etcdv2 import EtcdBadResponse, EtcdUnavailable
from twistednode.etcdv3 import (
    Credentials,
    EtcdAuthFailed,
    EtcdV3Client,
    EtcdV3Error,
    JsonLines,
    interpret,
)
from twistednode.registry import Registry
from twistednode.v3backend import AuthenticationFailed, EtcdV3Backend
from twistednode.v3codec import (
    LEAVING,
    NOT_UTF8,
    changes,
    decode,
    encode,
    entries,
    integer,
    prefix_end,
    prefix_range,
)

DIR = "/twistednode/c/members"
URLS = ["http://e1:2379", "http://e2:2379", "http://e3:2379"]


def kv(key: str, value: str = "", create: int = 2, mod: int = 2, lease: int = 0) -> Any:
    out: dict[str, Any] = {
        "key": encode(key),
        "create_revision": str(create),
        "mod_revision": str(mod),
        "version": "1",
    }
    if value:
        out["value"] = encode(value)
    if lease:
        out["lease"] = str(lease)
    return out


class CodecTests(SynchronousTestCase):
    def test_base64_round_trip(self) -> None:
        """Keys and values go out as base64 of UTF-8 and come back the same."""
        self.assertEqual(encode("foo"), "Zm9v")
        self.assertEqual(decode(encode("ünï/ç")).decode(), "ünï/ç")
        self.assertEqual(decode(None), b"")
        for bad in ("not base64!", 5):
            self.assertRaises(ValueError, decode, bad)

    def test_prefix_end(self) -> None:
        """range_end is the prefix with its last byte bumped, carrying past 0xff."""
        self.assertEqual(prefix_end(b"/a/"), b"/a0")
        self.assertEqual(prefix_end(b"a\xff"), b"b")
        self.assertEqual(prefix_end(b"\xff\xff"), b"\x00")
        self.assertEqual(
            prefix_range("/d"), {"key": encode("/d/"), "range_end": encode("/d0")}
        )

    def test_integer_fields(self) -> None:
        """int64s are strings, absent means 0, anything else is a ValueError."""
        self.assertEqual(integer({"a": "12"}, "a"), 12)
        self.assertEqual(integer({"a": 12}, "a"), 12)
        self.assertEqual(integer({}, "a"), 0)
        for bad in ("x", True, 1.5, None):
            self.assertRaises(ValueError, integer, {"a": bad}, "a")

    def test_entries_skip_markers_and_strangers(self) -> None:
        """A listing keeps names below the directory, never leaving markers."""
        answer = {
            "kvs": [
                kv(DIR + "/a", "va", 3, 4),
                kv(DIR + "/a" + LEAVING, "", 5, 5),
                kv(DIR + "/b/x", "nested", 6, 6),
                kv(DIR + "/c", "\udcff".encode("utf-8", "surrogatepass").hex(), 7, 7),
            ]
        }
        answer["kvs"][3]["value"] = "/w=="  # the byte 0xff: not UTF-8
        self.assertEqual(
            entries(DIR, answer),
            (
                Entry("a", "va", 3, 4),
                Entry("b/x", "nested", 6, 6),
                Entry("c", NOT_UTF8, 7, 7),
            ),
        )

    def test_changes_put_and_expiry(self) -> None:
        """A PUT is "put"; a DELETE of a leased key without a marker is "expired"."""
        events = [
            {"kv": kv(DIR + "/a", "v", 3, 9, lease=77)},
            {
                "type": "DELETE",
                "kv": {"key": encode(DIR + "/b"), "mod_revision": "9"},
                "prev_kv": kv(DIR + "/b", "old", 4, 5, lease=78),
            },
        ]
        self.assertEqual(
            changes(DIR, events),
            [Change("put", "a", "v", 3, 9), Change("expired", "b", None, 4, 9)],
        )

    def test_changes_clean_leave(self) -> None:
        """A DELETE with a leaving marker in the same response is "deleted"."""
        events = [
            {
                "type": "DELETE",
                "kv": {"key": encode(DIR + "/a"), "mod_revision": "9"},
                "prev_kv": kv(DIR + "/a", "v", 3, 3, lease=77),
            },
            {"kv": kv(DIR + "/a" + LEAVING, "", 9, 9, lease=77)},
        ]
        self.assertEqual(changes(DIR, events), [Change("deleted", "a", None, 3, 9)])
        marker_gone = [
            {"type": "DELETE", "kv": {"key": encode(DIR + "/a" + LEAVING)}},
        ]
        self.assertEqual(changes(DIR, marker_gone), [])

    def test_changes_unleased_delete_is_deleted(self) -> None:
        """A key without a lease cannot expire: its DELETE is "deleted"."""
        events = [
            {
                "type": "DELETE",
                "kv": {"key": encode(DIR + "/a"), "mod_revision": "9"},
                "prev_kv": kv(DIR + "/a", "v", 3, 3),
            },
            {"type": "DELETE", "kv": {"key": encode(DIR + "/b"), "mod_revision": "9"}},
        ]
        self.assertEqual(
            changes(DIR, events),
            [Change("deleted", "a", None, 3, 9), Change("expired", "b", None, 0, 9)],
        )

    def test_malformed_events(self) -> None:
        """Events that are not etcd's shape are ValueErrors, not crashes."""
        for events in (["x"], [{"type": "BOOM", "kv": kv("k")}], [{"kv": 3}]):
            self.assertRaises(ValueError, changes, DIR, events)


class InterpretTests(SynchronousTestCase):
    def test_answers_and_errors(self) -> None:
        """A JSON object is the answer; a gRPC error object is an EtcdV3Error."""
        self.assertEqual(interpret(200, b'{"a": 1}', "u"), {"a": 1})
        body = b'{"error":"etcdserver: requested lease not found","code":5}'
        with self.assertRaises(EtcdV3Error) as caught:
            interpret(404, body, "http://e1:2379")
        self.assertEqual(caught.exception.code, 5)
        self.assertIn("lease not found", str(caught.exception))
        self.assertIn("http://e1:2379", str(caught.exception))

    def test_stream_error_object(self) -> None:
        """A streaming call's error object (grpc_code/message) is recognised."""
        body = b'{"error":{"grpc_code":14,"http_code":503,"message":"no leader"}}'
        with self.assertRaises(EtcdV3Error) as caught:
            interpret(200, body, "u")
        self.assertEqual(
            (caught.exception.code, caught.exception.message), (14, "no leader")
        )

    def test_bad_bodies(self) -> None:
        """Non-JSON, a non-object and an unexpected status are EtcdBadResponse."""
        for status, body in ((200, b"<html>"), (200, b"[1]"), (404, b"404 page")):
            self.assertRaises(EtcdBadResponse, interpret, status, body, "u")


class JsonLinesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.got: list[object] = []
        self.ends: list[Failure] = []
        self.lines = JsonLines(self.got.append, self.ends.append, "u")

    def test_lines_across_chunks(self) -> None:
        """Values are handed on line by line, however the bytes are chunked."""
        self.lines.dataReceived(b'{"a":')
        self.assertEqual(self.got, [])
        self.lines.dataReceived(b' 1}\n{"b": 2}\n\n{"c"')
        self.assertEqual(self.got, [{"a": 1}, {"b": 2}])
        self.lines.dataReceived(b": 3}")
        self.lines.connectionLost(Failure(CancelledError()))
        self.assertEqual(self.got, [{"a": 1}, {"b": 2}, {"c": 3}])
        self.assertEqual(len(self.ends), 1)

    def test_bad_line_ends_stream(self) -> None:
        """A line that is not JSON ends the stream once with EtcdBadResponse."""
        self.lines.dataReceived(b'{"a": 1}\nnope\n{"b": 2}\n')
        self.assertEqual(self.got, [{"a": 1}])
        self.assertEqual(len(self.ends), 1)
        self.assertTrue(self.ends[0].check(EtcdBadResponse))
        self.lines.connectionLost(Failure(CancelledError()))
        self.assertEqual(len(self.ends), 1)


class V3TestCase(SynchronousTestCase):
    """A fake gateway behind StubTreq, reachable as e1, e2 and e3."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.etcd = FakeEtcdV3(self.clock)
        self.stub = StubTreq(self.etcd.resource())
        self.http = RefusingHosts(self.stub)

    def client(self, urls: Sequence[str] = URLS[:1], **kwargs: Any) -> EtcdV3Client:
        return EtcdV3Client(self.clock, urls, http=self.http, **kwargs)

    def backend(self, **kwargs: Any) -> EtcdV3Backend:
        backend = EtcdV3Backend(self.client(**kwargs), self.clock)
        self.addCleanup(self.close, backend)
        return backend

    def close(self, backend: EtcdV3Backend) -> None:
        self.successResultOf(backend.close())
        self.stub.flush()

    def result(self, d: Deferred[Any]) -> Any:
        self.stub.flush()
        return self.successResultOf(d)

    def failure(self, d: Deferred[Any], *kinds: type[BaseException]) -> Failure:
        self.stub.flush()
        failure: Failure = self.failureResultOf(d, *kinds)
        return failure


class ClientTests(V3TestCase):
    def test_call_posts_json(self) -> None:
        """call() POSTs the JSON body and fires with the answer object."""
        self.etcd.put("/k", "v")
        answer = self.result(self.client().call("/v3/kv/range", {"key": encode("/k")}))
        self.assertEqual(decode(answer["kvs"][0]["value"]), b"v")
        self.assertEqual(self.etcd.calls, ["v3/kv/range"])

    def test_error_is_distinct(self) -> None:
        """A gRPC error reaches the caller as EtcdV3Error with its code."""
        d = self.client().call("/v3/lease/revoke", {"ID": "1"})
        error = self.failure(d, EtcdV3Error).value
        assert isinstance(error, EtcdV3Error)
        self.assertEqual((error.code, error.status), (5, 404))

    def test_failover_remembers_member(self) -> None:
        """A refused member is skipped; the one that answered is used next time."""
        client = self.client(URLS)
        self.http.down.add("e1")
        self.result(client.call("/v3/kv/range", {"key": encode("/k")}))
        self.assertEqual(client.url, URLS[1])
        self.http.down.clear()
        self.result(client.call("/v3/kv/range", {"key": encode("/k")}))
        self.assertEqual(client.url, URLS[1])

    def test_all_down(self) -> None:
        """No member answering is EtcdUnavailable naming every URL."""
        self.http.down.update({"e1", "e2", "e3"})
        d = self.client(URLS).call("/v3/kv/range", {"key": encode("/k")})
        error = self.failure(d, EtcdUnavailable).value
        for url in URLS:
            self.assertIn(url, str(error))

    def test_server_error_moves_on(self) -> None:
        """A 503 from one member (no leader) sends the call to the next."""

        class NoLeader(Resource):
            isLeaf = True

            def render(self, request: Request) -> bytes:
                if b"e1" in (request.getHeader("host") or "").encode():
                    request.setResponseCode(503)
                    return b'{"error":"etcdserver: no leader","code":14}'
                return b'{"header":{"revision":"5"}}'

        stub = StubTreq(NoLeader())
        client = EtcdV3Client(self.clock, URLS, http=stub)
        d = client.call("/v3/kv/range", {})
        stub.flush()
        self.assertEqual(self.successResultOf(d), {"header": {"revision": "5"}})
        self.assertEqual(client.url, URLS[1])

    def test_timeout_moves_on(self) -> None:
        """A member that does not answer within the request timeout is skipped."""

        class Silent(Resource):
            isLeaf = True

            def render(self, request: Request) -> bytes | int:
                if b"e1" in (request.getHeader("host") or "").encode():
                    return 1  # NOT_DONE_YET: never answers
                return b'{"header":{"revision":"5"}}'

        stub = StubTreq(Silent())
        client = EtcdV3Client(self.clock, URLS, http=stub, request_timeout=2.0)
        d = client.call("/v3/kv/range", {})
        stub.flush()
        self.assertNoResult(d)
        self.clock.advance(2.0)
        stub.flush()
        self.successResultOf(d)
        self.assertEqual(client.url, URLS[1])

    def test_authenticates_and_sends_token(self) -> None:
        """With credentials a token is fetched once and sent with every call."""
        self.etcd.auth_enabled = True
        self.etcd.users["root"] = "pw"
        client = self.client(credentials=Credentials("root", "pw"))
        self.result(client.call("/v3/kv/range", {"key": encode("/k")}))
        self.result(client.call("/v3/kv/range", {"key": encode("/k")}))
        self.assertEqual(self.etcd.calls.count("v3/auth/authenticate"), 1)
        self.assertEqual(len(set(self.etcd.seen_tokens)), 1)
        self.assertIn(self.etcd.seen_tokens[0], self.etcd.tokens)

    def test_invalid_token_reauthenticates(self) -> None:
        """A token etcd no longer knows is replaced and the call retried once."""
        self.etcd.auth_enabled = True
        self.etcd.users["root"] = "pw"
        client = self.client(credentials=Credentials("root", "pw"))
        self.result(client.call("/v3/kv/range", {"key": encode("/k")}))
        self.etcd.tokens.clear()  # a restart, a fail-over or the token TTL
        self.result(client.call("/v3/kv/range", {"key": encode("/k")}))
        self.assertEqual(self.etcd.calls.count("v3/auth/authenticate"), 2)

    def test_wrong_password(self) -> None:
        """A wrong password is EtcdAuthFailed naming the user and etcd's reason."""
        self.etcd.auth_enabled = True
        self.etcd.users["root"] = "pw"
        client = self.client(credentials=Credentials("root", "nope"))
        error = self.failure(client.call("/v3/kv/range", {}), EtcdAuthFailed).value
        self.assertIn("'root'", str(error))
        self.assertIn("invalid user ID or password", str(error))

    def test_no_credentials_with_auth_enabled(self) -> None:
        """Without credentials an auth-enabled etcd's refusal is passed on."""
        self.etcd.auth_enabled = True
        error = self.failure(self.client().call("/v3/kv/range", {}), EtcdV3Error).value
        self.assertIn("user name is empty", str(error))

    def test_credentials_parse(self) -> None:
        """--etcd-user is USER:PASSWORD; the password may hold colons, not show."""
        self.assertEqual(Credentials.from_option("u:p:q"), Credentials("u", "p:q"))
        self.assertNotIn("secret", repr(Credentials("u", "secret")))
        for bad in ("nocolon", ":pw"):
            self.assertRaises(ValueError, Credentials.from_option, bad)

    def test_bad_urls(self) -> None:
        """No URL or a URL without http(s) is a ValueError at construction."""
        self.assertRaises(ValueError, EtcdV3Client, self.clock, [], http=self.http)
        self.assertRaises(
            ValueError, EtcdV3Client, self.clock, "e1:2379", http=self.http
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


# -- integration: real etcd 3.4 without v2 ---------------------------------------


def shared_etcd_v3() -> RealEtcd:
    """One real etcd 3.4 without the v2 API per test process, started on first use."""
    return shared_instance("etcd-v3", lambda: RealEtcd(enable_v2=False).start())


class RealEtcdV3Tests(TestCase):
    """The v3 backend against real etcd 3.4 started without the v2 API."""

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.etcd = shared_etcd_v3()
        self.reactor: Any = reactor
        self.dir = f"/twistednode/it-{uuid.uuid4().hex[:12]}/members"

    def backend(self, **kwargs: Any) -> EtcdV3Backend:
        backend = EtcdV3Backend(
            EtcdV3Client(self.reactor, [self.etcd.url], **kwargs), self.reactor
        )
        self.addCleanup(backend.close)
        return backend

    def test_v2_is_off(self) -> None:
        """The fixture's etcd really has no v2 API (so only v3 can work)."""
        import urllib.error
        import urllib.request

        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(self.etcd.url + "/v2/keys/", timeout=5)
        caught.exception.close()
        self.assertEqual(caught.exception.code, 404)

    async def _record_cycle(self) -> None:
        backend = self.backend()
        key = self.dir + "/a"
        created = await backend.create(key, "v1", 5)
        with self.assertRaises(RecordExists):
            await backend.create(key, "v1", 5)
        self.assertEqual(await backend.replace(key, "v2", 5), created)
        await backend.refresh(key, 5)
        listing = await backend.list(self.dir)
        self.assertEqual(listing.entries, (Entry("a", "v2", created, listing.index),))
        await backend.delete(key)
        self.assertEqual((await backend.list(self.dir)).entries, ())
        with self.assertRaises(RecordMissing):
            await backend.refresh(key, 5)

    def test_record_cycle(self) -> Deferred[None]:
        """create, exists, replace (same revision), refresh, list, delete, missing."""
        return Deferred.fromCoroutine(self._record_cycle())

    async def _watch_kinds(self) -> None:
        writer, watcher = self.backend(), self.backend()
        listing = await watcher.list(self.dir)
        got: list[Change] = []
        next_index = listing.index + 1

        async def more() -> None:
            nonlocal next_index
            batch = await watcher.watch(self.dir, next_index, 10)
            got.extend(batch)
            next_index = batch[-1].index + 1

        a = await writer.create(self.dir + "/a", "va", 2)
        await more()
        await writer.create(self.dir + "/b", "vb", 30)
        await writer.delete(self.dir + "/b")
        while len(got) < 4:
            await more()  # b's put and delete, then a's lease runs out (2 s)
        self.assertEqual(
            [(c.kind, c.name) for c in got],
            [("put", "a"), ("put", "b"), ("deleted", "b"), ("expired", "a")],
        )
        self.assertEqual(got[3].created_index, a)

    def test_watch_kinds_on_real_etcd(self) -> Deferred[None]:
        """Real etcd: put, clean delete ("deleted") and lease expiry ("expired")."""
        return Deferred.fromCoroutine(self._watch_kinds())

    async def _compaction(self) -> None:
        backend = self.backend()
        first = await backend.create(self.dir + "/a", "1", 30)
        for n in range(3):
            await backend.replace(self.dir + "/a", str(n), 30)
        client = backend.client
        latest = (await backend.list(self.dir)).index
        await client.call("/v3/kv/compaction", {"revision": str(latest)})
        with self.assertRaises(HistoryLost):
            await backend.watch(self.dir, first + 1, 10)
        with self.assertRaises(HistoryLost):
            await backend.watch(self.dir, first + 1, 10)

    def test_compaction_on_real_etcd(self) -> Deferred[None]:
        """Real etcd: a watch from a compacted revision is HistoryLost."""
        return Deferred.fromCoroutine(self._compaction())

    async def _registry_lease_loss(self) -> None:
        listener = RecordingListener()
        backend = self.backend()
        cluster = self.dir.split("/")[2]
        registry = Registry(
            backend=backend,
            cluster=cluster,
            listener=listener,
            clock=self.reactor,
            record=rec(make_id(1)),
            ttl=3,
        )
        registry.startService()
        try:
            await eventually(lambda: registry.state == "watching", "registered")
            key = f"{registry.directory}/{make_id(1)}"
            lease = backend.lease_of(key)
            assert lease is not None
            await backend.client.call("/v3/lease/revoke", {"ID": str(lease.id)})
            await eventually(lambda: registry.stats.recreations == 1, "re-created")
            listing = await backend.list(registry.directory)
            self.assertEqual([e.name for e in listing.entries], [make_id(1)])
        finally:
            await registry.stopService()
        self.assertEqual((await self.backend().list(registry.directory)).entries, ())

    def test_registry_survives_lease_loss(self) -> Deferred[None]:
        """Real etcd: a revoked lease is noticed and the record written again."""
        return Deferred.fromCoroutine(self._registry_lease_loss())
