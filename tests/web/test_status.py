"""Tests for twistednode.web.status: the JSON status, the page's files, the event
stream."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from attrs import define, field
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IResponse

from twistednode.web.status import ASSET_TYPES, StatusAPI

URL = "http://node.example/"

NODE_IDS = (
    "3f2a9c1e-5b7d-4e21-9a0c-7d1e2f3a4b5c",
    "9b1c4d2e-0f1a-4b3c-8d5e-6f7a8b9c0d1e",
    "c7e8f9a0-1b2c-4d3e-9f4a-5b6c7d8e9f0a",
)


@define(eq=False)
class FakeCluster:
    """A status provider for tests: a cluster of nodes seen from the first one."""

    ids: list[str] = field(factory=lambda: list(NODE_IDS))
    master: str | None = NODE_IDS[1]
    now: float = 1_764_000_000.0
    seen: dict[str, float] = field(factory=dict)
    calls: int = 0
    cluster: str = "demo"

    def document(self) -> dict[str, Any]:
        """The status document, in the shape the node produces."""
        self.calls += 1
        me, *others = self.ids
        return {
            "self": {
                "id": me,
                "address": "127.0.0.1",
                "port": 41001,
                "isMaster": self.master == me,
                "isMasterEligible": True,
                "weight": 1,
                "hostName": "alpha",
                "advertisement": {"role": "web", "version": "1.4.2"},
                "startedAt": self.now - 320.0,
            },
            "master": self.master,
            "members": [self._member(i, node_id) for i, node_id in enumerate(others)],
            "registry": {
                "state": "watching",
                "api": "v2",
                "url": "http://127.0.0.1:2379",
                "cluster": self.cluster,
                "counters": {"registrations": 1, "refreshes": 42, "watchEvents": 7},
            },
            "dropped": {"bad-json": 2},
            "cluster": self.cluster,
            "now": self.now,
        }

    def _member(self, index: int, node_id: str) -> dict[str, Any]:
        return {
            "id": node_id,
            "address": "127.0.0.1",
            "port": 41002 + index,
            "isMaster": self.master == node_id,
            "isMasterEligible": index != 1,
            "weight": 5 if index == 0 else 1,
            "hostName": ["bravo", "charlie", "delta", "echo"][index % 4],
            "lastSeen": self.seen.get(node_id, 0.4 + index),
            "advertisement": {"role": "web"} if index == 0 else None,
            "source": ["registry", "static", "learned"][index % 3],
        }


@define(eq=False)
class EventReader(Protocol):
    """Collects an event stream's body and can hang up, as a browser tab closing."""

    received: bytearray = field(factory=bytearray)
    finished: Deferred[None] = field(factory=Deferred)
    reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.reason = reason
        self.finished.callback(None)

    def events(self) -> list[dict[str, Any]]:
        """The documents received so far, one per C{data:} event."""
        out = []
        for block in bytes(self.received).split(b"\n\n"):
            for line in block.split(b"\n"):
                if line.startswith(b"data: "):
                    out.append(json.loads(line[len(b"data: ") :]))
        return out

    def hang_up(self) -> None:
        """Close the connection from the client side."""
        transport = self.transport
        assert transport is not None
        IPushProducer(transport).stopProducing()


@define(eq=False)
class Harness:
    """A StatusAPI over a FakeCluster with a Clock, and a StubTreq on its resource."""

    cluster: FakeCluster = field(factory=FakeCluster)
    clock: Clock = field(factory=Clock)
    api: StatusAPI = field(init=False)
    http: StubTreq = field(init=False)

    def __attrs_post_init__(self) -> None:
        self.api = StatusAPI(provider=self.cluster.document, clock=self.clock)
        self.http = StubTreq(self.api.resource())


class StatusTests(SynchronousTestCase):
    """GET /status serves the provider's document as JSON."""

    def setUp(self) -> None:
        self.h = Harness()

    def get(self, path: str, method: str = "GET") -> tuple[IResponse, bytes]:
        response = self.successResultOf(self.h.http.request(method, URL + path))
        body = self.successResultOf(response.content())
        return response, body

    def test_status_is_the_document(self) -> None:
        """The JSON body is exactly what the provider returned."""
        response, body = self.get("status")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json"]
        )
        self.assertEqual(json.loads(body), FakeCluster().document())

    def test_status_is_computed_per_request(self) -> None:
        """Each request asks the provider again, so a change shows at once."""
        self.get("status")
        self.h.cluster.master = NODE_IDS[2]
        _, body = self.get("status")
        self.assertEqual(json.loads(body)["master"], NODE_IDS[2])
        self.assertEqual(self.h.cluster.calls, 2)

    def test_status_not_cached(self) -> None:
        """Neither the status nor the page is cached stale by a browser."""
        response, _ = self.get("status")
        self.assertEqual(response.headers.getRawHeaders("cache-control"), ["no-store"])

    def test_provider_failure_is_503(self) -> None:
        """A provider that raises gives a 503 JSON error, logged, never a 500."""

        def broken() -> dict[str, Any]:
            raise RuntimeError("membership not ready")

        self.h.api.provider = broken
        response, body = self.get("status")
        self.assertEqual(response.code, 503)
        self.assertEqual(
            json.loads(body),
            {
                "error": "status unavailable",
                "reason": "RuntimeError: membership not ready",
            },
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_unserializable_document_is_503(self) -> None:
        """A document that is not JSON (NaN, a set) gives a 503, not broken JSON."""
        for bad in (float("nan"), {1, 2}):

            def provider(bad: object = bad) -> dict[str, Any]:
                return {"now": bad}

            self.h.api.provider = provider
            response, body = self.get("status")
            self.assertEqual(response.code, 503)
            self.assertEqual(json.loads(body)["error"], "status unavailable")
        self.assertEqual(len(self.flushLoggedErrors(ValueError, TypeError)), 2)

    def test_resource_built_once(self) -> None:
        """resource() returns the same resource every time."""
        self.assertIs(self.h.api.resource(), self.h.api.resource())


class PageTests(SynchronousTestCase):
    """The page and its files come from package data with the right types."""

    def setUp(self) -> None:
        self.h = Harness()

    def get(self, path: str) -> tuple[IResponse, bytes]:
        response = self.successResultOf(self.h.http.get(URL + path))
        return response, self.successResultOf(response.content())

    def test_index(self) -> None:
        """GET / is the page, as HTML, with a policy allowing only the node itself."""
        response, body = self.get("")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["text/html; charset=utf-8"]
        )
        self.assertEqual(
            body, files("twistednode.web.page").joinpath("index.html").read_bytes()
        )
        [policy] = response.headers.getRawHeaders("content-security-policy")
        self.assertIn("default-src 'none'", policy)
        self.assertIn("connect-src 'self'", policy)

    def test_assets(self) -> None:
        """Each file of the page is served with its content type and no sniffing."""
        for name, content_type in ASSET_TYPES.items():
            response, body = self.get("page/" + name)
            self.assertEqual(response.code, 200, name)
            self.assertEqual(
                response.headers.getRawHeaders("content-type"), [content_type.decode()]
            )
            self.assertEqual(
                response.headers.getRawHeaders("x-content-type-options"), ["nosniff"]
            )
            self.assertEqual(
                body, files("twistednode.web.page").joinpath(name).read_bytes(), name
            )

    def test_page_refers_only_to_its_own_files(self) -> None:
        """The page loads its stylesheet and script from the node, nothing external."""
        _, body = self.get("")
        html = body.decode()
        self.assertIn('href="page/cluster.css"', html)
        self.assertIn('src="page/cluster.js"', html)
        for page in (html, self.get("page/cluster.js")[1].decode()):
            self.assertNotIn("http://", page.replace("http://www.w3.org/2000/svg", ""))
            self.assertNotIn("https://", page)

    def test_unknown_asset_is_404(self) -> None:
        """A file that is not part of the page is a 404, not a file read."""
        for name in ("secret.txt", "__init__.py", "..%2F__init__.py"):
            response, body = self.get("page/" + name)
            self.assertEqual(response.code, 404, name)
            self.assertEqual(json.loads(body)["error"], "not found")


class ErrorTests(SynchronousTestCase):
    """Unknown paths and bad methods are JSON errors."""

    def setUp(self) -> None:
        self.h = Harness()

    def test_unknown_path_is_404_json(self) -> None:
        """An unknown path is a 404 with a JSON body naming it."""
        response = self.successResultOf(self.h.http.get(URL + "nope/deeper"))
        self.assertEqual(response.code, 404)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json"]
        )
        self.assertEqual(
            self.successResultOf(response.json()),
            {"error": "not found", "path": "/nope/deeper"},
        )

    def test_bad_method_is_405_json(self) -> None:
        """A POST or DELETE to a known path is a 405 saying what is allowed."""
        for method, path in (("POST", "status"), ("DELETE", "events"), ("PUT", "")):
            response = self.successResultOf(self.h.http.request(method, URL + path))
            self.assertEqual(response.code, 405, (method, path))
            body = self.successResultOf(response.json())
            self.assertEqual(body["error"], "method not allowed")
            self.assertEqual(body["method"], method)
            self.assertIn("GET", body["allowed"])
            [allow] = response.headers.getRawHeaders("allow")
            self.assertIn("GET", allow)

    def test_head_is_allowed(self) -> None:
        """HEAD works wherever GET does, the event stream included, without hanging."""
        for path in ("status", "", "page/cluster.js", "events"):
            response = self.successResultOf(self.h.http.head(URL + path))
            self.assertEqual(response.code, 200, path)
        self.assertEqual(self.h.api.subscriber_count, 0)


class EventStreamTests(SynchronousTestCase):
    """GET /events streams the document at once, on changes and periodically."""

    def setUp(self) -> None:
        self.h = Harness()

    def subscribe(self) -> tuple[IResponse, EventReader]:
        response = self.successResultOf(self.h.http.get(URL + "events"))
        reader = EventReader()
        response.deliverBody(reader)
        self.h.http.flush()
        return response, reader

    def test_first_event_at_once(self) -> None:
        """The stream is text/event-stream and carries the document right away."""
        response, reader = self.subscribe()
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"),
            ["text/event-stream; charset=utf-8"],
        )
        self.assertEqual(reader.events(), [FakeCluster().document()])
        self.assertTrue(bytes(reader.received).startswith(b"retry: 1000\n\n"))
        self.assertEqual(self.h.api.subscriber_count, 1)
        self.assertNoResult(reader.finished)

    def test_one_line_per_event(self) -> None:
        """Each document is a single data line, even with newlines in its strings."""
        self.h.cluster.cluster = "two\nlines"
        _, reader = self.subscribe()
        [block] = [b for b in bytes(reader.received).split(b"\n\n") if b"data" in b]
        self.assertEqual(block.count(b"\n"), 0)
        self.assertEqual(reader.events()[0]["cluster"], "two\nlines")

    def test_changed_pushes_at_once(self) -> None:
        """changed() sends the new document to every subscriber without waiting."""
        _, first = self.subscribe()
        _, second = self.subscribe()
        self.h.cluster.master = NODE_IDS[2]
        self.h.api.changed()
        self.h.http.flush()
        for reader in (first, second):
            self.assertEqual(
                [e["master"] for e in reader.events()], [NODE_IDS[1], NODE_IDS[2]]
            )

    def test_changed_without_subscribers_is_free(self) -> None:
        """With no page open, changed() does not even ask the provider."""
        self.h.api.changed()
        self.assertEqual(self.h.cluster.calls, 0)

    def test_periodic_push_after_start(self) -> None:
        """Once started, the document is pushed every second, following the clock."""
        _, reader = self.subscribe()
        self.h.api.start()
        for step in range(3):
            self.h.cluster.now += 1
            self.h.clock.advance(1)
            self.h.http.flush()
            self.assertEqual(len(reader.events()), 2 + step)
        self.assertEqual(
            [e["now"] for e in reader.events()],
            [1_764_000_000.0 + i for i in range(4)],
        )

    def test_no_periodic_push_before_start(self) -> None:
        """Without start(), time passing pushes nothing."""
        _, reader = self.subscribe()
        self.h.clock.advance(10)
        self.h.http.flush()
        self.assertEqual(len(reader.events()), 1)
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_no_timer_without_subscribers(self) -> None:
        """A started API with no page open schedules nothing, until one opens."""
        self.h.api.start()
        self.assertEqual(self.h.clock.getDelayedCalls(), [])
        _, reader = self.subscribe()
        self.assertEqual(len(self.h.clock.getDelayedCalls()), 1)
        reader.hang_up()
        self.h.http.flush()
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_client_going_away_is_unregistered(self) -> None:
        """A client that hangs up is forgotten, and later pushes skip it."""
        _, first = self.subscribe()
        _, second = self.subscribe()
        self.assertEqual(self.h.api.subscriber_count, 2)
        first.hang_up()
        self.h.http.flush()
        self.assertEqual(self.h.api.subscriber_count, 1)
        second.hang_up()
        self.h.http.flush()
        self.assertEqual(self.h.api.subscriber_count, 0)
        calls = self.h.cluster.calls
        self.h.api.changed()
        self.assertEqual(self.h.cluster.calls, calls)

    def test_stop_ends_streams(self) -> None:
        """stop() ends every stream cleanly and stops the periodic push."""
        self.h.api.start()
        _, reader = self.subscribe()
        self.h.api.stop()
        self.h.http.flush()
        self.successResultOf(reader.finished)
        self.assertEqual(self.h.api.subscriber_count, 0)
        self.assertEqual(self.h.clock.getDelayedCalls(), [])
        self.assertEqual(len(reader.events()), 1)

    def test_restart_after_stop(self) -> None:
        """start() after stop() pushes again to new subscribers."""
        self.h.api.start()
        self.h.api.stop()
        self.h.api.start()
        _, reader = self.subscribe()
        self.h.clock.advance(1)
        self.h.http.flush()
        self.assertEqual(len(reader.events()), 2)

    def test_failing_provider_skips_push(self) -> None:
        """If the provider fails during a push, streams stay open for the next one."""
        _, reader = self.subscribe()
        good = self.h.api.provider

        def broken() -> dict[str, Any]:
            raise RuntimeError("flaky")

        self.h.api.provider = broken
        self.h.api.changed()
        self.h.api.provider = good
        self.h.api.changed()
        self.h.http.flush()
        self.assertEqual(len(reader.events()), 2)
        self.assertNoResult(reader.finished)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_failing_provider_at_subscribe_is_503(self) -> None:
        """A stream that cannot get its first document is a 503, and not registered."""

        def broken() -> dict[str, Any]:
            raise RuntimeError("not ready")

        self.h.api.provider = broken
        response = self.successResultOf(self.h.http.get(URL + "events"))
        self.assertEqual(response.code, 503)
        self.assertEqual(self.h.api.subscriber_count, 0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class MetricsRouteTests(SynchronousTestCase):
    """GET /metrics passes the request to the node's renderer, or is 404."""

    def get(self, api: StatusAPI, method: str = "GET") -> tuple[IResponse, bytes]:
        http = StubTreq(api.resource())
        response = self.successResultOf(http.request(method, URL + "metrics"))
        return response, self.successResultOf(response.content())

    def test_without_renderer_is_404(self) -> None:
        """A status API given no metrics answers 404 there, as JSON."""
        api = StatusAPI(provider=FakeCluster().document, clock=Clock())
        response, body = self.get(api)
        self.assertEqual(response.code, 404)
        self.assertEqual(json.loads(body)["error"], "not found")

    def test_renderer_answers(self) -> None:
        """The renderer sets the headers and gives the body."""

        def render(request: Any) -> bytes:
            request.setHeader(b"content-type", b"text/plain")
            return b"twistednode_master 1.0\n"

        api = StatusAPI(provider=FakeCluster().document, clock=Clock(), metrics=render)
        response, body = self.get(api)
        self.assertEqual((response.code, body), (200, b"twistednode_master 1.0\n"))
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/plain"])

    def test_failing_renderer_is_503(self) -> None:
        """A collector that raises is a logged 503, never a 500."""

        def render(request: Any) -> bytes:
            raise KeyError("self")

        api = StatusAPI(provider=FakeCluster().document, clock=Clock(), metrics=render)
        response, body = self.get(api)
        self.assertEqual(response.code, 503)
        self.assertIn("KeyError", json.loads(body)["reason"])
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
