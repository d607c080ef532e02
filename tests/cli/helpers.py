"""Records and listings for the command-line tests."""

from __future__ import annotations

from twistednode.registry.backend import Entry, Listing
from twistednode.registry.record import MemberRecord

IDS = (
    "00000000-0000-4000-8000-00000000000a",
    "00000000-0000-4000-8000-00000000000b",
    "00000000-0000-4000-8000-00000000000c",
)
NOW = 1_764_165_000.0


def record(i: int, client: bool = False, **changes: object) -> MemberRecord:
    """Member C{i}: 10.0.0.<i+1>:4100<i>, started C{60 * (i + 1)} s before NOW."""
    values: dict[str, object] = {
        "id": IDS[i],
        "address": f"10.0.0.{i + 1}",
        "port": 41000 + i,
        "host_name": f"host{i}",
        "weight": float(10 - i),
        "advertisement": None,
        "started_at": NOW - 60.0 * (i + 1),
        "client": client,
    }
    values.update(changes)
    return MemberRecord(**values)  # type: ignore[arg-type]


def members_listing(*records: tuple[MemberRecord, int], index: int = 50) -> Listing:
    """A listing of the members directory: each record at its created index."""
    return Listing(
        tuple(Entry(r.id, r.to_json(), created, created) for r, created in records),
        index,
    )


def directory_listing(master: str | None, epoch: int = 30, index: int = 50) -> Listing:
    """A listing of the cluster's directory: the members dir, and the master key."""
    entries = [Entry("members", None, 1, 1)]
    if master is not None:
        entries.append(Entry("master", master, epoch, epoch))
    return Listing(tuple(entries), index)
