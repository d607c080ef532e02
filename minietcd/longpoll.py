# -*- test-case-name: tests.test_watch_api -*-
"""One watch request (C{GET ...?wait=true}) from registration to its answer.

The status line and headers go out at once, as etcd flushes them; the body is the
first matching event plus a newline, or with C{stream=true} every matching event
as it happens. The answer is a Deferred whose cancellation (the client went away)
unregisters the watcher.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.web.server import Request
from zope.interface import implementer

from minietcd.events import Event
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
    done: Deferred[bytes] = field(init=False)

    def __attrs_post_init__(self) -> None:
        self.done = Deferred(self._cancelled)

    def deliver(self, event: Event) -> None:
        """A matching event: answer it, or add it to the stream."""
        body = self.render(event)
        if not self.stream:
            self.finish(body)
            return
        pacer = self.pacer
        if pacer is not None and pacer.paused:
            pacer.backlog += 1
            if pacer.backlog > STREAM_BACKLOG:
                self.finish(b"")
                return
        self.request.write(body)

    def start(self, watcher: Watcher) -> Deferred[bytes]:
        """Wait on C{watcher}; send the headers now; return the answer."""
        self.watcher = watcher
        if self.stream:
            self.pacer = StreamPacer()
            self.request.registerProducer(self.pacer, True)
        self.request.write(b"")
        return self.done

    def finish(self, body: bytes) -> None:
        """End the answer with C{body} (empty when the server ends the poll)."""
        self._drop_watcher()
        if self.pacer is not None:
            self.pacer = None
            self.request.unregisterProducer()
        if not self.done.called:
            self.done.callback(body)

    def _cancelled(self, _: Deferred[bytes]) -> None:
        self.pacer = None
        self._drop_watcher()

    def _drop_watcher(self) -> None:
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.cancel()
            self.forget(self)
