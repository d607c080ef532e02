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
 - C{watch} is one long-poll from C{from_index}; etcd's history scan matches by raw
   prefix, so an event of a sibling directory is skipped and the watch goes on.
   Error 401 (the index left the history) is L{HistoryLost}.
 - A watch follows the client: when another call has moved to another member (the
   one in use stopped answering), a long-poll still waiting on the old member ends
   with L{WatchEnded}, so the registry lists and watches again on the new one at
   once. A member cut off without a reset (a partition, a hung host) would
   otherwise hold it until the watch timeout.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, TypeVar, cast

from attrs import define, field
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistednode.etcd.base import EtcdError, EtcdTimeout, EtcdUnavailable
from twistednode.etcd.v2 import (
    EVENT_INDEX_CLEARED,
    KEY_NOT_FOUND,
    NODE_EXISTS,
    TEST_FAILED,
    EtcdResult,
    EtcdV2Client,
    EtcdV2Error,
    EtcdWatchEnded,
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
    #: Each waiting long-poll and the member it went to.
    _watches: dict[Deferred[Any], str] = field(init=False, factory=dict)
    #: The created and modified index of the keys our create and refresh_if
    #: last wrote (for the compare-and-delete of delete_if).
    _written: dict[str, tuple[int, int]] = field(init=False, factory=dict)
    #: Long-polls ended because the client moved on, and why.
    _moved: dict[Deferred[Any], str] = field(init=False, factory=dict)

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
        """End the long-polls waiting on a member the client has moved away from."""
        url = self.client.url
        for waiting, watched in list(self._watches.items()):
            if watched != url:
                self.log.info(
                    "etcd calls moved from {old} to {new}; watching there too",
                    old=watched,
                    new=url,
                )
                del self._watches[waiting]
                self._moved[waiting] = f"etcd calls moved from {watched} to {url}"
                waiting.cancel()

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
        self, directory: str, from_index: int, timeout: float
    ) -> Deferred[Sequence[Change]]:
        def event(result: EtcdResult) -> Sequence[Change] | Deferred[Sequence[Change]]:
            node = result.node
            name = _relative(directory, node.key)
            kind = _kind(result.action)
            if name is None or kind is None:
                # etcd's history scan matches by raw prefix (/members2 for
                # /members); skip what is not ours and keep watching.
                return self.watch(directory, node.modified_index + 1, timeout)
            value = node.value if kind == "put" else None
            return [Change(kind, name, value, node.created_index, node.modified_index)]

        d = self.client.watch(
            directory, wait_index=from_index, recursive=True, timeout=timeout
        )
        self._watches[d] = self.client.url

        def answered(result: EtcdResult) -> EtcdResult:
            self._watches.pop(d, None)
            self._moved.pop(d, None)
            return result

        def failed(failure: Failure) -> Failure:
            self._watches.pop(d, None)
            moved = self._moved.pop(d, None)
            if moved is not None and failure.check(CancelledError):
                return Failure(WatchEnded(moved))
            return failure

        d.addCallbacks(answered, failed)
        changes = cast(Deferred[Sequence[Change]], d.addCallback(event))
        return changes.addErrback(_to_backend_error)

    def close(self) -> Deferred[None]:
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
