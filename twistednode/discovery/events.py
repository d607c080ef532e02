# -*- test-case-name: tests.discovery.test_membership -*-
"""The values the membership hands out: members, events, and our hello marker.

All frozen. L{twistednode.discovery.membership} produces them (and re-exports them); the
adapter and the application consume them. See that module for the rules.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from attrs import field, frozen

from twistednode.discovery.wire import Envelope

EXTENSION_KEY: Final = "x-twistednode"
EXTENSION_VERSION: Final = 1
#: Private event name of the goodbye datagram; node-discover peers drop it (R7).
BYE_EVENT: Final = "twistednode.bye"
#: The address node-discover puts in every hello (receivers overwrite it).
HELLO_ADDRESS: Final = "127.0.0.1"
#: A datagram source or destination: (IPv4 address, UDP port).
Source = tuple[str, int]


@frozen
class Member:
    """What we know about another node: its merged hello data and where it is."""

    id: str
    address: str
    port: int
    host_name: str | None
    is_master: bool
    is_master_eligible: bool
    weight: float
    advertisement: object = field(hash=False)
    last_seen: float
    is_ours: bool
    data: Mapping[str, object] = field(eq=False)


@frozen
class Added:
    """The first accepted hello from a node without a record."""

    member: Member
    envelope: Envelope
    source: Source


@frozen
class MasterSeen:
    """Another node became master.

    Under node-discover's election: a hello claiming mastership from a new node or
    one that was not master (C{envelope} and C{source} are that hello's). Under the
    leased election: the registry's master key changed hands (C{envelope} and
    C{source} are None; C{epoch} is the new term's fencing epoch).
    """

    member: Member
    envelope: Envelope | None = None
    source: Source | None = None
    epoch: int | None = None


@frozen
class HelloReceived:
    """Every accepted hello; C{was_master} is None for a new node."""

    member: Member
    envelope: Envelope
    source: Source
    is_new: bool
    was_master: bool | None


@frozen
class Removed:
    """A node was removed: C{reason} is "timeout" or "left"."""

    member: Member
    reason: str


@frozen
class Promotion:
    """We became master; C{reason} is "check", "early", "manual", "lease", or
    "unlisted" (node-discover's rules after the registry could not be listed in time).

    Under the leased election C{epoch} is the term's fencing epoch.
    """

    me: Mapping[str, object] = field(eq=False)
    reason: str
    epoch: int | None = None


@frozen
class Demotion:
    """We stopped being master; C{reason} is "check" or "manual", or under the
    leased election "expired", "lost" or "resigned" (with the term's C{epoch})."""

    me: Mapping[str, object] = field(eq=False)
    reason: str
    epoch: int | None = None


@frozen
class SendHello:
    """Send a hello now: to C{destination}, or to every destination if None."""

    destination: Source | None = None


@frozen
class MastersConflict:
    """More masters than C{masters_required} (us included) for over masterTimeout.

    node-discover never resolves equal-weight masters; this is the warning the spec
    (§11) suggests. Emitted once per episode, with the masters' ids.
    """

    masters: tuple[str, ...]
    since: float


MembershipEvent = (
    Added
    | MasterSeen
    | HelloReceived
    | Removed
    | Promotion
    | Demotion
    | MastersConflict
)
Event = MembershipEvent | SendHello


def int_or_none(value: object) -> int | None:
    """C{value} if it is a JSON integer (not a boolean), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@frozen
class Marker:
    """Our extension key as received: who sent it, and its early-election fields."""

    seq: int | None
    idx: int | None
    view: int | None
    hw: int | None

    @classmethod
    def parse(cls, value: object) -> Marker | None:
        """The marker in C{value}, or None if it is not one of ours (any version)."""
        if not isinstance(value, dict):
            return None
        version = int_or_none(value.get("v"))
        if version is None or version < 1:
            return None
        return cls(
            seq=int_or_none(value.get("seq")),
            idx=int_or_none(value.get("idx")),
            view=int_or_none(value.get("view")),
            hw=int_or_none(value.get("hw")),
        )
