# -*- test-case-name: tests.cli.test_snapshot -*-
"""A cluster as the registry holds it at one index: its members and its master.

Pure: listings go in (L{twistednode.registry.backend.Listing}, one of the members
directory and one of the cluster's directory, which holds the master key), a
L{ClusterSnapshot} comes out. The records are read as the nodes read them
(L{twistednode.registry.view.MemberView}); values that are not a valid record are
kept aside with the reason, so an operator sees them rather than silence.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from attrs import frozen

from twistednode.election.campaign import holder_in, master_key
from twistednode.election.lease import Holder
from twistednode.registry.backend import Listing
from twistednode.registry.record import MemberRecord
from twistednode.registry.view import MemberView

#: No member has this id, so the view reports every record as a peer.
NOBODY = ""


def cluster_directory(cluster: str) -> str:
    """The cluster's directory: the members directory and the master key."""
    return f"/twistednode/{cluster}"


def members_directory(cluster: str) -> str:
    """Where the members' records are."""
    return f"{cluster_directory(cluster)}/members"


@frozen
class Listed:
    """One member's record and the created index of its key (its place in line)."""

    record: MemberRecord
    created_index: int

    @property
    def eligible(self) -> bool:
        """Whether it may become master (not a client node)."""
        return not self.record.client


@frozen
class ClusterSnapshot:
    """The cluster at one registry index.

    @ivar members: the valid records, in the order they joined.
    @ivar master: the master key's holder (its node id and epoch), or None.
    @ivar rejected: C{(key name, why)} for each value that is not a valid record.
    @ivar index: the registry index the snapshot is complete up to.
    """

    cluster: str
    members: tuple[Listed, ...]
    master: Holder | None
    rejected: tuple[tuple[str, str], ...]
    index: int

    @property
    def master_key(self) -> str:
        """The key the master holds."""
        return master_key(self.cluster)

    def member(self, member_id: str) -> Listed | None:
        """One member by id, or None."""
        for listed in self.members:
            if listed.record.id == member_id:
                return listed
        return None


def snapshot_of(
    cluster: str, members: Listing, directory: Listing
) -> tuple[ClusterSnapshot, MemberView]:
    """The snapshot of two listings, and the member view they leave (for a watch)."""
    view = MemberView(NOBODY)
    update = view.apply_listing(members)
    ordered = sorted(
        view.members.values(), key=lambda m: (m.created_index, m.record.id)
    )
    snapshot = ClusterSnapshot(
        cluster=cluster,
        members=tuple(Listed(m.record, m.created_index) for m in ordered),
        master=holder_in(directory),
        rejected=update.rejected,
        index=min(members.index, directory.index),
    )
    return snapshot, view
