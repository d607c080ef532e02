# -*- test-case-name: tests.registry.test_view,tests.registry.test_service -*-
"""
The members directory as one node knows it: a pure view and its diff.

No Twisted, no clock, no I/O. A full listing or one watched change goes in
(L{twistednode.registry.backend.Listing}, L{twistednode.registry.backend.Change}); the
peer events that
follow come out, with the keys that were ignored because their value is not a valid
L{MemberRecord}. Our own record is part of the view (its createdIndex matters to the
election) but never a peer event.

Input limits (issue 12 item 3): a peer's record is refused when its value is over
C{max_record_bytes} (64 KiB), when its address is not one a node can send hellos to
(IPv6, since hellos are UDP over IPv4; unspecified, broadcast or multicast), or when
the view already holds C{max_members} records: it keeps ours first, then the oldest,
in a listing and in a watched change alike (a newcomer that is not last in that order
takes the place of the one that is). A refused
key is reported once in L{ViewUpdate.rejected} per change of it; the registry logs
one warning per key and reason. Our own record is exempt: it is ours to rewrite.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Final, Literal

from attrs import define, field, frozen

from twistednode.registry.backend import Change, Listing
from twistednode.registry.record import MemberRecord

#: A record's value above this many bytes (UTF-8) is refused.
MAX_RECORD_BYTES: Final = 64 * 1024
#: At most this many records are taken from the members directory (ours included).
MAX_MEMBERS: Final = 1000

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


def parse_member(
    name: str, value: str | None, max_bytes: int | None = None
) -> Member | str:
    """Helper for the view: the record stored at C{name}, or why it is invalid
    (or over C{max_bytes})."""
    if value is None:
        return "is a directory, not a record"
    if "/" in name:
        return "is nested below a member key"
    if max_bytes is not None and len(value.encode("utf-8", "replace")) > max_bytes:
        return f"is over the record size limit ({max_bytes} bytes)"
    try:
        return Member(MemberRecord.from_json(value, expected_id=name), 0)
    except ValueError as e:
        return str(e)


def address_refusal(address: str) -> str | None:
    """Why a peer at C{address} cannot be sent hellos, or None."""
    ip = ipaddress.ip_address(address)
    if ip.version != 4:
        return (
            f"address {address} is IPv6; hellos are UDP over IPv4 "
            "(advertise an IPv4 address)"
        )
    if ip.is_unspecified:
        return f"address {address} is unspecified"
    if ip == ipaddress.IPv4Address("255.255.255.255") or ip.is_multicast:
        return f"address {address} is a broadcast or multicast address"
    return None


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
    max_record_bytes: int = MAX_RECORD_BYTES
    max_members: int = MAX_MEMBERS

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
        entries = sorted(
            listing.entries, key=lambda e: self._rank(e.name, e.created_index)
        )
        for entry in entries:
            parsed = self._parse(entry.name, entry.value)
            if isinstance(parsed, str):
                rejected.append((entry.name, parsed))
            elif len(new) >= self.max_members:
                rejected.append((entry.name, self._too_many()))
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
        parsed = self._parse(name, change.value)
        evicted: tuple[PeerRemoved, ...] = ()
        rejected: tuple[tuple[str, str], ...] = ()
        if (
            not isinstance(parsed, str)
            and name not in self.members
            and len(self.members) >= self.max_members
        ):
            # Full: the listing's rule decides who stays. The last in its order
            # leaves: the newcomer, or (for our own record, always first) the
            # newest peer, which the next listing would leave out as well.
            last = max(
                self.members, key=lambda n: self._rank(n, self.members[n].created_index)
            )
            if self._rank(name, change.created_index) > self._rank(
                last, self.members[last].created_index
            ):
                parsed = self._too_many()
            else:
                del self.members[last]
                evicted = (PeerRemoved(last, "vanished"),)
                rejected = ((last, self._too_many()),)
        if isinstance(parsed, str):
            gone = self.members.pop(name, None) is not None and name != self.own_id
            events = (PeerRemoved(name, "vanished"),) if gone else ()
            return ViewUpdate(events, ((name, parsed),))
        member = Member(parsed.record, change.created_index)
        before = self.members.get(name)
        self.members[name] = member
        old = {} if before is None else {name: before}
        return ViewUpdate(evicted + diff(old, {name: member}, self.own_id), rejected)

    def _rank(self, name: str, created_index: int) -> tuple[bool, int, str]:
        """The order in which the view keeps records under C{max_members}: ours
        first, then the oldest."""
        return (name != self.own_id, created_index, name)

    def _parse(self, name: str, value: str | None) -> Member | str:
        """L{parse_member}, with the limits for a peer's record."""
        if name == self.own_id:
            return parse_member(name, value)
        parsed = parse_member(name, value, self.max_record_bytes)
        if isinstance(parsed, str):
            return parsed
        refused = address_refusal(parsed.record.address)
        return parsed if refused is None else refused

    def _too_many(self) -> str:
        return (
            f"the members directory holds more than {self.max_members} records "
            "(--max-members)"
        )
