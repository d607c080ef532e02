# -*- test-case-name: tests.registry.test_service -*-
"""
The small interface between the L{Registry} and a key-value store.

The registry needs six things from a store: create a record with a time to live,
replace it, keep it alive, delete it, list a directory with the index the listing is
complete up to, and watch the directory for changes after an index; the leased
election two more, a renewal and a delete guarded by the key's value. The etcd v2 keys
API (L{twistednode.registry.v2.EtcdV2Backend}) does it with TTL keys, C{refresh=true}
and long-poll watches; the v3 API (L{twistednode.registry.v3.EtcdV3Backend}) with a
lease, keepalives, a prefix range and a watch stream. The node behaves the same on
both: only the backend differs.

Keys are full paths (C{/twistednode/<cluster>/members/<id>}); names in listings and
changes are relative to the listed/watched directory. Indices are the store's global
revision numbers (v2: C{modifiedIndex}/C{createdIndex}/C{X-Etcd-Index}; v3:
C{mod_revision}/C{create_revision}/C{header.revision}).

Every method returns a Deferred that fails with one of the L{BackendError}s below
(anything else is a bug) or with C{CancelledError} when the caller cancelled it.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from attrs import frozen
from twisted.internet.defer import Deferred

ChangeKind = Literal["put", "deleted", "expired"]


@frozen
class Entry:
    """
    One child of a listed directory.

    C{value} is None for a child that is itself a directory (never a valid member).
    """

    name: str
    value: str | None
    created_index: int
    modified_index: int


@frozen
class Listing:
    """
    A directory's children and the index the listing is complete up to.

    A watch from C{index + 1} misses nothing that happened after the listing.
    A directory that does not exist lists as no entries.
    """

    entries: tuple[Entry, ...]
    index: int


@frozen
class Change:
    """
    One change below a watched directory.

    C{name} is relative to the directory; C{""} means the directory itself (or one
    of its parents) was deleted or expired, which removes every entry in it.
    C{kind} is "put" for a create/set/update (C{value} is the new value, None for a
    directory), "deleted" for an explicit delete, "expired" when the store removed
    the key because its time to live ran out. C{index} is the change's own index,
    C{created_index} that of the key it touched.
    """

    kind: ChangeKind
    name: str
    value: str | None
    created_index: int
    index: int


class BackendError(Exception):
    """The store did not do what was asked; the registry retries later."""


class BackendUnavailable(BackendError):
    """No store endpoint could be reached (refused, reset, timed out, 5xx)."""


class RecordExists(BackendError):
    """A create found the key already there."""


class RecordMissing(BackendError):
    """A refresh or replace found no key (it expired or was deleted)."""


class HistoryLost(BackendError):
    """
    A watch asked for history the store no longer has (v2 error 401, v3 compaction).

    The registry lists again and diffs.
    """


class WatchEnded(BackendError):
    """The store ended a watch without an event (v2: an empty 200 body)."""


class WatchTimedOut(BackendError):
    """No event arrived within the caller's watch timeout."""


class RegistryBackend(Protocol):
    """What the registry needs from a key-value store."""

    @property
    def endpoint(self) -> str:
        """The URL of the store endpoint in use (for the status API)."""
        ...

    def create(self, key: str, value: str, ttl: int) -> Deferred[int]:
        """
        Create C{key} with C{value}, expiring C{ttl} seconds after the last refresh.

        Fires with the key's created index; fails with L{RecordExists} if it exists.
        """
        ...

    def replace(self, key: str, value: str, ttl: int) -> Deferred[int]:
        """
        Give the existing C{key} a new C{value} and a fresh C{ttl}.

        The created index is kept and returned. Fails with L{RecordMissing}.
        """
        ...

    def refresh(self, key: str, ttl: int) -> Deferred[None]:
        """
        Restart C{key}'s time to live without changing its value or telling watchers.

        Fails with L{RecordMissing} if the key is gone.
        """
        ...

    def delete(self, key: str) -> Deferred[None]:
        """Delete C{key}; a key that is already gone is not an error."""
        ...

    def refresh_if(self, key: str, value: str, ttl: int) -> Deferred[None]:
        """
        Restart C{key}'s time to live, only while it holds C{value} (and, on v3,
        is still under the lease our L{create} of it granted).

        Fails with L{RecordMissing} if the key is gone or holds something else.
        """
        ...

    def delete_if(self, key: str, value: str, created_index: int) -> Deferred[None]:
        """Delete C{key} only while it is the key created at C{created_index} and
        holds C{value}; otherwise leave it alone (not an error). The created index
        keeps a late resign of an old term from deleting the key of a new one."""
        ...

    def list(self, directory: str) -> Deferred[Listing]:
        """List the children of C{directory}, with their values."""
        ...

    def watch(
        self,
        directory: str,
        from_index: int,
        timeout: float,
        only: str | None = None,
    ) -> Deferred[Sequence[Change]]:
        """
        Wait for changes below C{directory} with an index >= C{from_index}.

        With C{only}, just those of the child of that name (and of the directory
        itself, which v2 reports as C{""}): etcd then wakes this watch for that
        key alone, not for every change below the directory.

        Fires with the next change(s) in index order (at least one; a stream may
        deliver a batch). Fails with L{HistoryLost},
        L{WatchEnded}, L{WatchTimedOut} after C{timeout} seconds, or
        L{BackendUnavailable}.
        """
        ...

    def close(self) -> Deferred[None]:
        """Cancel what is in flight and close idle connections."""
        ...
