"""Tests for twistednode.etcd.v2: the etcd v2 keys client (against a scripted etcd)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from attrs import define, field
from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from twistednode.etcd.base import EtcdBadResponse, EtcdTimeout, EtcdUnavailable
from twistednode.etcd.v2 import (
    EtcdServerError,
    EtcdV2Client,
    EtcdV2Error,
    EtcdWatchEnded,
)

HOLD = "hold"


@define
class Answer:
    status: int = 200
    body: bytes = b""
    index: int | None = 7


@define
class Seen:
    host: str
    method: str
    path: str
    args: dict[str, str]
    form: dict[str, str]


class ScriptedEtcd(Resource):
    """An HTTP resource that answers each request with the next scripted answer."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[Answer | str] = []
        self.seen: list[Seen] = []
        self.held: list[Request] = []
        self.gone: list[Request] = []

    def render(self, request: Request) -> bytes | int:
        host = (request.getHeader("host") or "").split(":")[0]
        form = {}
        body = request.content.read() if request.content is not None else b""
        if request.getHeader("content-type") == "application/x-www-form-urlencoded":
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        args = {k.decode(): v[0].decode() for k, v in request.args.items()}
        path = urlsplit(request.uri.decode()).path
        self.seen.append(Seen(host, request.method.decode(), path, args, form))
        answer = self.answers.pop(0)
        request.setHeader("content-type", "application/json")
        if answer == HOLD:
            request.setHeader("x-etcd-index", "7")
            request.write(b"")  # etcd flushes a watch's headers at once
            self.held.append(request)
            request.notifyFinish().addErrback(lambda _: self.gone.append(request))
            return NOT_DONE_YET
        assert isinstance(answer, Answer)
        request.setResponseCode(answer.status)
        if answer.index is not None:
            request.setHeader("x-etcd-index", str(answer.index))
        return answer.body


def ok(action: str, node: dict[str, Any], index: int = 7, **extra: Any) -> Answer:
    body = json.dumps({"action": action, "node": node, **extra}) + "\n"
    return Answer(200, body.encode(), index)


def error(status: int, code: int, message: str, cause: str, index: int) -> Answer:
    body = {"errorCode": code, "message": message, "cause": cause, "index": index}
    return Answer(status, (json.dumps(body) + "\n").encode(), index)


def node(
    key: str, value: str | None = "v", index: int = 5, **extra: Any
) -> dict[str, Any]:
    n: dict[str, Any] = {"key": key, "modifiedIndex": index, "createdIndex": index}
    if value is None:
        n["dir"] = True
    else:
        n["value"] = value
    n.update(extra)
    return n


@define(eq=False)
class RefusingHosts:
    """treq's request() in front of a StubTreq, failing for the hosts that are down.

    By default a host that is down refuses the connection; C{failure(host)} says
    what else to fail with (e.g. a dead pooled connection).
    """

    stub: StubTreq
    down: set[str] = field(factory=set)
    failure: Callable[[str], BaseException] = ConnectionRefusedError

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
        host = urlsplit(url).hostname or ""
        if host in self.down:
            return fail(self.failure(host))
        return cast(Deferred[Any], self.stub.request(method, url, **kwargs))


class ClientTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.etcd = ScriptedEtcd()
        self.stub = StubTreq(self.etcd)
        self.clock = Clock()
        self.http = RefusingHosts(self.stub)
        self.client = EtcdV2Client(
            self.clock, ["http://one:2379", "http://two:2379"], http=self.http
        )


class EtcdV2ClientTests(ClientTestCase):
    def test_get(self) -> None:
        """A GET parses the node, its children and the X-Etcd-Index header."""
        listing = node("/d", None, 3, nodes=[node("/d/a", "1", 4), node("/d/b", "", 6)])
        self.etcd.answers.append(ok("get", listing, index=9))
        result = self.successResultOf(self.client.get("/d", recursive=True))
        self.assertEqual(result.action, "get")
        self.assertEqual(result.etcd_index, 9)
        self.assertTrue(result.node.dir)
        self.assertIsNone(result.node.value)
        self.assertEqual(
            [(n.key, n.value, n.created_index) for n in result.node.nodes],
            [("/d/a", "1", 4), ("/d/b", "", 6)],
        )
        self.assertEqual(
            self.etcd.seen[0].args, {"recursive": "true", "sorted": "false"}
        )

    def test_key_is_quoted(self) -> None:
        """Spaces, '?' and non-ASCII in a key are percent-encoded in the path."""
        self.etcd.answers.append(ok("get", node("/a b?é")))
        self.successResultOf(self.client.get("/a b?é"))
        self.assertEqual(self.etcd.seen[0].path, "/v2/keys/a%20b%3F%C3%A9")

    def test_writes(self) -> None:
        """create/update/set send prevExist in the query, value and ttl in a form."""
        for _ in range(3):
            self.etcd.answers.append(ok("create", node("/k"), 8))
        self.successResultOf(self.client.create("/k", "v1", ttl=10))
        self.successResultOf(self.client.update("/k", "v2", ttl=3))
        self.successResultOf(self.client.set("/k", ""))
        self.assertEqual(
            [(s.method, s.args, s.form) for s in self.etcd.seen],
            [
                ("PUT", {"prevExist": "false"}, {"value": "v1", "ttl": "10"}),
                ("PUT", {"prevExist": "true"}, {"value": "v2", "ttl": "3"}),
                ("PUT", {}, {"value": ""}),
            ],
        )

    def test_refresh(self) -> None:
        """refresh sends refresh=true&prevExist=true&ttl=N and no value."""
        self.etcd.answers.append(ok("update", node("/k"), 9))
        self.successResultOf(self.client.refresh("/k", 10))
        seen = self.etcd.seen[0]
        self.assertEqual(
            seen.args, {"refresh": "true", "prevExist": "true", "ttl": "10"}
        )
        self.assertEqual(seen.form, {})

    def test_delete(self) -> None:
        """delete sends DELETE with recursive/dir flags and parses prevNode."""
        self.etcd.answers.append(
            ok(
                "delete",
                {"key": "/k", "modifiedIndex": 9, "createdIndex": 5},
                prevNode=node("/k", "old", 5),
            )
        )
        result = self.successResultOf(self.client.delete("/k"))
        self.assertEqual(result.prev_node and result.prev_node.value, "old")
        self.assertEqual(self.etcd.seen[0].method, "DELETE")

    def test_bad_ttl(self) -> None:
        """A negative or non-integer ttl is refused before anything is sent."""
        with self.assertRaises(ValueError):
            self.client.refresh("/k", -1)
        with self.assertRaises(ValueError):
            self.client.create("/k", "v", ttl=1.5)  # type: ignore[arg-type]
        self.assertEqual(self.etcd.seen, [])

    def test_etcd_error(self) -> None:
        """etcd's JSON error becomes EtcdV2Error with code, message, cause, indices."""
        self.etcd.answers.append(error(404, 100, "Key not found", "/nodir", 12))
        f = self.failureResultOf(self.client.get("/nodir/a"), EtcdV2Error)
        e = cast(EtcdV2Error, f.value)
        self.assertEqual(
            (e.error_code, e.message, e.cause, e.index, e.etcd_index, e.status),
            (100, "Key not found", "/nodir", 12, 12, 404),
        )
        self.assertIn("Key not found (/nodir) [12]", str(e))

    def test_outdated_index(self) -> None:
        """A watch on a cleared index fails with EtcdV2Error 401 (HTTP 400)."""
        self.etcd.answers.append(
            error(
                400,
                401,
                "The event in requested index is outdated and cleared",
                "the requested history has been cleared [1008/7]",
                2007,
            )
        )
        d = self.client.watch("/d", wait_index=7, recursive=True, timeout=5)
        f = self.failureResultOf(d, EtcdV2Error)
        self.assertEqual(cast(EtcdV2Error, f.value).error_code, 401)

    def test_server_error_fails_over(self) -> None:
        """A 5xx from one member moves on to the next member."""
        self.etcd.answers.append(error(500, 300, "Raft Internal Error", "x", 3))
        self.etcd.answers.append(ok("get", node("/k")))
        self.successResultOf(self.client.get("/k"))
        self.assertEqual([s.host for s in self.etcd.seen], ["one", "two"])
        self.assertEqual(self.client.url, "http://two:2379")

    def test_server_error_everywhere(self) -> None:
        """When every member answers 5xx, EtcdUnavailable carries EtcdServerErrors."""
        self.etcd.answers.append(error(500, 300, "Raft Internal Error", "x", 3))
        self.etcd.answers.append(Answer(503, b"<html>busy</html>"))
        f = self.failureResultOf(self.client.get("/k"), EtcdUnavailable)
        failures = cast(EtcdUnavailable, f.value).failures
        self.assertEqual(
            [url.split("/")[2] for url, _ in failures], ["one:2379", "two:2379"]
        )
        first, second = (cast(EtcdServerError, e) for _, e in failures)
        self.assertEqual(first.error and first.error.error_code, 300)
        self.assertIsNone(second.error)
        self.assertEqual(second.status, 503)

    def test_not_json(self) -> None:
        """A 200 whose body is not JSON is EtcdBadResponse, not a crash."""
        self.etcd.answers.append(Answer(200, b"<html>proxy</html>"))
        f = self.failureResultOf(self.client.get("/k"), EtcdBadResponse)
        self.assertIn("not a JSON object", str(f.value))

    def test_wrong_shape(self) -> None:
        """JSON that is not an etcd answer is EtcdBadResponse saying what is wrong."""
        self.etcd.answers.append(Answer(200, b'{"action": "get", "node": {"key": 1}}'))
        self.etcd.answers.append(Answer(200, b'{"node": {}}'))
        self.etcd.answers.append(Answer(200, b'{"errorCode": "x"}'))
        self.etcd.answers.append(Answer(302, b"{}"))
        for why in ("key is not a string", "no 'action'", "malformed error", "302"):
            f = self.failureResultOf(self.client.get("/k"), EtcdBadResponse)
            self.assertIn(why, str(f.value))

    def test_empty_bodies(self) -> None:
        """An empty 200 ends a watch (EtcdWatchEnded) but is a bad answer to a GET."""
        self.etcd.answers.append(Answer(200, b""))
        self.failureResultOf(
            self.client.watch("/d", wait_index=3, timeout=5), EtcdWatchEnded
        )
        self.etcd.answers.append(Answer(200, b""))
        self.failureResultOf(self.client.get("/d"), EtcdBadResponse)

    def test_watch(self) -> None:
        """A watch waits (headers already sent) until the event body arrives."""
        self.etcd.answers.append(HOLD)
        d = self.client.watch("/d", wait_index=8, recursive=True, timeout=60)
        self.stub.flush()
        self.assertNoResult(d)
        self.assertEqual(
            self.etcd.seen[0].args,
            {"wait": "true", "recursive": "true", "waitIndex": "8"},
        )
        request = self.etcd.held.pop()
        request.write(
            json.dumps({"action": "set", "node": node("/d/x", "1", 8)}).encode()
        )
        request.finish()
        self.stub.flush()
        self.assertEqual(self.successResultOf(d).node.key, "/d/x")

    def test_watch_timeout_covers_the_body(self) -> None:
        """A watch whose headers came but no event is cut at the timeout."""
        self.etcd.answers.append(HOLD)
        d = self.client.watch("/d", wait_index=8, timeout=30)
        self.stub.flush()
        self.clock.advance(29)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.stub.flush()
        f = self.failureResultOf(d, EtcdTimeout)
        self.assertIn("30 s", str(f.value))
        self.assertEqual(len(self.etcd.gone), 1, "the server saw the disconnect")
        self.assertEqual(len(self.etcd.seen), 1, "a watch timeout is not failed over")

    def test_request_timeout_fails_over(self) -> None:
        """A member that never answers a GET is given up at the request timeout."""
        self.etcd.answers.extend([HOLD, ok("get", node("/k"))])
        d = self.client.get("/k")
        self.stub.flush()
        self.clock.advance(self.client.request_timeout)
        self.stub.flush()
        self.assertEqual(self.successResultOf(d).node.key, "/k")
        self.assertEqual([s.host for s in self.etcd.seen], ["one", "two"])

    def test_connection_refused_fails_over_and_sticks(self) -> None:
        """A refused member is skipped and the answering one is used from then on."""
        self.http.down.add("one")
        self.etcd.answers.extend([ok("get", node("/k")), ok("get", node("/k"))])
        self.successResultOf(self.client.get("/k"))
        self.assertEqual(self.client.url, "http://two:2379")
        self.http.down.clear()
        self.successResultOf(self.client.get("/k"))
        self.assertEqual([s.host for s in self.etcd.seen], ["two", "two"])

    def test_everything_refused(self) -> None:
        """With every member refusing, EtcdUnavailable names each URL and reason."""
        self.http.down.update({"one", "two"})
        f = self.failureResultOf(self.client.get("/k"), EtcdUnavailable)
        text = str(f.value)
        self.assertIn("http://one:2379/v2/keys/k: ConnectionRefusedError", text)
        self.assertIn("http://two:2379/v2/keys/k: ConnectionRefusedError", text)

    def test_close_cancels_in_flight(self) -> None:
        """close() cancels a pending watch (CancelledError) and drops its connection."""
        self.etcd.answers.append(HOLD)
        d = self.client.watch("/d", wait_index=8, timeout=60)
        self.stub.flush()
        self.successResultOf(self.client.close())
        self.stub.flush()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(len(self.etcd.gone), 1)
        self.assertEqual(len(self.etcd.seen), 1, "a cancelled call is not failed over")

    def test_urls(self) -> None:
        """URLs come as a list or as the --etcd comma list; bad ones are refused."""
        client = EtcdV2Client(Clock(), "http://a:1/, http://b:2", http=self.http)
        self.assertEqual(client.urls, ("http://a:1", "http://b:2"))
        for bad in ([], "", ["a:1"], ["ftp://a"]):
            with self.assertRaises(ValueError):
                EtcdV2Client(Clock(), bad, http=self.http)

    def test_own_pool(self) -> None:
        """Without an injected client, it builds a pooled Agent and closes the pool."""
        reactor = MemoryReactorClock()
        client = EtcdV2Client(reactor, ["http://127.0.0.1:2379"], connect_timeout=2)
        d = client.get("/k")
        self.assertEqual(len(reactor.tcpClients), 1)
        host, port, _, timeout, _ = reactor.tcpClients[0]
        self.assertEqual((host, port, timeout), ("127.0.0.1", 2379, 2))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.successResultOf(client.close())
