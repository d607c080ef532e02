# -*- test-case-name: tests.election.test_fencing -*-
"""Fencing: how a resource refuses the writes of a master whose term is over.

A lease bounds how long a master believes it leads, but a write it sent just before
its deadline can still arrive after the next master's first one (a slow network, a
queue). The cure is the term's epoch (L{twistednode.Leadership.epoch}): the master
sends it with every write, and the resource remembers the highest epoch it has
accepted and refuses anything lower (L{EpochFence}). The epoch is the master key's
created index in the registry, so every later term has a larger one.

For data kept in etcd v3 itself, the write can be made conditional on the term in
the same transaction: L{v3_master_guard} is the compare that holds only while the
master key is the one created at that epoch.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from typing import Any

from attrs import define

from twistednode.registry.v3codec import created_is


class StaleEpoch(Exception):
    """A write carried an epoch lower than one the resource has already accepted."""

    def __init__(self, epoch: int, highest: int) -> None:
        super().__init__(f"epoch {epoch} is older than epoch {highest}")
        self.epoch = epoch
        self.highest = highest


@define
class EpochFence:
    """The highest epoch a resource has accepted; lower ones are refused.

    Keep one per resource, next to the data it guards (a row, a file, a table),
    and call L{admit} under the same lock or transaction as the write itself.
    """

    highest: int = 0

    def admit(self, epoch: int) -> None:
        """Accept a write of C{epoch}, or raise L{StaleEpoch}."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"an epoch is a whole number >= 1, not {epoch!r}")
        if epoch < self.highest:
            raise StaleEpoch(epoch, self.highest)
        self.highest = epoch

    def allows(self, epoch: int) -> bool:
        """Whether a write of C{epoch} would be accepted (nothing is recorded)."""
        return epoch >= self.highest


def v3_master_guard(cluster: str, epoch: int) -> dict[str, Any]:
    """The etcd v3 transaction compare (JSON gateway form) that holds only while
    C{cluster}'s master key is the one created at C{epoch}.

    Put it in the C{compare} list of a C{/v3/kv/txn} with the write in C{success}:
    once that term is over (the key deleted, expired or re-created by the next
    master), the transaction fails instead of writing.
    """
    return created_is(f"/twistednode/{cluster}/master", "EQUAL", epoch)
