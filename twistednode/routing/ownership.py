# -*- test-case-name: tests.routing.test_ownership -*-
"""Who owns a key: weighted rendezvous (highest-random-weight) hashing over a view.

Every node computes ownership from the same member set (in a registry cluster the
registry's view, whose etcd index is the view's L{OwnershipView.version}), so nodes
that have seen the same version name the same owner, with no messages exchanged.

The hash, stable across processes, versions and machines (never Python's C{hash}):

    - a key is its UTF-8 bytes (C{str}) or itself (C{bytes});
    - for each candidate, C{h = BLAKE2b(key || 0x00 || id as UTF-8, 8-byte digest)}
      read big-endian as an unsigned 64-bit integer;
    - C{u = (h + 0.5) / 2**64}, uniform in (0, 1);
    - the score is C{capacity / -ln(u)}; the highest score owns the key, the next
      ones are its replicas (L{OwnershipView.owners}); ties go to the lower id.

With equal capacities the order is the order of C{h}; with unequal ones a node owns
a share of the keys proportional to its capacity (Schindelhauer and Schomaker's
weighted distributed hash tables, the "logarithmic method"). A member joining takes
about 1/(n+1) of the keys, each from its previous owner, and a member leaving hands
on only its own: no other key moves.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable

from attrs import field, frozen

Key = str | bytes

_SPAN = float(2**64)


def key_bytes(key: Key) -> bytes:
    """The bytes a key hashes as; raises TypeError for anything but str and bytes."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    raise TypeError(f"a key is str or bytes, not {type(key).__name__}")


def score(key: bytes, member_id: str, capacity: float = 1.0) -> float:
    """The rendezvous score of C{member_id} for C{key} (higher wins)."""
    digest = hashlib.blake2b(
        key + b"\x00" + member_id.encode("utf-8"), digest_size=8
    ).digest()
    u = (int.from_bytes(digest, "big") + 0.5) / _SPAN
    return capacity / -math.log(u)


def _check_capacity(instance: object, attribute: object, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"a capacity must be finite and above 0, not {value!r}")


@frozen
class Candidate:
    """A member that may own keys, and its relative capacity (1 = an equal share)."""

    id: str
    capacity: float = field(default=1.0, validator=_check_capacity)


def _sorted(candidates: Iterable[Candidate]) -> tuple[Candidate, ...]:
    return tuple(sorted(candidates, key=lambda c: c.id))


@frozen
class OwnershipView:
    """The member set ownership is computed from, and the version that names it.

    @ivar version: the registry view's etcd index, or a local counter on static peers.
    @ivar candidates: the members that own keys, sorted by id (clients are left out).
    """

    version: int
    candidates: tuple[Candidate, ...] = field(converter=_sorted)

    @classmethod
    def of(cls, version: int, members: Iterable[str | Candidate]) -> OwnershipView:
        """A view of C{members}: ids (capacity 1) or L{Candidate}s."""
        return cls(
            version,
            tuple(m if isinstance(m, Candidate) else Candidate(m) for m in members),
        )

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.candidates)

    def owner(self, key: Key) -> str | None:
        """The id that owns C{key}, or None when no member may own keys."""
        data = key_bytes(key)
        best: tuple[float, str] | None = None
        for candidate in self.candidates:
            ranked = (score(data, candidate.id, candidate.capacity), candidate.id)
            if best is None or ranked[0] > best[0]:
                best = ranked  # equal scores: the lower id, met first, stays
        return None if best is None else best[1]

    def owners(self, key: Key, n: int) -> tuple[str, ...]:
        """The C{n} ids that hold C{key}, owner first (fewer if the view is smaller)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        data = key_bytes(key)
        ranked = heapq.nsmallest(
            n,
            self.candidates,
            key=lambda c: (-score(data, c.id, c.capacity), c.id),
        )
        return tuple(c.id for c in ranked)

    def owns(self, member_id: str, key: Key) -> bool:
        """Whether C{member_id} owns C{key} in this view."""
        return self.owner(key) == member_id


@frozen
class OwnershipChanged:
    """The member set that owns keys changed (the node's C{ownership} event).

    @ivar version: the new view's version.
    @ivar owners: the ids that own keys now, sorted.
    @ivar joined: ids that own keys now and did not before.
    @ivar left: ids that owned keys before and do not now.
    """

    version: int
    owners: tuple[str, ...]
    joined: tuple[str, ...]
    left: tuple[str, ...]

    @classmethod
    def between(cls, old: OwnershipView, new: OwnershipView) -> OwnershipChanged:
        before, after = set(old.ids), set(new.ids)
        return cls(
            new.version,
            new.ids,
            tuple(sorted(after - before)),
            tuple(sorted(before - after)),
        )
