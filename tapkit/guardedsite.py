# -*- test-case-name: tests.tapkit.test_guardedsite -*-
"""A twisted.web Site that a slow or crowding client cannot hold open.

Twisted's C{Site} accepts every connection and closes one only after its idle
timeout (12 hours by default), which each byte resets: a client that opens
thousands of connections and sends a header line every few seconds (slowloris)
holds them all. L{GuardedSite} adds two bounds and a quieter access log:

  - B{headers deadline}: a request's headers must be complete within
    C{header_timeout} seconds of the connection opening, or of the previous
    response's end on a kept-alive connection; otherwise the connection is closed.
    A request being answered (an event stream, a slow call) is never cut: the
    deadline stops when its headers are in.
  - B{connection limit}: above C{max_connections} open connections a new one is
    closed at once (counted in L{GuardedSite.refused}, and said in one warning per
    C{WARN_EVERY} seconds).
  - B{access log}: one debug event per request (C{twisted.logger}), instead of
    Twisted's info-level line in the process's log; C{access_log=False} for none.

It speaks HTTP/1.x only (no HTTP/2 negotiation), which is all the node's servers
need.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http import Request as HTTPRequest
from twisted.web.server import Request, Site

#: Seconds between two warnings about refused connections.
WARN_EVERY = 60.0


class _GuardedChannel(HTTPChannel):
    """An HTTP/1.x channel with a deadline on each request's headers."""

    site: GuardedSite
    _deadline: IDelayedCall | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm()

    def allHeadersReceived(self) -> None:
        self._disarm()
        super().allHeadersReceived()

    def requestDone(self, request: Request) -> None:
        super().requestDone(request)
        if self.persistent and self.transport is not None:
            self._arm()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        self.site.closed(self)
        super().connectionLost(reason)

    def _arm(self) -> None:
        if self._deadline is None:
            reactor: Any = self.site.reactor
            self._deadline = reactor.callLater(self.site.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._handlingRequest or self.transport is None:
            return
        self.site.timed_out += 1
        transport: Any = self.transport
        transport.abortConnection()


class GuardedSite(Site):
    """A Site with a headers deadline, a connection limit and a debug access log.

    @ivar max_connections: how many connections may be open at once.
    @ivar header_timeout: seconds a request's headers may take to arrive.
    @ivar access_log: whether each request is logged (at debug level).
    @ivar refused: connections closed at once for being over the limit.
    @ivar timed_out: connections closed for headers that did not arrive in time.
    """

    log_ = Logger()
    noisy = False

    def __init__(
        self,
        resource: Any,
        *,
        max_connections: int = 512,
        header_timeout: float = 10.0,
        access_log: bool = True,
        reactor: Any = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if not header_timeout > 0:
            raise ValueError("header_timeout must be positive")
        super().__init__(resource, reactor=reactor)
        self.protocol = _GuardedChannel  # type: ignore[assignment]
        self.displayTracebacks = False
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.access_log = access_log
        self.refused = 0
        self.timed_out = 0
        self._open: set[_GuardedChannel] = set()
        self._warned_at: float | None = None

    @property
    def open_connections(self) -> int:
        """How many connections are open now."""
        return len(self._open)

    def buildProtocol(self, addr: IAddress | None) -> Any:
        if len(self._open) >= self.max_connections:
            self.refused += 1
            now = self.reactor.seconds()
            if self._warned_at is None or now - self._warned_at >= WARN_EVERY:
                self._warned_at = now
                self.log_.warn(
                    "{limit} connections open: refusing new ones ({refused} so far)",
                    limit=self.max_connections,
                    refused=self.refused,
                )
            return None
        channel = super().buildProtocol(addr)
        assert isinstance(channel, _GuardedChannel)
        self._open.add(channel)
        return channel

    def closed(self, channel: _GuardedChannel) -> None:
        """A channel's connection ended."""
        self._open.discard(channel)

    def _updateLogDateTime(self) -> None:
        # Twisted's HTTPFactory re-formats the date of its access log line every
        # second, on a timer of its own: a wake-up per second per server of an
        # otherwise idle node. Our access log (below) is twisted.logger's, with
        # its own time, so the date is set once and the timer never armed.
        self._logDateTime = "-"

    def log(self, request: HTTPRequest) -> None:
        """The access log: one debug event per request."""
        if self.access_log:
            self.log_.debug(
                "{method} {uri} {code} {length}",
                method=request.method.decode("ascii", "replace"),
                uri=request.uri.decode("ascii", "replace"),
                code=request.code,
                length=request.sentLength,
                peer=str(request.getClientAddress()),
            )
