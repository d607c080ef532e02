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


class StatusUnavailable(Exception):
    """The provider failed, or gave a document that cannot be sent as JSON."""


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
    """

    app = Klein()
    log = Logger()

    provider: Callable[[], StatusDocument]
    _clock: IReactorTime
    push_interval: float = 1.0
    metrics: Callable[[IRequest], bytes] | None = None
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

    # Errors, all as JSON

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
