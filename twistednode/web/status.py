# -*- test-case-name: tests.web.test_status -*-
"""
StatusAPI: the node's view of its cluster over HTTP.

Four kinds of route, all thin: the node computes the status document, this module only
serves it.

- C{GET /status}: the document as JSON, exactly as the provider returns it.
- C{GET /}: the live page; C{GET /page/<file>}: its stylesheet and script, served from
  the C{twistednode.web.page} package data (no CDN, no build step).
- C{GET /metrics}: the node's Prometheus metrics, rendered by the C{metrics}
  callable the node gives (L{twistednode.metrics.exposition.NodeMetrics.render});
  404 without one.
- C{GET /events}: Server-Sent Events. The document is sent at once, then again whenever
  the node calls L{StatusAPI.changed} and, while L{StatusAPI.start} is in force, every
  C{push_interval} seconds so that "time since last hello" keeps moving. A client that
  goes away is unregistered: the stream is a L{Deferred} whose canceller forgets it, and
  Klein cancels it when the connection is lost.
- C{GET /v1/owner/<key>}: who owns a key, as the C{owner} callable the node gives
  computes it (C{{"key", "owner", "view"}}; C{?n=3} adds C{"owners"}, replicas).
- C{POST /v1/route/<service>/<key>}: the JSON body is the payload of a call to
  C{service} on the key's owner, through the C{route} callable; the answer is the
  handler's JSON. A failed call is a JSON error with the status its exception
  names (its C{status} and C{kind}: 404 unknown service, 503 no owner, 504 timed
  out, 502 handler failed); a body that is not JSON is 400, one over
  L{MAX_ROUTE_BODY} 413. Both routes are 404 without their callable.
- Anything else is a JSON error: 404 for an unknown path, 405 for a bad method, 503 if
  the provider fails or returns a document that is not JSON. Never a 500.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib.resources import files
from typing import Any

from attrs import define, field
from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from werkzeug.exceptions import MethodNotAllowed, NotFound

StatusDocument = dict[str, Any]
"""The status document; its shape is described in the README and in L{StatusAPI}."""

ASSET_TYPES: dict[str, bytes] = {
    "index.html": b"text/html; charset=utf-8",
    "cluster.css": b"text/css; charset=utf-8",
    "cluster.js": b"text/javascript; charset=utf-8",
}
"""The files of the live page, by name, with the content type each is served with."""

PAGE_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page loads nothing but from the node itself, and the browser enforces it."""

SSE_RETRY_MS = 1000
"""How long a browser waits before reconnecting a dropped event stream."""

MAX_ROUTE_BODY = 16 * 1024 * 1024
"""The largest payload C{POST /v1/route/...} takes, in bytes (413 above it)."""

MAX_REPLICAS = 64
"""The most owners C{GET /v1/owner/<key>?n=} lists."""

OwnerLookup = Callable[[str, int], dict[str, Any]]
"""C{(key, n)} -> C{{"key", "owner", "view"}} (and C{"owners"} when n > 1)."""

RouteCall = Callable[[str, str, object], "Deferred[object]"]
"""C{(service, key, payload)} -> a Deferred of the owner's answer."""


class StatusUnavailable(Exception):
    """The provider failed, or gave a document that cannot be sent as JSON."""


class BadRoute(Exception):
    """A route request this module refuses itself: C{status} and C{kind} say why."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


@cache
def page_asset(name: str) -> bytes:
    """Return the bytes of one of the page's files (read once from package data)."""
    if name not in ASSET_TYPES:
        raise NotFound()
    return files("twistednode.web.page").joinpath(name).read_bytes()


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8") + b"\n"


@define(eq=False)
class StatusAPI:
    """
    The Klein application serving the node's status, its live page and its event stream.

    @ivar provider: returns the status document, computed by the node on each call:
        C{{"self": {...}, "master": id-or-None, "members": [...], "registry": {...},
        "dropped": {reason: count}, "cluster": name, "now": epoch-seconds}}.
    @ivar push_interval: seconds between periodic pushes while started.
    @ivar metrics: renders C{GET /metrics} (sets its headers, returns the body), or
        None to answer 404 there.
    @ivar owner: answers C{GET /v1/owner/<key>} (L{OwnerLookup}); None: 404.
    @ivar route: runs C{POST /v1/route/<service>/<key>} (L{RouteCall}); None: 404.
    """

    app = Klein()
    log = Logger()

    provider: Callable[[], StatusDocument]
    _clock: IReactorTime
    push_interval: float = 1.0
    metrics: Callable[[IRequest], bytes] | None = None
    owner: OwnerLookup | None = None
    route: RouteCall | None = None
    _streams: dict[Deferred[None], IRequest] = field(init=False, factory=dict)
    _started: bool = field(init=False, default=False)
    _timer: IDelayedCall | None = field(init=False, default=None)
    _resource: IResource | None = field(init=False, default=None)

    def resource(self) -> IResource:
        """Return the Klein resource to mount (built once, the same one every time)."""
        if self._resource is None:
            self._resource = self.app.resource()
        return self._resource

    @property
    def subscriber_count(self) -> int:
        """How many event streams are open."""
        return len(self._streams)

    def changed(self) -> None:
        """Push the current document to every open event stream at once."""
        self._push()

    def start(self) -> None:
        """Push to open event streams every C{push_interval} seconds from now on."""
        self._started = True
        self._schedule()

    def stop(self) -> None:
        """Stop the periodic pushes and end every open event stream."""
        self._started = False
        self._unschedule()
        streams, self._streams = self._streams, {}
        for stream in streams:
            stream.callback(None)

    # Rendering the document

    def _document_bytes(self) -> bytes:
        try:
            document = self.provider()
            return json.dumps(document, separators=(",", ":"), allow_nan=False).encode(
                "utf-8"
            )
        except Exception as e:
            self.log.failure("The status provider failed")
            raise StatusUnavailable(f"{type(e).__name__}: {e}") from e

    def _event(self) -> bytes:
        return b"data: " + self._document_bytes() + b"\n\n"

    # Pushing

    def _push(self) -> None:
        if not self._streams:
            return
        try:
            chunk = self._event()
        except StatusUnavailable:
            return
        for request in list(self._streams.values()):
            with self.log.failuresHandled("While pushing the status to a page"):
                request.write(chunk)

    def _tick(self) -> None:
        self._timer = None
        self._push()
        self._schedule()

    def _schedule(self) -> None:
        if self._started and self._streams and self._timer is None:
            self._timer = self._clock.callLater(self.push_interval, self._tick)

    def _unschedule(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _forget(self, stream: Deferred[None]) -> None:
        self._streams.pop(stream, None)
        if not self._streams:
            self._unschedule()

    # Routes

    @app.route("/status", methods=["GET"])
    def status(self, request: IRequest) -> bytes:
        """The status document as JSON."""
        body = self._document_bytes() + b"\n"
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return body

    @app.route("/metrics", methods=["GET"])
    def metrics_text(self, request: IRequest) -> bytes:
        """The node's metrics, in the format the scraper asks for."""
        if self.metrics is None:
            raise NotFound()
        try:
            return self.metrics(request)
        except Exception as e:
            self.log.failure("The metrics could not be collected")
            raise StatusUnavailable(f"{type(e).__name__}: {e}") from e

    @app.route("/", methods=["GET"])
    def index(self, request: IRequest) -> bytes:
        """The live page."""
        return self._asset(request, "index.html")

    @app.route("/page/<string:name>", methods=["GET"])
    def asset(self, request: IRequest, name: str) -> bytes:
        """One of the page's static files."""
        return self._asset(request, name)

    def _asset(self, request: IRequest, name: str) -> bytes:
        body = page_asset(name)
        request.setHeader(b"content-type", ASSET_TYPES[name])
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-content-type-options", b"nosniff")
        if name == "index.html":
            request.setHeader(b"content-security-policy", PAGE_POLICY)
        return body

    @app.route("/events", methods=["GET"])
    def events(self, request: IRequest) -> bytes | Deferred[None]:
        """A Server-Sent-Events stream of the status document."""
        first = self._event()
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")
        if request.method == b"HEAD":
            return b""
        request.write(b"retry: %d\n\n" % (SSE_RETRY_MS,) + first)
        stream: Deferred[None] = Deferred(self._forget)
        self._streams[stream] = request
        self._schedule()
        return stream

    @app.route("/v1/owner/<path:key>", methods=["GET"])
    def owner_of(self, request: IRequest, key: str) -> bytes:
        """Who owns C{key} in this node's view."""
        if self.owner is None:
            raise NotFound()
        n = 1
        given = request.args.get(b"n")
        if given:
            text = given[0].decode("ascii", "replace")
            if not text.isdigit() or not 1 <= int(text) <= MAX_REPLICAS:
                raise BadRoute(400, "bad-request", f"n must be 1-{MAX_REPLICAS}")
            n = int(text)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return _json(self.owner(key, n))

    @app.route("/v1/route/<string:service>/<path:key>", methods=["POST"])
    def route_call(self, request: IRequest, service: str, key: str) -> Deferred[bytes]:
        """A call to C{service} on C{key}'s owner, the body as its payload."""
        if self.route is None:
            raise NotFound()
        assert request.content is not None
        body = request.content.read(MAX_ROUTE_BODY + 1)
        if len(body) > MAX_ROUTE_BODY:
            raise BadRoute(413, "too-large", f"the body is over {MAX_ROUTE_BODY} bytes")
        try:
            payload = json.loads(body) if body.strip() else None
        except (ValueError, RecursionError) as e:
            raise BadRoute(400, "bad-request", f"the body is not JSON: {e}") from None
        answer = self.route(service, key, payload)

        def send(value: object) -> bytes:
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"cache-control", b"no-store")
            return _json(value)

        return answer.addCallback(send)

    # Errors, all as JSON

    @app.handle_errors(BadRoute)
    def bad_route(self, request: IRequest, failure: Failure) -> bytes:
        """A route request refused here (400, 413)."""
        error = failure.value
        assert isinstance(error, BadRoute)
        request.setResponseCode(error.status)
        request.setHeader(b"content-type", b"application/json")
        return _json({"error": error.kind, "message": str(error)})

    @app.handle_errors(NotFound)
    def not_found(self, request: IRequest, failure: Failure) -> bytes:
        """Unknown path: 404."""
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"application/json")
        path = request.path.decode("utf-8", "replace")
        return _json({"error": "not found", "path": path})

    @app.handle_errors(MethodNotAllowed)
    def method_not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        """Known path, wrong method: 405 with an Allow header."""
        error = failure.value
        assert isinstance(error, MethodNotAllowed)
        allowed = sorted(error.valid_methods or [])
        request.setResponseCode(405)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
        method = request.method.decode("ascii", "replace")
        return _json(
            {"error": "method not allowed", "method": method, "allowed": allowed}
        )

    @app.handle_errors(StatusUnavailable)
    def unavailable(self, request: IRequest, failure: Failure) -> bytes:
        """The provider failed: 503, so a page falls back and retries."""
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"retry-after", b"1")
        return _json({"error": "status unavailable", "reason": str(failure.value)})

    @app.handle_errors(Exception)
    def call_failed(self, request: IRequest, failure: Failure) -> bytes:
        """A failed call: the status and kind its exception names; anything
        else (a bug) 503, logged, never a 500 with a traceback."""
        error = failure.value
        status = getattr(error, "status", None)
        kind = getattr(error, "kind", None)
        request.setHeader(b"content-type", b"application/json")
        if isinstance(status, int) and 400 <= status < 600 and isinstance(kind, str):
            request.setResponseCode(status)
            document: dict[str, object] = {"error": kind, "message": str(error)}
            node = getattr(error, "node", None)
            if isinstance(node, str):
                document["node"] = node
            return _json(document)
        self.log.failure("A request failed", failure)
        request.setResponseCode(503)
        return _json({"error": "unavailable", "message": failure.getErrorMessage()})
