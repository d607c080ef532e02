"""minietcd's HTTP API through StubTreq: keys, bad input, Go net/http behaviour."""

from __future__ import annotations

from typing import Any

from treq import content
from treq.testing import StubTreq
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IResponse
from twisted.web.test.requesthelper import DummyChannel

from minietcd.api import KeysAPI
from minietcd.gohttp import MAX_BODY_BYTES, MAX_URI_BYTES, BoundedRequest, body_size
from minietcd.params import MAX_FORM_BYTES
from minietcd.store import Event, Store
from tests.harness.etcdtesting import BASE, FORM, NOW, Answer, APITestCase


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


class BoundedRequestTests(SynchronousTestCase):
    """The request class of the real server keeps at most the body limit + 1."""

    def test_body_beyond_the_limit_is_counted_not_kept(self) -> None:
        """Chunks past the limit are counted but not stored."""
        request = BoundedRequest(DummyChannel())
        request.gotLength(None)
        request.handleContentChunk(b"x" * MAX_BODY_BYTES)
        request.handleContentChunk(b"y" * 100)
        request.handleContentChunk(b"z" * 100)
        self.assertEqual(request.received_length, MAX_BODY_BYTES + 200)
        self.assertEqual(body_size(request), MAX_BODY_BYTES + 200)
        assert request.content is not None
        request.content.seek(0, 2)
        self.assertEqual(request.content.tell(), MAX_BODY_BYTES + 1)

    def test_lost_connection_calls_on_lost_once(self) -> None:
        """A lost client calls C{on_lost} once, then forgets it."""
        request = BoundedRequest(DummyChannel())
        calls: list[None] = []
        request.on_lost = lambda: calls.append(None)
        request.connectionLost(Failure(ConnectionDone()))
        request.connectionLost(Failure(ConnectionDone()))
        self.assertEqual((calls, request.on_lost), ([None], None))


class ClockWarningTests(SynchronousTestCase):
    """A clock still at the epoch makes every TTL permanent, as etcd would."""

    def test_warns_about_a_clock_before_2000(self) -> None:
        """A KeysAPI on an unadvanced Clock logs a warning saying why TTLs stick."""
        with capturedLogs() as events:
            api = KeysAPI(clock=Clock())
        [warning] = [e for e in events if "before 2000" in e["log_format"]]
        self.assertEqual(warning["now"], 0)
        api.store.set("/k", "v", 0.0, ttl=1)
        self.assertIsNone(api.store.next_expiry())
