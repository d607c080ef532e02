"""minietcd's HTTP API through StubTreq: keys, watches, expiry, errors, endpoints."""

from __future__ import annotations

import json
from typing import Any

from treq import collect, content
from treq.testing import StubTreq
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IResponse

from minietcd.api import MAX_URI_BYTES, KeysAPI
from minietcd.params import MAX_FORM_BYTES
from minietcd.store import Event, Store

NOW = 1_700_000_000.0
BASE = "http://127.0.0.1:2379"
FORM = {b"Content-Type": [b"application/x-www-form-urlencoded"]}


class Answer:
    """A response: status, headers (lower-case names) and body."""

    def __init__(self, response: IResponse, body: bytes) -> None:
        self.code = response.code
        self.headers = {
            name.decode().lower(): values[0].decode("latin-1")
            for name, values in response.headers.getAllRawHeaders()
        }
        self.body = body
        self.length = response.length

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class APITestCase(SynchronousTestCase):
    """A KeysAPI on a Clock at a realistic epoch, driven through StubTreq."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = Store()
        self.api = KeysAPI(clock=self.clock, store=self.store)
        self.stub = StubTreq(self.api.resource())
        self.addCleanup(self.api.stop)

    def send(
        self, method: str, path: str, body: bytes | None = None, form: bool = True
    ) -> Any:
        """Start a request; return the Deferred of its response."""
        headers = FORM if form and body is not None else {}
        return self.stub.request(
            method, BASE + path, data=body, headers=headers, allow_redirects=False
        )

    def call(
        self, method: str, path: str, body: bytes | None = None, form: bool = True
    ) -> Answer:
        """Make a request that completes at once; return its answer."""
        response = self.successResultOf(self.send(method, path, body, form))
        return Answer(response, self.successResultOf(content(response)))

    def assertError(
        self, answer: Answer, status: int, code: int, cause: str | None, index: int
    ) -> None:
        """C{answer} is the etcd error C{code} with this cause and index."""
        expected: dict[str, object] = {
            "errorCode": code,
            "message": answer.json["message"],
        }
        if cause is not None:
            expected["cause"] = cause
        expected["index"] = index
        self.assertEqual((answer.code, answer.json), (status, expected))
        self.assertEqual(answer.headers["x-etcd-index"], str(index))
        self.assertNotIn("x-raft-index", answer.headers)
        self.assertTrue(answer.body.endswith(b"\n"))


class KeysTests(APITestCase):
    """Reads and writes: bodies, statuses and headers as etcd sends them."""

    def test_root_of_a_fresh_server(self) -> None:
        """GET /v2/keys on a fresh server: the root dir, index 3, etcd's headers."""
        answer = self.call("GET", "/v2/keys")
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.body, b'{"action":"get","node":{"dir":true}}\n')
        headers = answer.headers
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(
            (headers["x-etcd-index"], headers["x-raft-index"], headers["x-raft-term"]),
            ("3", "4", "2"),
        )
        self.assertEqual(
            headers["x-etcd-cluster-id"], f"{self.api.cluster.cluster_id:x}"
        )
        self.assertEqual(headers["access-control-allow-origin"], "*")
        self.assertEqual(answer.length, len(answer.body))
        self.assertNotIn("server", headers)
        self.assertEqual(self.call("GET", "/v2/keys/").body, answer.body)

    def test_put_then_get(self) -> None:
        """A first PUT is 201 at index 4; a second is 200 with prevNode."""
        answer = self.call("PUT", "/v2/keys/a/b", b"value=hello")
        self.assertEqual(answer.code, 201)
        self.assertEqual(
            answer.body,
            b'{"action":"set","node":{"key":"/a/b","value":"hello","modifiedIndex":4,"createdIndex":4}}\n',
        )
        self.assertEqual(answer.headers["x-etcd-index"], "4")
        again = self.call("PUT", "/v2/keys/a/b?value=hi")
        self.assertEqual(again.code, 200)
        self.assertEqual(again.json["prevNode"]["value"], "hello")
        got = self.call("GET", "/v2/keys/a/b/")
        self.assertEqual(
            got.json,
            {
                "action": "get",
                "node": {
                    "key": "/a/b",
                    "value": "hi",
                    "modifiedIndex": 5,
                    "createdIndex": 5,
                },
            },
        )
        self.assertEqual(got.headers["x-etcd-index"], "5")

    def test_head(self) -> None:
        """HEAD answers GET's status and headers (Content-Length too), no body."""
        self.call("PUT", "/v2/keys/k", b"value=v")
        get = self.call("GET", "/v2/keys/k")
        head = self.call("HEAD", "/v2/keys/k")
        self.assertEqual((head.code, head.body), (200, b""))
        self.assertEqual(head.headers.pop("content-length"), str(len(get.body)))
        head.headers.pop("date")
        get.headers.pop("date")
        self.assertEqual(head.headers, get.headers)
        missing = self.call("HEAD", "/v2/keys/nope")
        self.assertEqual((missing.code, missing.body), (404, b""))

    def test_missing_key(self) -> None:
        """A missing key is 404/100 with the first missing component, no X-Raft-*."""
        self.assertError(self.call("GET", "/v2/keys/nodir/a"), 404, 100, "/nodir", 3)

    def test_post_in_order(self) -> None:
        """POST creates in-order keys named by their index."""
        answer = self.call("POST", "/v2/keys/queue", b"value=job")
        self.assertEqual((answer.code, answer.json["action"]), (201, "create"))
        self.assertEqual(answer.json["node"]["key"], "/queue/00000000000000000004")

    def test_put_dispatch(self) -> None:
        """prevExist/prevValue/prevIndex choose create, update or compareAndSwap."""
        self.assertEqual(
            self.call("PUT", "/v2/keys/k?prevExist=false", b"value=1").json["action"],
            "create",
        )
        self.assertError(
            self.call("PUT", "/v2/keys/k?prevExist=false", b"value=1"),
            412,
            105,
            "/k",
            4,
        )
        self.assertEqual(
            self.call("PUT", "/v2/keys/k?prevExist=true", b"value=2").json["action"],
            "update",
        )
        self.assertEqual(
            self.call("PUT", "/v2/keys/k?prevValue=2", b"value=3").json["action"],
            "compareAndSwap",
        )
        self.assertError(
            self.call("PUT", "/v2/keys/k?prevIndex=1", b"value=3"),
            412,
            101,
            "[1 != 6]",
            6,
        )
        self.assertEqual(
            self.call("PUT", "/v2/keys/k?prevExist=true&prevIndex=6", b"value=4").json[
                "action"
            ],
            "compareAndSwap",
        )

    def test_put_value_onto_a_dir(self) -> None:
        """PUT of a value onto a dir is 403/102 Not a file."""
        self.call("PUT", "/v2/keys/d?dir=true")
        self.assertError(self.call("PUT", "/v2/keys/d", b"value=x"), 403, 102, "/d", 4)

    def test_delete(self) -> None:
        """DELETE of a non-empty dir needs recursive=true; prevValue makes a CAD."""
        self.call("PUT", "/v2/keys/d/k", b"value=v")
        self.assertError(self.call("DELETE", "/v2/keys/d?dir=true"), 403, 108, "/d", 4)
        self.assertError(
            self.call("DELETE", "/v2/keys/d/k?prevValue=x"), 412, 101, "[x != v]", 4
        )
        self.assertEqual(
            self.call("DELETE", "/v2/keys/d/k?prevValue=v").json["action"],
            "compareAndDelete",
        )
        deleted = self.call("DELETE", "/v2/keys/d?recursive=true")
        self.assertEqual(
            deleted.json,
            {
                "action": "delete",
                "node": {
                    "key": "/d",
                    "dir": True,
                    "modifiedIndex": 6,
                    "createdIndex": 4,
                },
                "prevNode": {
                    "key": "/d",
                    "dir": True,
                    "modifiedIndex": 4,
                    "createdIndex": 4,
                },
            },
        )
        self.assertError(self.call("DELETE", "/v2/keys/"), 400, 107, "/", 6)

    def test_delete_body_is_ignored(self) -> None:
        """A prevValue in a DELETE body does not make a compareAndDelete."""
        self.call("PUT", "/v2/keys/k", b"value=v")
        self.assertEqual(
            self.call("DELETE", "/v2/keys/k", b"prevValue=x").json["action"], "delete"
        )

    def test_no_value_on_success(self) -> None:
        """noValueOnSuccess=true answers just the action for a set."""
        answer = self.call("PUT", "/v2/keys/k?noValueOnSuccess=true", b"value=v")
        self.assertEqual((answer.code, answer.body), (201, b'{"action":"set"}\n'))

    def test_ttl(self) -> None:
        """A TTL key has expiration and ttl; ttl= (empty) means no TTL."""
        answer = self.call("PUT", "/v2/keys/k?ttl=5", b"value=v")
        self.assertEqual(answer.json["node"]["ttl"], 5)
        self.assertEqual(answer.json["node"]["expiration"], "2023-11-14T22:13:25Z")
        plain = self.call("PUT", "/v2/keys/k?ttl=&prevExist=true", b"value=v")
        self.assertNotIn("ttl", plain.json["node"])

    def test_refresh(self) -> None:
        """refresh=true keeps the value, resets the TTL, and wakes no watcher."""
        self.call("PUT", "/v2/keys/k?ttl=5", b"value=v")
        watch = self.send("GET", "/v2/keys/k?wait=true")
        self.clock.advance(3)
        answer = self.call("PUT", "/v2/keys/k?refresh=true&prevExist=true&ttl=5")
        self.assertEqual(
            (answer.json["action"], answer.json["node"]["value"]), ("update", "v")
        )
        self.assertEqual(answer.json["node"]["ttl"], 5)
        response = self.successResultOf(watch)
        body = content(response)
        self.stub.flush()
        self.assertNoResult(body)

    def test_unicode_and_escaped_keys(self) -> None:
        """Unicode keys round-trip; %2F separates; invalid UTF-8 keys work too."""
        created = self.call(
            "PUT", "/v2/keys/caf%C3%A9/%E2%98%83", b"value=%C3%A9%26%3C"
        )
        self.assertEqual(created.body.count("é".encode()), 2)
        self.assertIn(b'"value":"\xc3\xa9\\u0026\\u003c"', created.body)
        self.assertEqual(
            self.call("GET", "/v2/keys/café/☃").json["node"]["key"], "/café/☃"
        )
        self.call("PUT", "/v2/keys/a%2Fb", b"value=1")
        self.assertEqual(self.call("GET", "/v2/keys/a/b").json["node"]["value"], "1")
        raw = self.call("PUT", "/v2/keys/%FF", b"value=1")
        self.assertEqual(raw.json["node"]["key"], "/\ufffd")
        self.assertEqual(self.call("GET", "/v2/keys/%FF").code, 200)
        self.assertEqual(self.call("GET", "/v2/keys/%FE").code, 404)

    def test_long_keys(self) -> None:
        """A 4000-byte key works; a request target over the limit is 414."""
        name = "k" * 4000
        self.assertEqual(self.call("PUT", "/v2/keys/" + name, b"value=v").code, 201)
        self.assertEqual(self.call("GET", "/v2/keys/" + name).code, 200)
        answer = self.call("GET", "/v2/keys/" + "k" * MAX_URI_BYTES)
        self.assertEqual((answer.code, answer.json["errorCode"]), (414, 210))
        self.assertIn("request URI too long", answer.json["cause"])

    def test_quorum_read_advances_raft_index(self) -> None:
        """quorum=true reads go through raft: X-Raft-Index grows, X-Etcd-Index not."""
        first = self.call("GET", "/v2/keys/")
        second = self.call("GET", "/v2/keys/?quorum=true")
        self.assertEqual(
            int(second.headers["x-raft-index"]), int(first.headers["x-raft-index"]) + 1
        )
        self.assertEqual(second.headers["x-etcd-index"], first.headers["x-etcd-index"])


class BadInputTests(APITestCase):
    """Malformed requests get etcd's errors and leave the store as it was."""

    def test_parameter_errors(self) -> None:
        """Bad parameters are 400 with index 0 and X-Etcd-Index 0."""
        self.call("PUT", "/v2/keys/k", b"value=v")
        self.assertError(
            self.call("PUT", "/v2/keys/k?ttl=abc", b"value=x"),
            400,
            202,
            'invalid value for "ttl"',
            0,
        )
        self.assertError(
            self.call("PUT", "/v2/keys/k?prevIndex=x"),
            400,
            203,
            'invalid value for "prevIndex"',
            0,
        )
        self.assertError(
            self.call("GET", "/v2/keys/k?wait=true&waitIndex=-1"),
            400,
            203,
            'invalid value for "waitIndex"',
            0,
        )
        self.assertError(
            self.call("GET", "/v2/keys/k?recursive=yes"),
            400,
            209,
            'invalid value for "recursive"',
            0,
        )
        self.assertError(
            self.call("PUT", "/v2/keys/k?x=%zz"),
            400,
            210,
            'invalid URL escape "%zz"',
            0,
        )
        self.assertError(
            self.call("PUT", "/v2/keys/k", b"value=%"),
            400,
            210,
            'invalid URL escape "%"',
            0,
        )
        self.assertError(
            self.call("GET", "/v2/keys/k?a=1;b=2"),
            400,
            210,
            "invalid semicolon separator in query",
            0,
        )
        self.assertEqual(self.call("GET", "/v2/keys/k").json["node"]["value"], "v")
        self.assertEqual(self.store.index, 4)

    def test_malformed_content_type(self) -> None:
        """A malformed Content-Type on a PUT is Go's ParseForm error, 210."""
        response = self.successResultOf(
            self.stub.put(
                BASE + "/v2/keys/k",
                data=b"value=v",
                headers={b"Content-Type": [FORM[b"Content-Type"][0] + b"; charset"]},
            )
        )
        answer = Answer(response, self.successResultOf(content(response)))
        self.assertError(answer, 400, 210, "mime: invalid media parameter", 0)

    def test_non_form_body_ignored(self) -> None:
        """A body that is not a form is not read: the value is empty."""
        answer = self.call("PUT", "/v2/keys/k", b"value=v", form=False)
        self.assertEqual(answer.json["node"]["value"], "")

    def test_bad_escape_in_path(self) -> None:
        """A bad escape in the path is Go's plain 400 before any handler."""
        answer = self.call("GET", "/v2/keys/a%zz")
        self.assertEqual((answer.code, answer.body), (400, b"400 Bad Request"))
        self.assertNotIn("access-control-allow-origin", answer.headers)

    def test_oversized_form_body(self) -> None:
        """A form body over 10 MiB is etcd's 400/210 "http: POST too large"."""
        answer = self.call("PUT", "/v2/keys/k", b"value=" + b"v" * MAX_FORM_BYTES)
        self.assertError(answer, 400, 210, "http: POST too large", 0)
        self.assertEqual(self.store.index, 3)

    def test_oversized_other_body(self) -> None:
        """Any other body over the limit is refused with 413."""
        answer = self.call("PUT", "/v2/keys/k", b"v" * (MAX_FORM_BYTES + 1), form=False)
        self.assertError(answer, 413, 210, "http: request body too large", 0)

    def test_largest_form_body_accepted(self) -> None:
        """A value that fills a 10 MiB form body is stored."""
        value = b"v" * (MAX_FORM_BYTES - len(b"value="))
        answer = self.call("PUT", "/v2/keys/k?noValueOnSuccess=true", b"value=" + value)
        self.assertEqual(answer.code, 201)
        self.assertEqual(len(self.store.get("/k", NOW).node.value or ""), len(value))

    def test_unexpected_failure_is_a_logged_300(self) -> None:
        """An unexpected exception is logged and answered 500/300, not a traceback."""

        class Broken(Store):
            def get(self, *args: Any, **kwargs: Any) -> Event:
                raise RuntimeError("disk on fire")

        api = KeysAPI(clock=self.clock, store=Broken())
        answer = Answer(*self._fetch(StubTreq(api.resource()), "/v2/keys/k"))
        self.assertEqual(answer.code, 500)
        self.assertEqual(answer.json["errorCode"], 300)
        self.assertEqual(answer.json["message"], "Raft Internal Error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def _fetch(self, stub: StubTreq, path: str) -> tuple[IResponse, bytes]:
        response = self.successResultOf(stub.get(BASE + path))
        return response, self.successResultOf(content(response))


class HTTPTests(APITestCase):
    """Go net/http behaviour: CORS, OPTIONS, 404, 405, clean-path redirects."""

    def test_options_anywhere(self) -> None:
        """OPTIONS on any path is 200 with CORS headers and no body."""
        answer = self.call("OPTIONS", "/no/such/path")
        self.assertEqual((answer.code, answer.body), (200, b""))
        self.assertEqual(
            answer.headers["access-control-allow-methods"],
            "POST, GET, OPTIONS, PUT, DELETE",
        )
        self.assertEqual(
            answer.headers["access-control-allow-headers"],
            "accept, content-type, authorization",
        )
        self.assertNotIn("content-type", answer.headers)

    def test_not_found(self) -> None:
        """Unknown paths get Go's text 404, with CORS headers."""
        for path in ("/v2/keysfoo", "/v2/stats", "/", "/v2/machines/"):
            answer = self.call("GET", path)
            self.assertEqual(
                (answer.code, answer.body), (404, b"404 page not found\n"), path
            )
            self.assertEqual(
                answer.headers["content-type"], "text/plain; charset=utf-8"
            )
            self.assertEqual(answer.headers["access-control-allow-origin"], "*")

    def test_method_not_allowed(self) -> None:
        """Unsupported methods are 405 with Allow and Go's text body."""
        for method, path, allowed in (
            ("PATCH", "/v2/keys/k", "HEAD,GET,PUT,POST,DELETE"),
            ("FROB", "/v2/keys", "HEAD,GET,PUT,POST,DELETE"),
            ("POST", "/version", "GET"),
            ("HEAD", "/health", "GET"),
            ("PUT", "/v2/machines", "GET,HEAD"),
            ("DELETE", "/v2/stats/store", "GET"),
            ("PATCH", "/v2/members", "GET,POST,DELETE,PUT"),
        ):
            answer = self.call(method, path)
            self.assertEqual(answer.code, 405, (method, path))
            self.assertEqual(answer.headers["allow"], allowed)
            if method != "HEAD":
                self.assertEqual(answer.body, b"Method Not Allowed\n")
            self.assertNotIn("x-etcd-cluster-id", answer.headers)

    def test_redirect_to_clean_path(self) -> None:
        """Non-clean paths (also once decoded) are 301 to the clean one."""
        answer = self.call("GET", "/v2/keys/a/../b?x=1")
        self.assertEqual(
            (answer.code, answer.headers["location"]), (301, "/v2/keys/b?x=1")
        )
        self.assertEqual(
            answer.body, b'<a href="/v2/keys/b?x=1">Moved Permanently</a>.\n\n'
        )
        self.assertEqual(answer.headers["content-type"], "text/html; charset=utf-8")
        put = self.call("PUT", "/v2/keys//a%2F%2Fb", b"value=1")
        self.assertEqual(
            (put.code, put.headers["location"], put.body), (301, "/v2/keys/a/b", b"")
        )
        self.assertNotIn("content-type", put.headers)
        dots = self.call("GET", "/v2/keys/a/%2E%2E/b%3F")
        self.assertEqual(dots.headers["location"], "/v2/keys/b%3F")
        self.assertEqual(self.store.index, 3)


class WatchTests(APITestCase):
    """Long polls and streams."""

    def test_long_poll_answered_by_a_later_put(self) -> None:
        """Headers come at once (X-Etcd-Index at registration); the event comes
        with the PUT that matches."""
        response = self.successResultOf(self.send("GET", "/v2/keys/k?wait=true"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"x-etcd-index"), [b"3"])
        self.assertEqual(self.store.watcher_count, 1)
        body = content(response)
        self.assertNoResult(body)
        self.call("PUT", "/v2/keys/other", b"value=1")
        self.stub.flush()
        self.assertNoResult(body)
        self.call("PUT", "/v2/keys/k", b"value=2")
        self.stub.flush()
        self.assertEqual(
            self.successResultOf(body),
            b'{"action":"set","node":{"key":"/k","value":"2","modifiedIndex":5,"createdIndex":5}}\n',
        )
        self.assertEqual(self.store.watcher_count, 0)

    def test_many_watchers_one_put(self) -> None:
        """Many long polls on one key are all answered by one PUT."""
        bodies = [
            content(self.successResultOf(self.send("GET", "/v2/keys/hot?wait=true")))
            for _ in range(50)
        ]
        self.call("PUT", "/v2/keys/hot", b"value=1")
        self.stub.flush()
        answers = {self.successResultOf(body) for body in bodies}
        self.assertEqual(len(answers), 1)

    def test_history_hit(self) -> None:
        """A waitIndex in the history is answered at once, X-Etcd-Index current."""
        self.call("PUT", "/v2/keys/k", b"value=1")
        self.call("PUT", "/v2/keys/k", b"value=2")
        answer = self.call("GET", "/v2/keys/k?wait=true&waitIndex=4")
        self.assertEqual(
            (answer.json["node"]["value"], answer.headers["x-etcd-index"]), ("1", "5")
        )

    def test_outdated_wait_index(self) -> None:
        """A waitIndex older than the 1000-event window is 400/401."""
        for i in range(1000):
            self.store.set("/k", str(i), NOW)
        answer = self.call("GET", "/v2/keys/k?wait=true&waitIndex=2")
        self.assertError(
            answer, 400, 401, "the requested history has been cleared [4/2]", 1003
        )

    def test_disconnect_unregisters_the_watcher(self) -> None:
        """A client going away cancels its watch: the watcher count returns to 0."""
        response = self.successResultOf(
            self.send("GET", "/v2/keys/k?wait=true&recursive=true")
        )
        self.assertEqual(self.store.watcher_count, 1)
        leaver = _Leaver()
        response.deliverBody(leaver)
        leaver.leave()
        self.stub.flush()
        self.assertEqual(self.store.watcher_count, 0)
        self.call("PUT", "/v2/keys/k/x", b"value=1")
        self.stub.flush()
        self.assertEqual(self.store.watcher_count, 0)

    def test_stream(self) -> None:
        """stream=true sends every matching event as its own line and stays open."""
        response = self.successResultOf(
            self.send("GET", "/v2/keys/s?wait=true&stream=true&recursive=true")
        )
        lines: list[bytes] = []
        done = collect(response, lines.append)
        for value in ("1", "2"):
            self.call("PUT", "/v2/keys/s/x", b"value=" + value.encode())
            self.stub.flush()
        self.assertEqual(
            [json.loads(line)["node"]["value"] for line in lines], ["1", "2"]
        )
        self.assertTrue(all(line.endswith(b"\n") for line in lines))
        self.assertNoResult(done)
        self.assertEqual(self.store.watcher_count, 1)
        self.api.stop()
        self.stub.flush()
        self.successResultOf(done)
        self.assertEqual(self.store.watcher_count, 0)

    def test_stream_from_history_goes_on(self) -> None:
        """A stream from an old waitIndex sends the history hits, then live events."""
        self.call("PUT", "/v2/keys/s", b"value=1")
        self.call("PUT", "/v2/keys/s", b"value=2")
        response = self.successResultOf(
            self.send("GET", "/v2/keys/s?wait=true&stream=true&waitIndex=4")
        )
        lines: list[bytes] = []
        collect(response, lines.append)
        self.call("PUT", "/v2/keys/s", b"value=3")
        self.stub.flush()
        values = [
            json.loads(line)["node"]["value"]
            for chunk in lines
            for line in chunk.splitlines()
        ]
        self.assertEqual(values, ["1", "2", "3"])

    def test_stop_ends_open_watches(self) -> None:
        """stop() answers open long polls with an empty body."""
        body = content(self.successResultOf(self.send("GET", "/v2/keys/k?wait=true")))
        self.api.stop()
        self.stub.flush()
        self.assertEqual(self.successResultOf(body), b"")
        self.assertEqual(self.store.watcher_count, 0)


class ExpiryTests(APITestCase):
    """TTL sweeps run on the injected clock."""

    def test_expiry_sends_expire_to_a_watcher(self) -> None:
        """Advancing the clock past a TTL expires the key and wakes its watcher."""
        self.call("PUT", "/v2/keys/t?ttl=2", b"value=v")
        body = content(self.successResultOf(self.send("GET", "/v2/keys/t?wait=true")))
        self.clock.advance(1.9)
        self.stub.flush()
        self.assertNoResult(body)
        self.clock.advance(0.2)
        self.stub.flush()
        event = json.loads(self.successResultOf(body))
        self.assertEqual(event["action"], "expire")
        self.assertEqual(
            event["node"], {"key": "/t", "modifiedIndex": 5, "createdIndex": 4}
        )
        self.assertEqual(event["prevNode"]["value"], "v")
        self.assertEqual(self.call("GET", "/v2/keys/t").code, 404)

    def test_sweep_is_scheduled_near_the_deadline(self) -> None:
        """One timer runs within 0.5 s after the next expiry and moves with writes."""
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.call("PUT", "/v2/keys/a?ttl=10", b"value=v")
        [call] = self.clock.getDelayedCalls()
        self.assertTrue(NOW + 10 <= call.getTime() <= NOW + 10.5)
        self.call("PUT", "/v2/keys/b?ttl=3", b"value=v")
        [call] = self.clock.getDelayedCalls()
        self.assertTrue(NOW + 3 <= call.getTime() <= NOW + 3.5)
        self.call("PUT", "/v2/keys/b?prevExist=true", b"value=v")
        self.call("DELETE", "/v2/keys/a")
        self.clock.advance(4)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_dir_expiry(self) -> None:
        """An expiring dir removes its subtree and reaches watchers inside it."""
        self.call("PUT", "/v2/keys/d?dir=true&ttl=1")
        self.call("PUT", "/v2/keys/d/k", b"value=v")
        body = content(self.successResultOf(self.send("GET", "/v2/keys/d/k?wait=true")))
        self.clock.advance(1.5)
        self.stub.flush()
        self.assertEqual(json.loads(self.successResultOf(body))["node"]["key"], "/d")


class ClusterEndpointTests(APITestCase):
    """/version, /health, /v2/members, /v2/machines and /v2/stats/*."""

    def test_version(self) -> None:
        """/version is etcd 3.4.23's JSON without a trailing newline."""
        answer = self.call("GET", "/version")
        self.assertEqual(answer.body, b'{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}')
        self.assertEqual(answer.headers["content-type"], "application/json")
        self.assertNotIn("x-etcd-cluster-id", answer.headers)

    def test_health(self) -> None:
        """/health is {"health":"true"} as text/plain, and counts a read."""
        answer = self.call("GET", "/health")
        self.assertEqual(
            (answer.body, answer.headers["content-type"]),
            (b'{"health":"true"}', "text/plain; charset=utf-8"),
        )
        self.assertEqual(self.store.stats.gets_success, 1)

    def test_members(self) -> None:
        """/v2/members lists this member with the advertised client URLs."""
        self.api.client_urls = ["http://127.0.0.1:23790"]
        answer = self.call("GET", "/v2/members")
        member = {
            "id": f"{self.api.cluster.member_id:x}",
            "name": "minietcd",
            "peerURLs": ["http://localhost:2380"],
            "clientURLs": ["http://127.0.0.1:23790"],
        }
        self.assertEqual(answer.json, {"members": [member]})
        self.assertTrue(answer.body.endswith(b"]}\n"))
        self.assertEqual(
            answer.headers["x-etcd-cluster-id"], f"{self.api.cluster.cluster_id:x}"
        )
        self.assertEqual(self.call("GET", "/v2/members/").json, {"members": [member]})
        self.assertEqual(self.call("GET", "/v2/members/leader").json, member)
        missing = self.call("GET", "/v2/members/xyz")
        self.assertEqual(
            (missing.code, missing.body), (404, b'{"message":"Not found"}')
        )

    def test_member_changes(self) -> None:
        """Member requests are validated as etcd does; adding or removing a member
        is refused (501), updating our own peer URLs is done (204)."""
        wrong = self.call("POST", "/v2/members", b"x", form=False)
        self.assertEqual(
            (wrong.code, wrong.json["message"]),
            (415, "Bad Content-Type , accept application/json"),
        )
        self.assertEqual(
            self.member_call("POST", "", b"").json,
            {"message": "unexpected end of JSON input"},
        )
        self.assertEqual(
            self.member_call("POST", "", b"{}").json, {"message": "no valid URLs given"}
        )
        added = self.member_call("POST", "", b'{"peerURLs":["http://10.0.0.2:2380"]}')
        self.assertEqual(added.code, 501)
        own = f"{self.api.cluster.member_id:x}"
        self.assertEqual(self.call("DELETE", "/v2/members/" + own).code, 501)
        self.assertEqual(
            self.call("DELETE", "/v2/members/1234").json,
            {"message": "No such member: 1234"},
        )
        self.assertEqual(self.call("DELETE", "/v2/members/xyz").code, 404)
        self.assertEqual(self.call("DELETE", "/v2/members").code, 405)
        moved = self.member_call("PUT", own, b'{"peerURLs":["http://10.0.0.1:2380"]}')
        self.assertEqual((moved.code, moved.body), (204, b""))
        [member] = self.call("GET", "/v2/members").json["members"]
        self.assertEqual(member["peerURLs"], ["http://10.0.0.1:2380"])
        self.assertEqual(member["id"], own)
        other = self.member_call("PUT", "1234", b'{"peerURLs":["http://a:1"]}')
        self.assertEqual(other.json, {"message": "No such member: 1234"})
        bad = self.member_call("PUT", own, b'{"peerURLs":["http://a:1/path"]}')
        self.assertEqual(
            (bad.code, bad.json["message"]),
            (400, "URL must not contain a path: http://a:1/path"),
        )

    def member_call(self, method: str, member: str, body: bytes) -> Answer:
        """A members request with a JSON body."""
        response = self.successResultOf(
            self.stub.request(
                method,
                BASE + "/v2/members/" + member,
                data=body,
                headers={b"Content-Type": [b"application/json"]},
            )
        )
        return Answer(response, self.successResultOf(content(response)))

    def test_machines(self) -> None:
        """/v2/machines joins the client URLs with ", " as text/plain."""
        self.api.client_urls = ["http://a:1", "http://b:2"]
        answer = self.call("GET", "/v2/machines")
        self.assertEqual(
            (answer.body, answer.headers["content-type"]),
            (b"http://a:1, http://b:2", "text/plain; charset=utf-8"),
        )

    def test_stats(self) -> None:
        """/v2/stats/store has real counters; self and leader describe a lone leader."""
        self.call("PUT", "/v2/keys/k", b"value=v")
        self.call("GET", "/v2/keys/k")
        self.send("GET", "/v2/keys/k?wait=true")
        stats = self.call("GET", "/v2/stats/store").json
        self.assertEqual(list(stats)[:2], ["getsSuccess", "getsFail"])
        # 1 failed read at bootstrap + etcd's auth probe on each of 3 requests.
        self.assertEqual(
            (stats["getsSuccess"], stats["getsFail"], stats["setsSuccess"]), (1, 4, 3)
        )
        self.assertEqual(stats["watchers"], 1)
        self.clock.advance(61.5)
        own = self.call("GET", "/v2/stats/self").json
        self.assertEqual(
            (own["state"], own["leaderInfo"]["uptime"]), ("StateLeader", "1m1.5s")
        )
        self.assertEqual(own["leaderInfo"]["leader"], own["id"])
        self.assertEqual(
            self.call("GET", "/v2/stats/leader").json,
            {"leader": own["id"], "followers": {}},
        )


class _Leaver(Protocol):
    """A response body reader that hangs up."""

    def leave(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        pass
