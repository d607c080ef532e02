# -*- test-case-name: tests.cli.test_follow -*-
"""What C{twistednode watch} reports: joins, leaves and master changes, from the
registry's listings and watched changes.

Pure: L{Follower} takes a full listing (at the start, and again after any gap in
the watch) or one change below the cluster's directory, and returns the
L{WatchEvent}s that follow. A re-listing reports only what differs from what was
known, so a restarted watch repeats nothing and misses nothing.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from attrs import define, evolve, field, frozen

from twistednode.cli.snapshot import NOBODY, ClusterSnapshot, snapshot_of
from twistednode.election.campaign import MASTER, holder_after
from twistednode.election.lease import Holder
from twistednode.registry.backend import Change, Listing
from twistednode.registry.record import MemberRecord
from twistednode.registry.view import (
    MemberView,
    PeerAdded,
    PeerChanged,
    PeerEvent,
    RemovalReason,
)

_MEMBERS = "members/"


@frozen
class Watching:
    """The watch started: the cluster as it was then."""

    snapshot: ClusterSnapshot


@frozen
class Joined:
    """A member's record appeared."""

    record: MemberRecord


@frozen
class Changed:
    """A member rewrote its record (address, port, weight or advertisement)."""

    record: MemberRecord


@frozen
class Left:
    """A member's record is gone: "deleted" (a clean stop), "expired" (its TTL
    ran out: a crash or a lost registry), "vanished" (gone at a re-listing)."""

    member_id: str
    reason: RemovalReason
    record: MemberRecord | None


@frozen
class MasterChanged:
    """The master key has a new holder, or none (C{holder} None)."""

    holder: Holder | None


WatchEvent = Watching | Joined | Changed | Left | MasterChanged


@define
class Follower:
    """The cluster as the watch knows it."""

    cluster: str
    view: MemberView = field(factory=lambda: MemberView(NOBODY))
    holder: Holder | None = None
    started: bool = False

    def listed(self, members: Listing, directory: Listing) -> list[WatchEvent]:
        """A full listing; the first gives L{Watching}, later ones the differences."""
        snapshot, view = snapshot_of(self.cluster, members, directory)
        if not self.started:
            self.started = True
            self.view, self.holder = view, snapshot.master
            return [Watching(snapshot)]
        known = {name: m.record for name, m in self.view.members.items()}
        update = self.view.apply_listing(members)
        events = self._peer_events(update.events, known)
        return events + self._master(snapshot.master)

    def changed(self, change: Change) -> list[WatchEvent]:
        """One change below the cluster's directory (names relative to it)."""
        name = change.name
        if name == MASTER:
            return self._master(holder_after(change))
        if name == "":
            known = {n: m.record for n, m in self.view.members.items()}
            update = self.view.apply_change(change)
            events = self._peer_events(update.events, known)
            if change.kind != "put":
                events += self._master(None)
            return events
        if name == _MEMBERS.rstrip("/"):
            name = _MEMBERS  # the members directory itself: every record goes
        if not name.startswith(_MEMBERS):
            return []
        relative = evolve(change, name=name[len(_MEMBERS) :])
        known = {n: m.record for n, m in self.view.members.items()}
        update = self.view.apply_change(relative)
        return self._peer_events(update.events, known)

    def _peer_events(
        self, events: tuple[PeerEvent, ...], known: dict[str, MemberRecord]
    ) -> list[WatchEvent]:
        out: list[WatchEvent] = []
        for event in events:
            if isinstance(event, PeerAdded):
                out.append(Joined(event.record))
            elif isinstance(event, PeerChanged):
                out.append(Changed(event.record))
            else:
                record = known.get(event.record_id)
                out.append(Left(event.record_id, event.reason, record))
        return out

    def _master(self, holder: Holder | None) -> list[WatchEvent]:
        if holder == self.holder:
            return []
        self.holder = holder
        return [MasterChanged(holder)]
