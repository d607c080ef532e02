# -*- test-case-name: tests.minietcd.test_keys_api -*-
"""etcd's v2 client HTTP API over a L{Store}: parse, call the store, render.

One catch-all Klein route receives every request; the path and query are read
from the raw request line, as Go's C{net/http} reads them, so percent-decoding,
C{%2F}, path cleaning redirects and form parsing behave as in etcd 3.4.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from attrs import Factory, define, field
from klein import Klein
from klein.resource import KleinResource
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request
from werkzeug.routing import BaseConverter

from minietcd import gohttp
from minietcd.cluster import (
    Cluster,
    MemberRequestError,
    hex_id,
    machines_text,
    message_json,
    parse_peer_urls,
    store_stats_json,
    version_json,
)
from minietcd.errors import INVALID_FORM, RAFT_INTERNAL, EtcdError
from minietcd.gohttp import (
    JSON,
    MAX_BODY_BYTES,
    MAX_URI_BYTES,
    TEXT,
    body,
    body_size,
)
from minietcd.longpoll import LongPoll
from minietcd.metrics import CONTENT_TYPE, ServerMetrics
from minietcd.params import (
    EscapeError,
    KeyRequest,
    clean_path,
    media_type,
    parse_form,
    parse_hex_id,
    parse_key_request,
    unescape,
)
from minietcd.render import error_json, event_json
from minietcd.store import Event, Store, to_ns

#: The raft term a freshly elected single etcd member reports.
RAFT_TERM = b"2"
#: The raft index a fresh etcd 3.4 member has applied before serving.
START_RAFT_INDEX = 4

_YEAR_2000 = 946_684_800.0
_KEYS_METHODS = frozenset({b"HEAD", b"GET", b"PUT", b"POST", b"DELETE"})
_FORM_TYPE = "application/x-www-form-urlencoded"
_ENDPOINT = "dispatch"
_SINGLE_MEMBER = (
    "minietcd is a single-member cluster: members cannot be added or removed"
)


class _Everything(BaseConverter):
    """Match any path, slashes and emptiness included: the API routes itself."""

    regex = ".*"
    part_isolating = False


class _KeysResource(KleinResource):
    """Klein's resource for an app whose single route takes every request.

    The API parses the raw request line itself, so werkzeug's matching would only
    cost time (and answer 400 to paths that are not UTF-8, which etcd keys may
    be): the route's endpoint is run through Klein's C{execute_endpoint} directly.
    It returns the body, or C{NOT_DONE_YET} for a watch, which answers itself
    (see L{LongPoll}).
    """

    def render(self, request: IRequest) -> Any:
        return self._app.execute_endpoint(_ENDPOINT, request, "")


class _Klein(Klein):
    def resource(self) -> KleinResource:
        return _KeysResource(self)


@define(eq=False)
class KeysAPI:
    """The etcd v2 client API (keys, members, machines, stats, version, health).

    C{resource()} is the Twisted resource to serve. TTL expiry is scheduled on
    C{clock}; C{stop()} cancels that and ends open watches.
    """

    app: ClassVar[Klein] = _Klein()
    app.url_map.converters["everything"] = _Everything
    log: ClassVar[Logger] = Logger()

    _clock: IReactorTime
    store: Store = Factory(Store)
    client_urls: list[str] = Factory(lambda: ["http://127.0.0.1:2379"])
    name: str = "minietcd"
    raft_index: int = field(init=False, default=START_RAFT_INDEX)
    metrics: ServerMetrics = field(init=False)
    cluster: Cluster = field(init=False)
    _cluster_id: list[bytes] = field(init=False)
    _resource: IResource | None = field(init=False, default=None)
    _sweep: IDelayedCall | None = field(init=False, default=None)
    _polls: set[LongPoll] = field(init=False, factory=set)
    _last_event: Event | None = field(init=False, default=None)
    _last_body: bytes = field(init=False, default=b"")

    def __attrs_post_init__(self) -> None:
        now = self._clock.seconds()
        if now < _YEAR_2000:
            self.log.warn(
                "the clock reads {now} s since the epoch, before 2000: etcd treats "
                "expirations before 2000 as no TTL, so keys set now never expire",
                now=now,
            )
        self.cluster = Cluster(self.name, to_ns(now))
        self._cluster_id = [hex_id(self.cluster.cluster_id).encode("ascii")]
        self.store.on_watcher_error = self._watcher_failed
        self.metrics = ServerMetrics(self.store)
        self._schedule()

    def resource(self) -> IResource:
        """The resource serving this API (built once)."""
        if self._resource is None:
            self._resource = self.app.resource()
        return self._resource

    def stop(self) -> None:
        """Cancel the expiry timer and end every open watch with an empty body."""
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
        polls, self._polls = self._polls, set()
        for poll in polls:
            poll.finish(b"")

    # -- routing -----------------------------------------------------------------

    @app.route(
        "/<everything:rest>",
        merge_slashes=False,
        strict_slashes=False,
        endpoint=_ENDPOINT,
    )
    def dispatch(self, request: Request, rest: str) -> Any:
        """Answer any request, as etcd's client listener would."""
        try:
            answer = self._dispatch(request)
            self.metrics.requests.answer(request.method, request.code)
            return answer
        except Exception:
            self.log.failure(
                "unexpected error answering {method} {uri}",
                method=request.method,
                uri=request.uri,
            )
            if request.startedWriting:
                return b""
            error = EtcdError(RAFT_INTERNAL, "unexpected error, see the server log")
            answer = self._error(request, error)
            self.metrics.requests.answer(request.method, request.code)
            return answer

    def _dispatch(self, request: Request) -> Any:
        uri = request.uri
        raw_path, _, raw_query = uri.partition(b"?")
        if not raw_path.startswith(b"/"):
            # absolute-form ("http://host/path"): keep the path part.
            after_scheme = raw_path.partition(b"//")[2]
            raw_path = b"/" + after_scheme.partition(b"/")[2]
        try:
            path = unescape(raw_path, False)
        except EscapeError:
            return gohttp.bad_request_line(request)
        gohttp.start(request)
        if len(uri) > MAX_URI_BYTES:
            cause = f"request URI too long ({len(uri)} > {MAX_URI_BYTES} bytes)"
            return self._error(request, EtcdError(INVALID_FORM, cause), 414)
        method = request.method
        if method == b"OPTIONS":
            request.defaultContentType = None
            return body(request, b"")
        cleaned = clean_path(path)
        if cleaned != path:
            return gohttp.redirect(request, cleaned, raw_query)
        if path.startswith("/v2/keys") and (len(path) == 8 or path[8] == "/"):
            return self._keys(request, method, path[8:], raw_query)
        if path == "/v2/members" or path.startswith("/v2/members/"):
            return self._members(request, method, path[12:])
        if path == "/metrics":
            # etcd's promhttp handler answers every method alike.
            return self._metrics(request)
        handler = self._simple.get(path)
        if handler is None:
            return gohttp.not_found(request)
        allowed, render = handler
        if method not in allowed:
            return gohttp.not_allowed(request, b",".join(allowed))
        return render(self, request)

    # -- keys --------------------------------------------------------------------

    def _keys(self, request: Request, method: bytes, key: str, raw_query: bytes) -> Any:
        if method not in _KEYS_METHODS:
            return gohttp.not_allowed(request, b"HEAD,GET,PUT,POST,DELETE")
        request.responseHeaders.setRawHeaders(b"X-Etcd-Cluster-Id", self._cluster_id)
        try:
            req = parse_key_request(
                method.decode("ascii"), self._form(request, method, raw_query)
            )
        except EtcdError as error:
            return self._error(request, error)
        except _BodyTooLarge as error:
            return self._error(request, error.error, 413)
        now = self._clock.seconds()
        store = self.store
        # etcd's v2 auth check reads a key that does not exist on every request.
        store.stats.gets_fail += 1
        if req.wait and method in (b"GET", b"HEAD"):
            return self._watch(request, key, req, now)
        # etcd's name of the request in its metrics.
        name = "QGET" if req.quorum and method == b"GET" else req.method
        requests = self.metrics.requests
        requests.receive(name)
        try:
            if method == b"GET" or method == b"HEAD":
                if req.quorum:
                    self.raft_index += 1
                event = store.get(key, now, recursive=req.recursive, sorted=req.sorted)
            else:
                self.raft_index += 1
                try:
                    event = self._write(method, key, req, now)
                finally:
                    self._schedule()
        except EtcdError as error:
            answer = self._error(request, error)
            requests.fail(name, request.code)
            return answer
        answer = self._event(request, event, req.no_value_on_success)
        requests.succeed(name, self._clock.seconds() - now)
        return answer

    def _form(
        self, request: Request, method: bytes, raw_query: bytes
    ) -> dict[str, list[str]]:
        body: bytes | None = None
        content_type = request.getHeader(b"content-type")
        content = request.content
        size = body_size(request)
        if size > MAX_BODY_BYTES:
            if method in (b"PUT", b"POST") and media_type(content_type) == _FORM_TYPE:
                raise EtcdError(INVALID_FORM, "http: POST too large")
            raise _BodyTooLarge(EtcdError(INVALID_FORM, "http: request body too large"))
        if size and method in (b"PUT", b"POST") and content is not None:
            content.seek(0)
            body = content.read()
        return parse_form(method.decode("ascii"), raw_query, content_type, body)

    def _write(self, method: bytes, key: str, req: KeyRequest, now: float) -> Event:
        store = self.store
        if method == b"POST":
            return store.create(
                key, req.value, now, dir=req.dir, ttl=req.ttl, unique=True
            )
        if method == b"DELETE":
            if req.prev_index or req.prev_value:
                return store.compare_and_delete(
                    key, now, prev_value=req.prev_value, prev_index=req.prev_index
                )
            return store.delete(key, now, dir=req.dir, recursive=req.recursive)
        # PUT, as etcd's applierV2store.Put dispatches it.
        if req.prev_exist is not None:
            if not req.prev_exist:
                return store.create(key, req.value, now, dir=req.dir, ttl=req.ttl)
            if not req.prev_index and not req.prev_value:
                return store.update(
                    key, req.value, now, ttl=req.ttl, refresh=req.refresh
                )
        elif not req.prev_index and not req.prev_value:
            return store.set(
                key, req.value, now, dir=req.dir, ttl=req.ttl, refresh=req.refresh
            )
        return store.compare_and_swap(
            key,
            req.value,
            now,
            prev_value=req.prev_value,
            prev_index=req.prev_index,
            ttl=req.ttl,
            refresh=req.refresh,
        )

    def _event(self, request: Request, event: Event, no_value: bool) -> bytes:
        request.setResponseCode(201 if event.created else 200)
        self._answer_headers(request, event.etcd_index)
        return body(request, event_json(event, no_value))

    def _answer_headers(self, request: Request, etcd_index: int) -> None:
        """The headers of a keys answer: JSON, the store's and raft's indices."""
        headers = request.responseHeaders
        headers.setRawHeaders(b"Content-Type", JSON)
        headers.setRawHeaders(b"X-Etcd-Index", [b"%d" % etcd_index])
        headers.setRawHeaders(b"X-Raft-Index", [b"%d" % self.raft_index])
        headers.setRawHeaders(b"X-Raft-Term", [RAFT_TERM])

    def _error(self, request: Request, error: EtcdError, status: int = 0) -> bytes:
        request.setResponseCode(status or error.status)
        headers = request.responseHeaders
        headers.setRawHeaders(b"Content-Type", JSON)
        headers.setRawHeaders(b"X-Etcd-Index", [b"%d" % error.index])
        return body(request, error_json(error))

    # -- watches -----------------------------------------------------------------

    def _watch(self, request: Request, key: str, req: KeyRequest, now: float) -> Any:
        store = self.store
        poll = LongPoll(request, req.stream, self._rendered, self._forget)
        try:
            found = store.watch(
                key, req.recursive, req.wait_index, now, poll.deliver, stream=req.stream
            )
        except EtcdError as error:
            return self._error(request, error)
        request.setResponseCode(200)
        self._answer_headers(request, store.index)
        if isinstance(found, Event):
            if not req.stream:
                return self._rendered(found)
            # A stream goes on from a history hit with the events after it (etcd
            # 3.4 stops delivering after the hit; that is a bug we do not copy).
            while isinstance(found, Event):
                request.write(self._rendered(found))
                found = store.watch(
                    key, req.recursive, found.index + 1, now, poll.deliver, stream=True
                )
        self._polls.add(poll)
        poll.start(found)
        return NOT_DONE_YET

    def _forget(self, poll: LongPoll) -> None:
        self._polls.discard(poll)

    def _rendered(self, event: Event) -> bytes:
        """The JSON of C{event}, rendered once for all the watchers it reaches."""
        if event is not self._last_event:
            self._last_body = event_json(event)
            self._last_event = event
        return self._last_body

    def _watcher_failed(self, error: BaseException) -> None:
        self.log.failure(
            "a watcher failed to take an event",
            Failure(error, type(error), error.__traceback__),
        )

    # -- TTL expiry ----------------------------------------------------------------

    def _schedule(self) -> None:
        """Arrange a sweep just after the next expiration (or none if none)."""
        when = self.store.next_expiry()
        call = self._sweep
        if when is None:
            if call is not None and call.active():
                call.cancel()
            self._sweep = None
            return
        when += 0.001
        if call is not None and call.active():
            if call.getTime() <= when:
                return
            call.cancel()
        delay = max(0.0, when - self._clock.seconds())
        self._sweep = self._clock.callLater(delay, self._run_sweep)

    def _run_sweep(self) -> None:
        self._sweep = None
        with self.log.failuresHandled("while expiring keys"):
            if self.store.expire(self._clock.seconds()):
                self.raft_index += 1
        self._schedule()

    # -- the other endpoints -------------------------------------------------------

    def _metrics(self, request: Request) -> bytes:
        accept = request.getHeader(b"accept-encoding")
        text, gzipped = self.metrics.exposition(accept)
        headers = request.responseHeaders
        headers.setRawHeaders(b"Content-Type", [CONTENT_TYPE])
        if gzipped:
            headers.setRawHeaders(b"Content-Encoding", [b"gzip"])
        return body(request, text)

    def _version(self, request: Request) -> bytes:
        request.responseHeaders.setRawHeaders(b"Content-Type", JSON)
        return body(request, version_json())

    def _health(self, request: Request) -> bytes:
        # etcd's health check is a quorum read of the store root.
        self.raft_index += 1
        self.store.get("/", self._clock.seconds())
        request.responseHeaders.setRawHeaders(b"Content-Type", TEXT)
        return body(request, b'{"health":"true"}')

    def _machines(self, request: Request) -> bytes:
        request.responseHeaders.setRawHeaders(b"Content-Type", TEXT)
        return body(request, machines_text(self.client_urls))

    def _stats_store(self, request: Request) -> bytes:
        request.responseHeaders.setRawHeaders(b"Content-Type", JSON)
        store = self.store
        return body(request, store_stats_json(store.stats, store.watcher_count))

    def _stats_self(self, request: Request) -> bytes:
        request.responseHeaders.setRawHeaders(b"Content-Type", JSON)
        now_ns = to_ns(self._clock.seconds())
        return body(request, self.cluster.self_stats_json(now_ns))

    def _stats_leader(self, request: Request) -> bytes:
        request.responseHeaders.setRawHeaders(b"Content-Type", JSON)
        return body(request, self.cluster.leader_stats_json())

    _simple: ClassVar[
        dict[str, tuple[tuple[bytes, ...], Callable[[KeysAPI, Request], bytes]]]
    ] = {
        "/version": ((b"GET",), _version),
        "/health": ((b"GET",), _health),
        "/v2/machines": ((b"GET", b"HEAD"), _machines),
        "/v2/stats/store": ((b"GET",), _stats_store),
        "/v2/stats/self": ((b"GET",), _stats_self),
        "/v2/stats/leader": ((b"GET",), _stats_leader),
    }

    def _members(self, request: Request, method: bytes, rest: str) -> bytes:
        if method not in (b"GET", b"POST", b"DELETE", b"PUT"):
            return gohttp.not_allowed(request, b"GET,POST,DELETE,PUT")
        headers = request.responseHeaders
        headers.setRawHeaders(b"X-Etcd-Cluster-Id", self._cluster_id)
        rest = rest.removeprefix("/")
        if method == b"GET":
            if rest == "":
                headers.setRawHeaders(b"Content-Type", JSON)
                return body(request, self.cluster.members_json(self.client_urls))
            if rest == "leader":
                headers.setRawHeaders(b"Content-Type", JSON)
                return body(request, self.cluster.leader_json(self.client_urls))
            return self._message(request, 404, "Not found")
        if method == b"POST":
            return self._membership_change(request, None)
        if rest == "":
            return gohttp.error_text(request, 405, b"Method Not Allowed\n")
        wanted = parse_hex_id(rest)
        if wanted is None:
            return self._message(request, 404, f"No such member: {rest}")
        if method == b"DELETE":
            if wanted != self.cluster.member_id:
                return self._message(request, 404, f"No such member: {rest}")
            return self._message(request, 501, _SINGLE_MEMBER)
        return self._membership_change(request, wanted)

    def _membership_change(self, request: Request, wanted: int | None) -> bytes:
        """POST (add, C{wanted} None) or PUT (update C{wanted}'s peer URLs)."""
        ctype = (request.getHeader(b"content-type") or b"").decode("latin-1")
        if ";" in ctype:
            ctype = ctype[: ctype.index(";")].strip().lower()
        if ctype != "application/json":
            return self._message(
                request, 415, f"Bad Content-Type {ctype}, accept application/json"
            )
        content = request.content
        body = content.read() if content is not None else b""
        try:
            peer_urls = parse_peer_urls(body)
        except MemberRequestError as error:
            return self._message(request, 400, str(error))
        if wanted is None:
            return self._message(request, 501, _SINGLE_MEMBER)
        if wanted != self.cluster.member_id:
            return self._message(request, 404, f"No such member: {wanted:x}")
        # Updating this member's own peer URLs changes only what it reports.
        self.cluster.peer_urls = peer_urls
        request.setResponseCode(204)
        request.defaultContentType = None
        return b""

    # -- plain responses -----------------------------------------------------------

    def _message(self, request: Request, status: int, message: str) -> bytes:
        request.setResponseCode(status)
        request.responseHeaders.setRawHeaders(b"Content-Type", JSON)
        return body(request, message_json(message))


@define
class _BodyTooLarge(Exception):
    error: EtcdError
