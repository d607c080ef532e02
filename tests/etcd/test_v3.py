"""Tests for twistednode.etcd.v3, the v3 gateway client, and the v3 backend on
real etcd.

Unit tests run over L{tests.harness.fakev3.FakeEtcdV3} through C{StubTreq} on a C{Clock}
(L{V3TestCase}, also used by C{tests.registry.test_v3}); the integration tests at the
end run the v3 backend against real etcd 3.4 started without the v2 API.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from tests.etcd.test_v2 import RefusingHosts
from tests.harness.fakev3 import FakeEtcdV3
from tests.harness.servers import RealEtcd, shared_instance
from tests.registry.test_service import RecordingListener, eventually, make_id, rec
from twistednode.etcd.base import EtcdBadResponse, EtcdUnavailable, JsonLines
from twistednode.etcd.v3 import (
    Credentials,
    EtcdAuthFailed,
    EtcdV3Client,
    EtcdV3Error,
    interpret,
)
from twistednode.registry.backend import (
    Change,
    Entry,
    HistoryLost,
    RecordExists,
    RecordMissing,
)
from twistednode.registry.service import Registry
from twistednode.registry.v3 import EtcdV3Backend
from twistednode.registry.v3codec import (
    decode,
    encode,
)

DIR = "/twistednode/c/members"
URLS = ["http://e1:2379", "http://e2:2379", "http://e3:2379"]


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
