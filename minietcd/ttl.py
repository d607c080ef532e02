# -*- test-case-name: tests.minietcd.test_store -*-
"""TTL arithmetic as etcd 3.4 does it, and the queue of upcoming expirations.

Times are integer nanoseconds since the epoch, as Go's C{time.Time.UnixNano()}.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Generic, TypeVar

from attrs import define, field

NS = 1_000_000_000
#: etcd treats expiration times before 2000-01-01T00:00:00Z as "no TTL" on create/set.
MIN_EXPIRE_NS = 946_684_800 * NS
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1

T = TypeVar("T")


def _int64(value: int) -> int:
    """Wrap C{value} into a signed 64-bit integer, as Go's arithmetic does."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= (1 << 63) else value


def to_ns(now: float) -> int:
    """Epoch seconds as integer nanoseconds."""
    return round(now * NS)


def expiration_for(ttl: int | None, now_ns: int) -> int | None:
    """The expiration etcd computes for C{ttl} seconds from C{now_ns}, or L{None}.

    Go converts the unsigned TTL to a signed C{Duration} and multiplies by a second,
    both wrapping at 64 bits; huge TTLs therefore land in the past (or wrap to
    "no TTL" on create), exactly as they do in etcd 3.4.
    """
    if ttl is None:
        return None
    expiration = _int64(now_ns + _int64(_int64(ttl) * NS))
    return None if expiration == 0 else expiration


def ttl_at(expiration_ns: int, now_ns: int) -> int:
    """Seconds left, rounded up (Go: truncate, then +1 for a positive remainder)."""
    remaining = max(_INT64_MIN, min(_INT64_MAX, expiration_ns - now_ns))
    return -(-remaining // NS)


@define
class ExpiryQueue(Generic[T]):
    """Items ordered by expiration; entries go stale instead of being removed.

    C{valid(item, expiration)} says whether an entry still stands (the item was
    not removed and its expiration not changed since). Stale entries are dropped
    when they reach the front, and all at once whenever the queue has doubled
    since it was last compacted, so rewriting TTL keys does not grow it.
    """

    _valid: Callable[[T, int], bool]
    _heap: list[tuple[int, int, T]] = field(init=False, factory=list)
    _seq: int = field(init=False, default=0)
    _compacted: int = field(init=False, default=0)

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, expiration: int, item: T) -> None:
        """Queue C{item} to expire at C{expiration}."""
        self._seq += 1
        heapq.heappush(self._heap, (expiration, self._seq, item))
        if len(self._heap) > 64 and len(self._heap) > 2 * self._compacted:
            valid = self._valid
            self._heap = [entry for entry in self._heap if valid(entry[2], entry[0])]
            heapq.heapify(self._heap)
            self._compacted = len(self._heap)

    def due(self, now_ns: int) -> bool:
        """Whether something (perhaps stale) is due at C{now_ns}: a cheap check."""
        return bool(self._heap) and self._heap[0][0] <= now_ns

    def pop_due(self, now_ns: int) -> T | None:
        """The next item that expires at or before C{now_ns}, or L{None}."""
        heap = self._heap
        while heap and heap[0][0] <= now_ns:
            expiration, _, item = heapq.heappop(heap)
            if self._valid(item, expiration):
                return item
        return None

    def next(self) -> int | None:
        """The earliest expiration still standing, or L{None}."""
        heap = self._heap
        while heap:
            expiration, _, item = heap[0]
            if self._valid(item, expiration):
                return expiration
            heapq.heappop(heap)
        return None
