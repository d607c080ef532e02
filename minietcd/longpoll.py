# -*- test-case-name: tests.minietcd.test_watch_api -*-
"""One watch request (C{GET ...?wait=true}) from registration to its answer.

The status line and headers go out at once, as etcd flushes them; the body is the
first matching event plus a newline, or with C{stream=true} every matching event
as it happens. The poll writes and finishes the request itself from the store's
callback (the route returns C{NOT_DONE_YET}), and a client that goes away
unregisters the watcher.

This departs from the house pattern (a Deferred whose canceller Klein calls when
the client goes away) on purpose: one PUT may answer thousands of polls at once,
and two Deferreds per poll were a tenth of that fan-out's cost. On the server's
own request class (L{BoundedRequest}) the poll hears of a lost client through
C{on_lost}, with no Deferred at all; on any other request (a plain C{Site}, tests)
through C{notifyFinish}.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import define
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from minietcd.events import Event
from minietcd.gohttp import BoundedRequest
from minietcd.hub import Watcher

#: Events a stream may have waiting behind a client that does not read before it
#: is closed; etcd's watchers buffer 100 events and then drop the watcher.
STREAM_BACKLOG = 100


@implementer(IPushProducer)
@define(eq=False)
class StreamPacer:
    """Told by the connection when its send buffer is full, and counts the events
    queued since; a stream that falls too far behind is ended."""

    paused: bool = False
    backlog: int = 0

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.backlog = 0

    def stopProducing(self) -> None:
        self.paused = True


@define(eq=False)
class LongPoll:
    """The answer to one watch request.

    C{render} turns events into body bytes (shared by all the polls an event
    reaches); C{forget} is called once the poll no longer needs its watcher.
    """

    request: Request
    stream: bool
    render: Callable[[Event], bytes]
    forget: Callable[[LongPoll], None]
    watcher: Watcher | None = None
    pacer: StreamPacer | None = None
    #: The answer is finished, or its client is gone: nothing more is written.
    ended: bool = False

    def start(self, watcher: Watcher) -> None:
        """Wait on C{watcher}; send the headers now; hear of the client leaving."""
        self.watcher = watcher
        request = self.request
        if isinstance(request, BoundedRequest):
            request.on_lost = self._lost
        else:
            request.notifyFinish().addErrback(self._finish_failed)
        if self.stream:
            self.pacer = StreamPacer()
            request.registerProducer(self.pacer, True)
        request.write(b"")

    def deliver(self, event: Event) -> None:
        """A matching event: answer it, or add it to the stream."""
        body = self.render(event)
        if not self.stream:
            # The hub drops a watch that is not a stream before it fires it.
            self.watcher = None
            self.forget(self)
            self._answer(body)
            return
        pacer = self.pacer
        if pacer is not None and pacer.paused:
            pacer.backlog += 1
            if pacer.backlog > STREAM_BACKLOG:
                self.finish(b"")
                return
        self.request.write(body)

    def finish(self, body: bytes) -> None:
        """End the answer with C{body} (empty when the server ends the poll)."""
        self._drop_watcher()
        if self.pacer is not None:
            self.pacer = None
            self.request.unregisterProducer()
        self._answer(body)

    def _answer(self, body: bytes) -> None:
        if self.ended:
            return
        self.ended = True
        request = self.request
        if isinstance(request, BoundedRequest):
            request.on_lost = None  # no cycle left for the garbage collector
        request.write(body)
        request.finish()

    def _lost(self) -> None:
        """The client went away before the answer was finished."""
        self.ended = True
        self.pacer = None
        self._drop_watcher()

    def _finish_failed(self, _: Failure) -> None:
        self._lost()

    def _drop_watcher(self) -> None:
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.cancel()
            self.forget(self)
