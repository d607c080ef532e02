# -*- test-case-name: tests.etcd.test_v2,tests.etcd.test_v3 -*-
"""
What the etcd v2 and v3 clients share: the members' URLs, one connection pool, the
calls in flight, bounded response bodies, bodies read as JSON lines (L{JsonLines}:
v3 watch streams and v2 C{stream=true} watches), and the errors that are not
API-specific.

L{EtcdHTTP} is the base of both clients: it parses and checks the URLs (C{--etcd}
gives C{"URL[,URL...]"}), builds the pooled treq client (unless one is injected),
remembers which member answered last (fail-over starts there), and cancels every
call in flight on L{EtcdHTTP.close}. Each client keeps its own fail-over loop,
because what counts as "this member cannot serve" differs between the APIs.

The shared outcomes:

 - L{EtcdBadResponse}: a body that is not what etcd sends, or an unexpected status;
 - L{EtcdTimeout}: no complete answer within the request's (or watch's) timeout;
 - L{EtcdUnavailable}: no member answered; C{failures} says what happened at each.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from attrs import define, field
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectError, ConnectionClosed, DNSLookupError
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web._newclient import RequestNotSent, RequestTransmissionFailed
from twisted.web.client import HTTPConnectionPool, ResponseDone, ResponseFailed
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IResponse

from twistednode.etcd.httpclient import http_client

if TYPE_CHECKING:
    from twistednode.etcd.tls import ClientTLS

#: Largest response body (or streamed line) accepted; a members directory is a few KiB.
MAX_BODY = 16 * 1024 * 1024

#: Failures that mean "this member could not be reached", so the next URL is tried.
#: A PUT or POST on a pooled connection that died is not retried by Twisted (only
#: idempotent methods without a body are), so a request that could not be sent
#: moves on too.
LINK_ERRORS: tuple[type[BaseException], ...] = (
    ConnectError,
    DNSLookupError,
    ResponseFailed,
    ConnectionClosed,
    RequestNotSent,
    RequestTransmissionFailed,
)


class EtcdError(Exception):
    """Base of everything the etcd clients fail with (except cancellation)."""


class EtcdBadResponse(EtcdError):
    """A response that is not what etcd sends (not JSON, wrong shape, odd status)."""

    def __init__(self, reason: str, status: int, excerpt: str, url: str) -> None:
        self.reason = reason
        self.status = status
        self.excerpt = excerpt
        self.url = url
        super().__init__(f"bad response from {url} (HTTP {status}): {reason}")


class EtcdTimeout(EtcdError):
    """A request (or a watch) got no complete answer within its timeout."""

    def __init__(self, url: str, seconds: float) -> None:
        self.url = url
        self.seconds = seconds
        super().__init__(f"no answer from {url} within {seconds:g} s")


class EtcdUnavailable(EtcdError):
    """No URL gave an answer; C{failures} holds (url, exception) for each try."""

    def __init__(self, failures: Sequence[tuple[str, BaseException]]) -> None:
        self.failures = tuple(failures)
        tried = "; ".join(f"{url}: {describe(e)}" for url, e in self.failures)
        super().__init__(f"etcd unreachable ({tried})")


def describe(error: BaseException) -> str:
    """A one-line account of a connection failure, unwrapping treq's wrappers."""
    if isinstance(error, ResponseFailed) and error.reasons:
        inner = "; ".join(r.getErrorMessage() for r in error.reasons)
        return f"{type(error).__name__}: {inner}"
    return f"{type(error).__name__}: {error}"


def timed_out(url: str) -> Callable[[object, float], object]:
    """An C{onTimeoutCancel} for C{Deferred.addTimeout}: fail with L{EtcdTimeout}."""

    def raise_timeout(result: object, seconds: float) -> object:
        raise EtcdTimeout(url, seconds)

    return raise_timeout


def member_urls(value: str | Sequence[str]) -> tuple[str, ...]:
    """
    The base URLs of C{"URL[,URL...]"} (the C{--etcd} option) or of a sequence.

    @raise ValueError: no URL, or one that does not start with http:// or https://.
    """
    items = value.split(",") if isinstance(value, str) else value
    urls = tuple(item.strip().rstrip("/") for item in items if item.strip())
    if not urls:
        raise ValueError("at least one etcd URL is needed")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"etcd URL {url!r} must start with http:// or https://")
    return urls


class _Body(Protocol):
    """Collect a whole (bounded) response body; cancelling drops the connection."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.done: Deferred[bytes] = Deferred(lambda _: self._stop())

    def _stop(self) -> None:
        if self.transport is not None:
            cast(IPushProducer, self.transport).stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.size += len(data)
        if self.size > MAX_BODY:
            self.done.errback(ValueError(f"response body over {MAX_BODY} bytes"))
            self._stop()
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(reason)


def read_body(response: IResponse) -> Deferred[bytes]:
    """The whole body of C{response} (at most C{MAX_BODY} bytes, else ValueError).

    Cancelling the Deferred drops the connection.
    """
    body = _Body()
    response.deliverBody(body)
    return body.done


class JsonLines(Protocol):
    """
    A response body read as one JSON value per line, each handed on as it arrives.

    C{on_message(value)} gets every parsed line; C{on_end(reason)} is called once,
    when the body ends (C{ResponseDone}), breaks, holds a bad line, or L{abort} is
    called (then with C{CancelledError}). A body that is not JSON lines, or a line
    over C{MAX_BODY} bytes, ends it with L{EtcdBadResponse}.
    """

    def __init__(
        self,
        on_message: Callable[[object], None],
        on_end: Callable[[Failure], None],
        url: str = "",
    ) -> None:
        self._on_message = on_message
        self._on_end = on_end
        self._url = url
        self._buffer = b""
        self._stopped = False
        self.ended = False

    def dataReceived(self, data: bytes) -> None:
        if self.ended:
            return
        self._buffer += data
        while b"\n" in self._buffer and not self.ended:
            line, _, self._buffer = self._buffer.partition(b"\n")
            self._line(line)
        if len(self._buffer) > MAX_BODY and not self.ended:
            self._fail(EtcdBadResponse("line too long", 200, "", self._url))

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            value = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            excerpt = line[:200].decode("utf-8", "replace")
            self._fail(EtcdBadResponse("line is not JSON", 200, excerpt, self._url))
            return
        self._on_message(value)

    def _fail(self, error: BaseException) -> None:
        self._end(Failure(error))
        self._stop()

    def connectionMade(self) -> None:
        if self.ended:
            self._stop()  # aborted before the body started

    def _stop(self) -> None:
        if self.transport is not None and not self._stopped:
            self._stopped = True
            cast(IPushProducer, self.transport).stopProducing()

    def abort(self) -> None:
        """Drop the connection; C{on_end} gets C{CancelledError} if still open."""
        self._end(Failure(CancelledError("stream closed by us")))
        self._stop()

    def _end(self, reason: Failure) -> None:
        if not self.ended:
            self.ended = True
            self._on_end(reason)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._buffer.strip() and not self.ended:
            self._line(self._buffer)
        self._buffer = b""
        self._end(reason)


@define(eq=False)
class EtcdHTTP:
    """
    The connection to a list of etcd members that both clients build on.

    @param reactor: for the connections and the timeouts.
    @param urls: base URLs of etcd members (C{http://127.0.0.1:2379}), tried in
        order starting from the last one that answered (L{member_urls}).
    @param http: an object with treq's C{request(method, url, ...)} (a
        C{treq.testing.StubTreq} in tests); by default an C{HTTPClient} over an
        C{Agent} with a persistent pool, C{connect_timeout}, and C{tls} for
        https:// URLs.
    """

    _reactor: IReactorTime
    urls: tuple[str, ...] = field(converter=member_urls)
    _connect_timeout: float = 5.0
    request_timeout: float = 5.0
    _http: Any = None
    _tls: ClientTLS | None = None
    _pool: HTTPConnectionPool | None = field(default=None, init=False)
    _current: int = field(default=0, init=False)
    _in_flight: set[Deferred[Any]] = field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        if self._http is None:
            self._http, self._pool = http_client(
                self._reactor, self._tls, self._connect_timeout
            )

    @property
    def clock(self) -> IReactorTime:
        """The reactor the client times its calls with."""
        return self._reactor

    @property
    def url(self) -> str:
        """The base URL in use: the last one that answered."""
        return self.urls[self._current]

    def close(self) -> Deferred[None]:
        """Cancel every call in flight and close the idle pooled connections."""
        for d in list(self._in_flight):
            d.cancel()
        if self._pool is not None:
            return cast(Deferred[None], self._pool.closeCachedConnections())
        return succeed(None)

    def _track(self, d: Deferred[Any]) -> Deferred[Any]:
        """Keep C{d} for L{close} until it has fired."""
        self._in_flight.add(d)

        def forget(result: object) -> object:
            self._in_flight.discard(d)
            return result

        return d.addBoth(forget)
