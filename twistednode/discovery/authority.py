# -*- test-case-name: tests.discovery.test_authority -*-
"""The registry as the membership authority (issue 12 item 2): whose hellos count.

In a registry cluster (a registry, no static peers) a node accepts a hello only from
an id the registry view lists, and only from the address and port its record names;
C{trust_hello_address} drops the address check (the port still counts) for peers
behind NAT whose record names an address their datagrams do not come from. This
class is pure (no Twisted, no clock): L{twistednode.discovery.membership.Membership}
asks it before it believes a hello or a goodbye, and tells it what the registry
lists and whom the table removed.

The rules:

  - B{unlisted}: an id the view does not list is refused (C{dropped.unlisted}). A
    peer's hellos may come before our view lists it (it registered and greeted us
    before our watch saw its record); they are refused too, and the join completes
    when we list it: the node greets every peer the registry announces at once, and
    a greeted peer that has not accepted us yet greets us back.
  - B{address}: a listed id whose hello comes from another address or port than its
    record names is refused (C{dropped.address}).
  - B{retained}: a member of the table whose record leaves the view (a registry
    restarted empty, an expired lease of a live node) is still accepted from the
    address its last record named while it keeps saying hello; once removed it
    needs a record again. A record that comes back with another revision is a
    restarted process (its deletion happened while our watch was down): its
    sequence numbers start again.
  - B{goodbye}: a goodbye never removes a member whose record is live
    (C{dropped.live-goodbye}); the record's deletion does (a clean stop deletes it
    right after its goodbye).
  - B{removed}: a member the table removed stays removed while its record is the
    same one: its hellos must carry a sequence number above every one seen from it
    (a live node that was paused, partitioned or slow), so a replayed hello of a
    dead node cannot bring it back (C{dropped.stale-seq}), and an unmarked one is
    refused (C{dropped.removed}). A record written again (a new C{createdIndex} or
    C{startedAt}: a restarted node) starts afresh.

Static-peer and mixed clusters keep node-discover's acceptance; only the keyring
(docs/sealed-datagrams.md) protects them.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import define, field, frozen

from twistednode.discovery.events import Source


@frozen
class ListedPeer:
    """What one registry record says of a peer.

    @ivar address: where its hellos must come from (unless the address is trusted).
    @ivar port: the UDP port they must come from.
    @ivar revision: changes when the record is written anew (its C{createdIndex}
        and C{startedAt}): a restarted node, whose sequence numbers start again.
    """

    address: str
    port: int
    revision: tuple[int, float]


@define
class RegistryAuthority:
    """Who the registry lets in, for one node (see the module docstring).

    @ivar trust_hello_address: accept a listed id's hellos from any address (the
        port must still match its record): peers behind NAT.
    """

    trust_hello_address: bool = False
    _listed: dict[str, ListedPeer] = field(factory=dict, init=False)
    _retained: dict[str, ListedPeer] = field(factory=dict, init=False)
    _removed: dict[str, tuple[int, float]] = field(factory=dict, init=False)

    @property
    def listed(self) -> Mapping[str, ListedPeer]:
        """The peers the registry lists now."""
        return self._listed

    def update(
        self, peers: Mapping[str, ListedPeer], in_table: set[str]
    ) -> tuple[list[str], list[str]]:
        """A new registry view; C{in_table}: the ids the membership holds.

        Returns the ids of the table whose record was written anew (their sequence
        numbers restart) and the removed ids that are free again (their record
        changed or left: the membership drops their tombstones).
        """
        old = self._listed
        self._listed = dict(peers)
        for member_id, peer in old.items():
            if member_id not in self._listed and member_id in in_table:
                self._retained.setdefault(member_id, peer)
        renewed = []
        for member_id, peer in self._listed.items():
            retained = self._retained.pop(member_id, None)
            # A record back after a listing without it (a watch that missed the
            # deletion) is compared with the one retained: if it is another
            # revision, the process restarted while we were not looking.
            before = old.get(member_id, retained)
            if (
                before is not None
                and before.revision != peer.revision
                and member_id in in_table
            ):
                renewed.append(member_id)
        freed = [
            member_id
            for member_id, revision in self._removed.items()
            if member_id not in self._listed
            or self._listed[member_id].revision != revision
        ]
        for member_id in freed:
            del self._removed[member_id]
        return renewed, freed

    def refusal(
        self, member_id: str, source: Source, marked: bool, in_table: bool
    ) -> str | None:
        """Why a hello from C{member_id} at C{source} is refused, or None.

        @param marked: whether it carries our extension key with a sequence number.
        @param in_table: whether the membership holds C{member_id} now.
        """
        peer = self._listed.get(member_id)
        if peer is None and in_table:
            peer = self._retained.get(member_id)
        if peer is None:
            return "unlisted"
        if source[1] != peer.port or (
            not self.trust_hello_address and source[0] != peer.address
        ):
            return "address"
        if member_id in self._removed and not marked:
            return "removed"
        return None

    def goodbye_refusal(self, member_id: str, source: Source | None) -> str | None:
        """Why a goodbye from C{member_id} is refused, or None (see the rules)."""
        if member_id in self._listed:
            return "live-goodbye"
        peer = self._retained.get(member_id)
        if peer is None:
            return "unlisted"
        if source is not None and (
            source[1] != peer.port
            or (not self.trust_hello_address and source[0] != peer.address)
        ):
            return "address"
        return None

    def removed(self, member_id: str) -> None:
        """The table removed C{member_id} (a timeout, its goodbye or its deletion)."""
        self._retained.pop(member_id, None)
        peer = self._listed.get(member_id)
        if peer is not None:
            self._removed[member_id] = peer.revision

    def holds_tombstone(self, member_id: str) -> bool:
        """Whether C{member_id}'s tombstone must outlive node-discover's horizon:
        it was removed and its record is still the same one."""
        return member_id in self._removed
