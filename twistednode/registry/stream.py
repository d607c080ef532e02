# -*- test-case-name: tests.registry.test_v2,tests.registry.test_v3 -*-
"""
One open watch stream on a directory, and the changes it has buffered: what the v2
(C{stream=true}) and v3 (C{/v3/watch}) backends keep across C{watch} calls, so that
a caller asking for "the changes from index I" is served from the stream already
open rather than by a new request per change.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from attrs import define, field
from twisted.internet.defer import Deferred

from twistednode.etcd.base import JsonLines
from twistednode.registry.backend import BackendError, Change


def watch_path(directory: str, only: str | None) -> str:
    """The key a watch of C{directory} (or of its child C{only}) is on."""
    if only is None:
        return directory
    return f"{directory.rstrip('/')}/{only}"


@define(eq=False)
class WatchStream:
    """
    The changes one stream on C{directory}, opened from index C{start}, has brought.

    C{delivered} is the last index handed to a caller; C{seen} the last index of any
    event the stream carried (a skipped one too), from where a stream that ended
    C{resumable} (it delivered what it had, then stopped) goes on.
    """

    directory: str
    start: int
    #: The one child watched (L{twistednode.registry.backend.RegistryBackend.watch}).
    only: str | None = None
    url: str = ""
    #: (v2) The X-Etcd-Index the stream was answered with: an event at or below it
    #: came from etcd's history. None until answered, or if etcd did not say.
    answered_index: int | None = field(default=None, init=False)
    delivered: int = field(init=False)
    seen: int = field(init=False)
    buffer: list[Change] = field(factory=list, init=False)
    ended: BackendError | None = field(default=None, init=False)
    resumable: bool = field(default=False, init=False)
    lines: JsonLines | None = field(default=None, init=False)
    waiter: Deferred[None] | None = field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.delivered = self.start - 1
        self.seen = self.start - 1

    @property
    def path(self) -> str:
        """The key watched: the directory, or its child C{only}."""
        return watch_path(self.directory, self.only)

    def can_serve(self, from_index: int, url: str) -> bool:
        """Whether every change at or after C{from_index} is still to come here."""
        if from_index <= self.delivered:
            return False
        return self.ended is not None or self.url == url

    def take(self, from_index: int) -> list[Change]:
        """The buffered changes at or after C{from_index}; the rest are dropped."""
        ready = [c for c in self.buffer if c.index >= from_index]
        self.buffer = []
        indexes = [self.delivered, from_index - 1, *(c.index for c in ready)]
        self.delivered = max(indexes)
        return ready

    def add(self, found: list[Change], index: int) -> None:
        """Buffer C{found}, carried by the stream up to C{index}; wake the caller."""
        self.seen = max(self.seen, index)
        if found:
            self.buffer.extend(found)
            self.wake()

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.called:
            waiter.callback(None)

    def end(self, error: BackendError, resumable: bool = False) -> None:
        """Stop the stream (once: the first reason stays); wake the caller."""
        if self.ended is None:
            self.ended = error
            self.resumable = resumable
        if self.lines is not None:
            self.lines.abort()
        self.wake()
