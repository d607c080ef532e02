# -*- test-case-name: tests.etcd.test_v2,tests.registry.test_service -*-
"""
The registry backend over the etcd v2 keys API
(L{twistednode.registry.backend.RegistryBackend}).

 - The record is a key with a TTL: C{create} is a PUT with C{prevExist=false},
   C{replace} one with C{prevExist=true} (the createdIndex is kept), C{refresh} a
   C{refresh=true} PUT that restarts the TTL without a watch event. An expired key
   is L{RecordMissing} (etcd error 100), so the registry writes it again.
 - C{list} is a recursive GET; its index is the C{X-Etcd-Index} header (or the error's
   index when the directory does not exist yet).
 - C{watch} keeps one C{stream=true} watch per directory open across calls: every
   event arrives as a line of one response, so a change costs the node and etcd no
   new request (a long-poll per change cost each watcher one, and etcd one per
   watcher). Events are buffered; each call returns those at or after its
   C{from_index}, and one that waits past its timeout closes the stream
   (L{WatchTimedOut}), so a silent connection is never trusted longer than a
   long-poll was. etcd 3.4 sends nothing after an event it found in its history
   (at or below the answer's C{X-Etcd-Index}), and a server that does not stream
   ends the response after one event: either way the call opens the next stream
   from the next index. etcd's history scan matches by raw prefix, so an event of
   a sibling directory is skipped. Error 401 (the index left the history) is
   L{HistoryLost}; a stream that ends without an event, or breaks, L{WatchEnded}.
 - A watch follows the client: when another call has moved to another member (the
   one in use stopped answering), a stream still open on the old member ends with
   L{WatchEnded}, so the registry lists and watches again on the new one at once.
   A member cut off without a reset (a partition, a hung host) would otherwise
   hold it until the watch timeout.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import ClassVar, Literal, TypeVar

from attrs import define, field
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from twistednode.etcd.base import EtcdError, EtcdTimeout, EtcdUnavailable, JsonLines
from twistednode.etcd.v2 import (
    EVENT_INDEX_CLEARED,
    KEY_NOT_FOUND,
    NODE_EXISTS,
    TEST_FAILED,
    EtcdResult,
    EtcdV2Client,
    EtcdV2Error,
    EtcdWatchEnded,
    streamed_event,
)
from twistednode.registry.backend import (
    BackendError,
    BackendUnavailable,
    Change,
    ChangeKind,
    Entry,
    HistoryLost,
    Listing,
    RecordExists,
    RecordMissing,
    WatchEnded,
    WatchTimedOut,
)
from twistednode.registry.stream import WatchStream, watch_path

_T = TypeVar("_T")

_PUT_ACTIONS = frozenset({"set", "create", "update", "compareAndSwap"})
_DELETE_ACTIONS = frozenset({"delete", "compareAndDelete"})


def _relative(directory: str, key: str) -> str | None:
    """C{key}'s name under C{directory}; "" for the directory or a parent; None if
    unrelated."""
    if key == directory or key == "/" or directory.startswith(key.rstrip("/") + "/"):
        return ""
    if key.startswith(directory + "/"):
        return key[len(directory) + 1 :]
    return None


def _kind(action: str) -> ChangeKind | None:
    if action in _PUT_ACTIONS:
        return "put"
    if action in _DELETE_ACTIONS:
        return "deleted"
    if action == "expire":
        return "expired"
    return None


def _to_backend_error(failure: Failure) -> Failure:
    """Map an L{EtcdError} onto the backend's exceptions; pass the rest through."""
    error = failure.value
    if isinstance(error, EtcdUnavailable):
        return Failure(BackendUnavailable(str(error)))
    if isinstance(error, EtcdTimeout):
        return Failure(WatchTimedOut(str(error)))
    if isinstance(error, EtcdWatchEnded):
        return Failure(WatchEnded(str(error)))
    if isinstance(error, EtcdV2Error) and error.error_code == EVENT_INDEX_CLEARED:
        return Failure(HistoryLost(str(error)))
    if isinstance(error, EtcdError):
        return Failure(BackendError(str(error)))
    return failure


@define(eq=False)
class EtcdV2Backend:
    """L{twistednode.registry.backend.RegistryBackend} over the etcd v2 keys API."""

    api: ClassVar[Literal["v2"]] = "v2"

    client: EtcdV2Client
    #: The open watch stream of each key watched (a directory, or one child).
    _streams: dict[str, WatchStream] = field(init=False, factory=dict)
    #: The created and modified index of the keys our create and refresh_if
    #: last wrote (for the compare-and-delete of delete_if).
    _written: dict[str, tuple[int, int]] = field(init=False, factory=dict)

    log: ClassVar[Logger] = Logger()

    @property
    def endpoint(self) -> str:
        return self.client.url

    def _call(self, d: Deferred[_T]) -> Deferred[_T]:
        """After a call other than a watch, let the watches follow the client."""

        def follow(result: object) -> object:
            self._follow_client()
            return result

        return d.addBoth(follow)

    def _follow_client(self) -> None:
        """End the watch streams open on a member the client has moved away from."""
        url = self.client.url
        for stream in list(self._streams.values()):
            if stream.url and stream.url != url and stream.ended is None:
                self.log.info(
                    "etcd calls moved from {old} to {new}; watching there too",
                    old=stream.url,
                    new=url,
                )
                stream.end(WatchEnded(f"etcd calls moved from {stream.url} to {url}"))

    def create(self, key: str, value: str, ttl: int) -> Deferred[int]:
        def exists(failure: Failure) -> Failure:
            if _code(failure) == NODE_EXISTS:
                return Failure(RecordExists(str(failure.value)))
            return failure

        def created(result: EtcdResult) -> int:
            self._remember(key, result)
            return result.node.created_index

        d = self._call(self.client.create(key, value, ttl=ttl))
        return d.addCallbacks(created, exists).addErrback(_to_backend_error)

    def replace(self, key: str, value: str, ttl: int) -> Deferred[int]:
        d = self._call(self.client.update(key, value, ttl=ttl))
        return d.addCallbacks(_created_index, _missing).addErrback(_to_backend_error)

    def refresh(self, key: str, ttl: int) -> Deferred[None]:
        d = self._call(self.client.refresh(key, ttl))
        return d.addCallbacks(lambda _: None, _missing).addErrback(_to_backend_error)

    def delete(self, key: str) -> Deferred[None]:
        def gone(failure: Failure) -> Failure | None:
            return None if _code(failure) == KEY_NOT_FOUND else failure

        d = self._call(self.client.delete(key))
        return d.addCallbacks(lambda _: None, gone).addErrback(_to_backend_error)

    def refresh_if(self, key: str, value: str, ttl: int) -> Deferred[None]:
        def missing(failure: Failure) -> Failure:
            if _code(failure) == TEST_FAILED:
                return Failure(RecordMissing(f"{key} holds another value"))
            return _missing(failure)

        def refreshed(result: EtcdResult) -> None:
            self._remember(key, result)

        d = self._call(self.client.refresh(key, ttl, prev_value=value))
        return d.addCallbacks(refreshed, missing).addErrback(_to_backend_error)

    def delete_if(self, key: str, value: str, created_index: int) -> Deferred[None]:
        # v2 compares only value and modifiedIndex: delete the key we last wrote,
        # if it is the one created at created_index, and nothing else.
        written = self._written.pop(key, None)
        if written is None or written[0] != created_index:
            return succeed(None)

        def gone(failure: Failure) -> Failure | None:
            return None if _code(failure) in (KEY_NOT_FOUND, TEST_FAILED) else failure

        d = self._call(self.client.delete(key, prev_value=value, prev_index=written[1]))
        return d.addCallbacks(lambda _: None, gone).addErrback(_to_backend_error)

    def _remember(self, key: str, result: EtcdResult) -> None:
        self._written[key] = (result.node.created_index, result.node.modified_index)

    def list(self, directory: str) -> Deferred[Listing]:
        def listed(result: EtcdResult) -> Listing:
            if result.etcd_index is None:
                raise BackendError(f"listing of {directory} has no X-Etcd-Index")
            entries = []
            for child in result.node.nodes:
                name = _relative(directory, child.key)
                if name:
                    entries.append(
                        Entry(
                            name, child.value, child.created_index, child.modified_index
                        )
                    )
            return Listing(tuple(entries), result.etcd_index)

        def absent(failure: Failure) -> Listing | Failure:
            error = failure.value
            if isinstance(error, EtcdV2Error) and error.error_code == KEY_NOT_FOUND:
                index = (
                    error.etcd_index if error.etcd_index is not None else error.index
                )
                return Listing((), index)
            return failure

        d = self._call(self.client.get(directory, recursive=True))
        return d.addCallbacks(listed, absent).addErrback(_to_backend_error)

    def watch(
        self,
        directory: str,
        from_index: int,
        timeout: float,
        only: str | None = None,
    ) -> Deferred[Sequence[Change]]:
        d = Deferred.fromCoroutine(self._watch(directory, from_index, timeout, only))
        return d.addErrback(_to_backend_error)

    async def _watch(
        self, directory: str, from_index: int, timeout: float, only: str | None
    ) -> Sequence[Change]:
        clock = self.client.clock
        deadline = clock.seconds() + timeout
        path = watch_path(directory, only)
        #: Where a resumed stream starts, and what its predecessor had handed out.
        resume: tuple[int, int] | None = None
        while True:
            stream = self._streams.get(path)
            if stream is not None and not stream.can_serve(from_index, self.client.url):
                self._drop(stream)
                stream = None
            if stream is None:
                start = from_index if resume is None else resume[0]
                stream = WatchStream(directory, start, only)
                if resume is not None:
                    # Nothing between the caller's index and the start concerned
                    # it: the caller may ask from its own index again.
                    stream.delivered = resume[1]
                self._streams[path] = stream
                await self._open(stream, deadline - clock.seconds())
            ready = stream.take(from_index)
            if ready:
                return ready
            if stream.ended is not None:
                self._drop(stream)
                if not stream.resumable:
                    raise stream.ended
                start = max(from_index, stream.seen + 1, resume[0] if resume else 0)
                resume = (start, stream.delivered)
                continue
            remaining = deadline - clock.seconds()
            if remaining <= 0:
                self._time_out(stream)
                raise WatchTimedOut(f"no change below {directory} in {timeout:g} s")
            waiter: Deferred[None] = Deferred()
            stream.waiter = waiter
            waiter.addTimeout(remaining, clock)
            try:
                await waiter
            except TimeoutError:
                self._time_out(stream)
                raise WatchTimedOut(
                    f"no change below {directory} in {timeout:g} s"
                ) from None
            except BaseException:
                self._drop(stream)
                raise

    async def _open(self, stream: WatchStream, timeout: float) -> None:
        lines = JsonLines(partial(self._message, stream), partial(self._ended, stream))
        stream.lines = lines
        try:
            opened = await self.client.stream_watch(
                stream.path,
                wait_index=stream.start,
                recursive=stream.only is None,
                timeout=max(timeout, 0.0),
                lines=lines,
            )
        except BaseException:
            self._drop(stream)
            raise
        stream.url = opened.url
        stream.answered_index = opened.etcd_index

    def _message(self, stream: WatchStream, line: object) -> None:
        try:
            result = streamed_event(line, stream.url)
        except EtcdError as e:
            stream.end(WatchEnded(f"bad watch event: {e}"))
            return
        node = result.node
        index = node.modified_index
        name = _relative(stream.directory, node.key)
        kind = _kind(result.action)
        found = []
        # etcd's history scan matches by raw prefix (/members2 for /members): what
        # is not ours is skipped, and the stream goes on past it.
        if name is not None and kind is not None:
            value = node.value if kind == "put" else None
            found.append(Change(kind, name, value, node.created_index, index))
        stream.add(found, index)
        history_end = stream.answered_index
        if history_end is None or index <= history_end:
            # Found in etcd's history: etcd 3.4 sends nothing after it on this
            # stream, so the next call opens another from the next index.
            stream.end(WatchEnded("watch event from etcd's history"), resumable=True)

    def _ended(self, stream: WatchStream, reason: Failure) -> None:
        if reason.check(CancelledError):
            stream.end(WatchEnded("watch closed"))
        elif not reason.check(ResponseDone, PotentialDataLoss):
            why = reason.getErrorMessage()
            stream.end(WatchEnded(f"watch stream from {stream.url} broke: {why}"))
        elif stream.seen >= stream.start:
            # Ended after events (a server that does not stream, or etcd dropping
            # a watcher that fell behind): go on from the next index.
            stream.end(WatchEnded(f"watch stream from {stream.url} ended"), True)
        else:
            what = f"watch on {stream.url} ended without an event"
            stream.end(WatchEnded(what))

    def _time_out(self, stream: WatchStream) -> None:
        """Close a stream that waited past its timeout, as a long-poll's was; the
        next call goes on from the index etcd answered it with, since nothing
        up to there concerned it. A caller asking again from an older index (a
        quiet key's watch, whose index no other change moves on) then does not
        fall out of etcd's 1000-event history while the key stays quiet."""
        history_end = stream.answered_index
        if history_end is not None:
            stream.seen = max(stream.seen, history_end)
        stream.end(WatchEnded("watch timed out"), resumable=True)

    def _drop(self, stream: WatchStream) -> None:
        if self._streams.get(stream.path) is stream:
            del self._streams[stream.path]
        stream.end(WatchEnded("watch closed"))

    def close(self) -> Deferred[None]:
        for stream in list(self._streams.values()):
            self._drop(stream)
        return self.client.close()


def _code(failure: Failure) -> int | None:
    error = failure.value
    return error.error_code if isinstance(error, EtcdV2Error) else None


def _created_index(result: EtcdResult) -> int:
    return result.node.created_index


def _missing(failure: Failure) -> Failure:
    if _code(failure) == KEY_NOT_FOUND:
        return Failure(RecordMissing(str(failure.value)))
    return failure
