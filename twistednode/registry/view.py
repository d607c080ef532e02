# -*- test-case-name: tests.registry.test_view,tests.registry.test_service -*-
"""
The members directory as one node knows it: a pure view and its diff.

No Twisted, no clock, no I/O. A full listing or one watched change goes in
(L{twistednode.registry.backend.Listing}, L{twistednode.registry.backend.Change}); the
peer events that
follow come out, with the keys that were ignored because their value is not a valid
L{MemberRecord}. Our own record is part of the view (its createdIndex matters to the
election) but never a peer event.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from attrs import define, field, frozen

from twistednode.registry.backend import Change, Listing
from twistednode.registry.record import MemberRecord

RemovalReason = Literal["deleted", "expired", "vanished"]
"""Why a peer left: its record was "deleted" (a clean stop: drop it at once),
"expired" (its TTL ran out: it crashed or lost etcd), or "vanished" (it was gone
at a re-list, or its value became invalid: the cause was not seen)."""


@frozen
class Member:
    """A valid record in the view and the createdIndex of its key."""

    record: MemberRecord
    created_index: int


@frozen
class PeerAdded:
    record: MemberRecord
    created_index: int


@frozen
class PeerChanged:
    record: MemberRecord


@frozen
class PeerRemoved:
    record_id: str
    reason: RemovalReason


PeerEvent = PeerAdded | PeerChanged | PeerRemoved


@frozen
class ViewUpdate:
    """What one listing or change did: peer events and the keys that were ignored."""

    events: tuple[PeerEvent, ...] = ()
    rejected: tuple[tuple[str, str], ...] = ()


def diff(
    old: Mapping[str, Member],
    new: Mapping[str, Member],
    own_id: str,
    reason: RemovalReason = "vanished",
) -> tuple[PeerEvent, ...]:
    """The peer events that turn C{old} into C{new} (our own id never reported)."""
    events: list[PeerEvent] = [
        PeerRemoved(name, reason)
        for name in sorted(old)
        if name not in new and name != own_id
    ]
    for name in sorted(new, key=lambda n: (new[n].created_index, n)):
        if name == own_id:
            continue
        member = new[name]
        if name not in old:
            events.append(PeerAdded(member.record, member.created_index))
        elif old[name].record != member.record:
            events.append(PeerChanged(member.record))
    return tuple(events)


def parse_member(name: str, value: str | None) -> Member | str:
    """Helper for the view: the record stored at C{name}, or why it is invalid."""
    if value is None:
        return "is a directory, not a record"
    if "/" in name:
        return "is nested below a member key"
    try:
        return Member(MemberRecord.from_json(value, expected_id=name), 0)
    except ValueError as e:
        return str(e)


@define
class MemberView:
    """
    The members directory as this node knows it (pure: no I/O, no clock).

    C{members} holds every valid record, our own included; C{index} is the store
    index the view is complete up to.
    """

    own_id: str
    members: dict[str, Member] = field(factory=dict)
    index: int = 0

    @property
    def own_index(self) -> int | None:
        own = self.members.get(self.own_id)
        return None if own is None else own.created_index

    def created_indexes(self) -> dict[str, int]:
        return {name: m.created_index for name, m in self.members.items()}

    def peers(self) -> dict[str, MemberRecord]:
        return {n: m.record for n, m in self.members.items() if n != self.own_id}

    def apply_listing(self, listing: Listing) -> ViewUpdate:
        """Replace the view by a full listing; peers not in it have "vanished"."""
        new: dict[str, Member] = {}
        rejected: list[tuple[str, str]] = []
        for entry in listing.entries:
            parsed = parse_member(entry.name, entry.value)
            if isinstance(parsed, str):
                rejected.append((entry.name, parsed))
            else:
                new[entry.name] = Member(parsed.record, entry.created_index)
        events = diff(self.members, new, self.own_id)
        self.members = new
        self.index = listing.index
        return ViewUpdate(events, tuple(rejected))

    def apply_change(self, change: Change) -> ViewUpdate:
        """Apply one watched change."""
        self.index = max(self.index, change.index)
        name = change.name
        if name == "":
            if change.kind == "put":
                return ViewUpdate()
            everything, self.members = self.members, {}
            return ViewUpdate(diff(everything, {}, self.own_id, change.kind))
        if change.kind != "put":
            if "/" in name or self.members.pop(name, None) is None:
                return ViewUpdate()
            if name == self.own_id:
                return ViewUpdate()
            return ViewUpdate((PeerRemoved(name, change.kind),))
        parsed = parse_member(name, change.value)
        if isinstance(parsed, str):
            gone = self.members.pop(name, None) is not None and name != self.own_id
            events = (PeerRemoved(name, "vanished"),) if gone else ()
            return ViewUpdate(events, ((name, parsed),))
        member = Member(parsed.record, change.created_index)
        before = self.members.get(name)
        self.members[name] = member
        old = {} if before is None else {name: before}
        return ViewUpdate(diff(old, {name: member}, self.own_id))
