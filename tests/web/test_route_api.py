"""Tests for the routing routes of twistednode.web.status: C{GET /v1/owner/<key>}
and C{POST /v1/route/<service>/<key>}, served from the callables the node gives."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IResponse

from twistednode.routing.errors import (
    CallTimedOut,
    HandlerFailed,
    NoOwner,
    UnknownService,
)
from twistednode.web.status import MAX_ROUTE_BODY, StatusAPI

URL = "http://node.example/"


def document() -> dict[str, Any]:
    return {"self": {"id": "a"}, "members": []}


class RouteAPITests(SynchronousTestCase):
    """The node's owner lookup and calls, over HTTP, with JSON errors."""

    def setUp(self) -> None:
        self.calls: list[tuple[str, str, object]] = []
        self.answer: Deferred[object] = succeed({"ok": True})
        self.api = StatusAPI(
            provider=document,
            clock=Clock(),
            owner=self.owner,
            route=self.route,
        )
        self.http = StubTreq(self.api.resource())

    def owner(self, key: str, n: int) -> dict[str, Any]:
        found: dict[str, Any] = {"key": key, "owner": "node-b", "view": 42}
        if n > 1:
            found["owners"] = ["node-b", "node-a", "node-c"][:n]
        return found

    def route(self, service: str, key: str, payload: object) -> Deferred[object]:
        self.calls.append((service, key, payload))
        return self.answer

    def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[IResponse, Any]:
        response = self.successResultOf(
            self.http.request(method, URL + path, data=body)
        )
        content = self.successResultOf(response.content())
        return response, json.loads(content)

    def test_owner_names_the_owner_and_the_view(self) -> None:
        """GET /v1/owner/<key> is the node's answer for the key, as JSON."""
        response, body = self.request("GET", "v1/owner/doc-1")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, {"key": "doc-1", "owner": "node-b", "view": 42})

    def test_owner_key_may_hold_slashes_and_escapes(self) -> None:
        """The key is the rest of the path, percent-decoded."""
        _, body = self.request("GET", "v1/owner/users/42/caf%C3%A9")
        self.assertEqual(body["key"], "users/42/café")

    def test_owner_lists_replicas_when_asked(self) -> None:
        """?n=2 adds the first two owners."""
        _, body = self.request("GET", "v1/owner/doc-1?n=2")
        self.assertEqual(body["owners"], ["node-b", "node-a"])

    def test_owner_refuses_a_bad_replica_count(self) -> None:
        """?n= must be a small positive integer: 400 as JSON."""
        for n in ("0", "x", "1000"):
            response, body = self.request("GET", f"v1/owner/doc-1?n={n}")
            self.assertEqual((response.code, body["error"]), (400, "bad-request"))

    def test_route_passes_the_body_and_answers_the_result(self) -> None:
        """POST /v1/route/<service>/<key>: the JSON body is the payload, the
        answer is the call's result."""
        response, body = self.request("POST", "v1/route/echo/doc-7", b'{"n": [1, 2]}')
        self.assertEqual((response.code, body), (200, {"ok": True}))
        self.assertEqual(self.calls, [("echo", "doc-7", {"n": [1, 2]})])

    def test_route_with_an_empty_body_sends_null(self) -> None:
        """No body is a call with payload None."""
        self.request("POST", "v1/route/echo/k")
        self.assertEqual(self.calls, [("echo", "k", None)])

    def test_route_refuses_a_body_that_is_not_json(self) -> None:
        """400, and no call is made."""
        response, body = self.request("POST", "v1/route/echo/k", b"{nope")
        self.assertEqual((response.code, body["error"]), (400, "bad-request"))
        self.assertEqual(self.calls, [])

    def test_route_refuses_a_body_over_the_limit(self) -> None:
        """413 above MAX_ROUTE_BODY, and no call is made."""
        big = b'"' + b"x" * MAX_ROUTE_BODY + b'"'
        response, body = self.request("POST", "v1/route/echo/k", big)
        self.assertEqual((response.code, body["error"]), (413, "too-large"))
        self.assertEqual(self.calls, [])

    def test_route_failures_carry_their_status_and_kind(self) -> None:
        """Each call error is JSON with the HTTP status its kind names."""
        cases = [
            (UnknownService("no handler for 'x'", node="node-b"), 404),
            (NoOwner("no member may own keys"), 503),
            (CallTimedOut("no answer in 5 s"), 504),
            (HandlerFailed("KeyError: 'x'", node="node-b"), 502),
        ]
        for error, status in cases:
            self.answer = fail(error)
            response, body = self.request("POST", "v1/route/x/k", b"{}")
            self.assertEqual(response.code, status)
            self.assertEqual(body["error"], error.kind)
            self.assertEqual(body["message"], error.message)
            if error.node is not None:
                self.assertEqual(body["node"], error.node)

    def test_route_failure_of_another_kind_is_a_logged_503(self) -> None:
        """An exception that names no status is a bug: logged, 503, never 500."""
        self.answer = fail(ZeroDivisionError("oops"))
        response, body = self.request("POST", "v1/route/x/k", b"{}")
        self.assertEqual((response.code, body["error"]), (503, "unavailable"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_routes_are_404_without_their_callables(self) -> None:
        """A status API given no owner or route answers 404 there."""
        http = StubTreq(StatusAPI(provider=document, clock=Clock()).resource())
        for method, path in (("GET", "v1/owner/k"), ("POST", "v1/route/echo/k")):
            response = self.successResultOf(http.request(method, URL + path))
            self.assertEqual(response.code, 404)
            body = json.loads(self.successResultOf(response.content()))
            self.assertEqual(body["error"], "not found")

    def test_route_is_post_only(self) -> None:
        """GET on a route is 405, as JSON."""
        response, body = self.request("GET", "v1/route/echo/k")
        self.assertEqual(response.code, 405)
        self.assertEqual(body["allowed"], ["POST"])
