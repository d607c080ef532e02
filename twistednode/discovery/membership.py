# -*- test-case-name: tests.discovery.test_membership -*-
"""The pure membership and election state machine (node-discover-wire.md §2, §6, §7).

No Twisted, no clock: every method takes C{now} (monotonic seconds) and returns the
events that follow, in node-discover's order. L{SendHello} events tell the adapter to
send a hello at once (to one destination, or to all). The rules are node-discover
1.2.1's check loop, steps 1-5, with the same strictness, plus only the §6.2
improvements: the one-sided tie-break (we always yield to node-discover peers on equal
weights), checking at each member's exact timeout (L{Membership.next_deadline}) with
the same timeouts, immediate re-election
when a peer says goodbye, learned destinations (in the adapter), stricter acceptance,
the C{"x-twistednode"} extension key, and bounded reluctance. Stale hellos from our
own kind (sequence number not above the last one seen from that sender) are dropped,
so reordering cannot make a master look like a non-master.

Early election
==============

node-discover's first election runs one C{check_interval} after the bind. In a
registry-only cluster (every member ours, registered in etcd, no static peers) we
promote earlier, but only when it is provably safe, using two facts: a node writes its
registry record before it lists the registry, and etcd numbers every write with one
global, strictly increasing index. C{registry_view} gives us the member ids with the
C{createdIndex} of their records, our own record's index C{own_index} (c_N below) and
C{view_index}, the index up to which our view is complete.

Every hello we send carries, in the extension key, C{seq} (per-sender, strictly
increasing), C{idx} (our C{own_index}) and C{hw}, the I{heard watermark}: the largest
k <= view_index such that every other member of our registry view with an index
<= k has a record in our hello table. C{hw >= c_N} in a hello from M therefore says
"when M sent this, N was in M's table". Node N may promote before C{check_interval}
(and no sooner than C{early_delay}) only if, besides step 5's own conditions (no live
master, no eligible non-master that beats N, N eligible, C{masters_required == 1}):

  (a) N has no static peers and has never accepted an unmarked hello (a node-discover
      peer), and every eligible or master member of its table is in its registry view;
  (b) for EVERY other member M of its registry view, N's record of M (M's latest hello
      by C{seq}) carries C{hw >= c_N}.

Why two of our nodes never both hold mastership. Suppose N promotes early at t and
take any other node M.
  - M in N's view at t: by (b), M's latest hello h (sent at s < t) says M had N in
    its table, and by step 5 at N it says M was not master and M does not beat N (the
    tie-break makes "beats" a strict total order among our nodes). From s on, N stays
    in M's table (a live node is removed only by a timeout, which node-discover's own
    timing assumptions exclude, or by its goodbye; a registry deletion never removes
    an eligible record, see L{Membership.peer_left}). In M's table N is eligible and
    beats M while it is not master, and is a master after, so every later run of
    step 5 at M, early or normal, fails. M was not master at s, so M is never master
    while N is.
  - M not in N's view at t: M can promote early only with N's acknowledgement
    (N is in M's view, since N registered first and M listed after its own write),
    i.e. a hello from N with C{hw >= c_M}, which N sends only once it has M in its
    table. If N sent it before t, M was in N's table at t (a record made after the
    bind cannot time out before C{check_interval}), so step 5 at N means N beats M,
    and M's record of N (eligible, not master, beating M) blocks M's step 5 until it
    says master. If N sent it after t, it says N is master, and M's record of N
    (latest by C{seq}) keeps saying so. M's normal promotion (after its own
    C{check_interval}) is node-discover timing, unchanged: by then it has heard N, as
    in any node-discover cluster.
Why an acknowledgement and not just "M's view includes N": past its own
C{check_interval}, M may promote at any step while N is not yet in its table (its
hellos are in flight); M's earlier non-master hello naming a view that includes N
would then let N promote too. The cluster simulation (tests/harness/simulation.py)
found this
race; EarlyElectionTests.test_view_alone_is_not_enough pins it down.
Seq ordering makes "latest hello" well defined under reordering and duplication.

Reluctance is bounded: a dead member whose record has not expired never acknowledges,
which only disables the early rule; node-discover timing still elects one
C{check_interval} after the bind. Assumptions: registry completeness (every live node's
record exists from before its first hello until it leaves), identical settings, no
manual L{Membership.promote}. Mixed clusters (static peers, or any unmarked hello) run
exactly node-discover timing. A node-discover peer that lists us but that we do not
list, in a registry cluster, is invisible until its first hello, so such peers must be
configured as static peers (or early election disabled).

Clean stops: the leaving node demotes permanently, sends two hellos with
C{isMasterEligible: false} and a goodbye (L{BYE_EVENT}), then deletes its record.
L{Membership.peer_left} removes it at once and re-runs the election, so the next
master is elected within one message delay. A crashed master is removed by the normal
C{master_timeout}, checked at its deadline (L{Membership.next_deadline}).

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Final

from attrs import define, field

from twistednode.discovery.authority import ListedPeer, RegistryAuthority
from twistednode.discovery.events import (
    BYE_EVENT,
    EXTENSION_KEY,
    EXTENSION_VERSION,
    HELLO_ADDRESS,
    Added,
    Demotion,
    Event,
    HelloReceived,
    Marker,
    MastersConflict,
    MasterSeen,
    Member,
    MembershipEvent,
    Promotion,
    Removed,
    SendHello,
    Source,
    int_or_none,
)
from twistednode.discovery.settings import Settings
from twistednode.discovery.wire import Envelope, js_truthy, number_field

__all__ = [
    "BYE_EVENT",
    "EXTENSION_KEY",
    "EXTENSION_VERSION",
    "HELLO_ADDRESS",
    "Added",
    "Demotion",
    "Event",
    "HelloReceived",
    "Marker",
    "MasterSeen",
    "MastersConflict",
    "Member",
    "Membership",
    "MembershipEvent",
    "ListedPeer",
    "Promotion",
    "RegistryAuthority",
    "Removed",
    "SendHello",
    "Source",
]

# Keys the receiver overwrites in received hello data (spec §2 step 2).
_OVERWRITTEN = frozenset({"lastSeen", "address", "port", "hostName", "id"})
_UNSET: Final = object()


@define
class _Record:
    """A node-discover record: merged hello data, with its derived fields cached."""

    id: str
    data: dict[str, object]
    address: str
    port: int
    host_name: str | None
    last_seen: float
    seq: int | None = None
    is_master: bool = False
    is_eligible: bool = False
    weight: float = math.nan
    marker: Marker | None = None
    #: The sender's boot id from the sealed header (None: unsealed).
    boot: bytes | None = None

    def merge(self, data: Mapping[str, object]) -> None:
        """Copy the keys of a hello onto the record (missing keys keep values)."""
        for key, value in data.items():
            if key not in _OVERWRITTEN:
                self.data[key] = value
        self.is_master = js_truthy(self.data.get("isMaster"))
        self.is_eligible = js_truthy(self.data.get("isMasterEligible"))
        self.weight = number_field(self.data, "weight")
        self.marker = Marker.parse(self.data.get(EXTENSION_KEY))

    def member(self) -> Member:
        return Member(
            id=self.id,
            address=self.address,
            port=self.port,
            host_name=self.host_name,
            is_master=self.is_master,
            is_master_eligible=self.is_eligible,
            weight=self.weight,
            advertisement=self.data.get("advertisement"),
            last_seen=self.last_seen,
            is_ours=self.marker is not None,
            data=MappingProxyType(dict(self.data)),
        )


@define
class Membership:
    """The node table and the election, for one discovery instance (C{iid}).

    @ivar started_at: when the socket was bound (monotonic seconds); the first
        node-discover election runs C{check_interval} after it.
    @ivar static_peers: set by the adapter when static destinations are configured;
        it disables the early election (a mixed cluster).
    """

    iid: str
    settings: Settings
    started_at: float
    static_peers: bool = False
    #: The leased election decides who is master (L{set_master}); the node-discover
    #: rules then never promote or demote, and hellos say what the lease says.
    external_election: bool = False
    #: With a registry: seconds after the bind during which we never promote before
    #: the first registry view, since peers we have not listed yet may have a
    #: master (a node started during a registry outage). After it, the node-discover
    #: rules apply alone and the promotion says "unlisted". None: no registry.
    listing_wait: float | None = None
    #: With a registry: the registry decides whose hellos count (L{RegistryAuthority};
    #: not while there are static peers, a mixed cluster). None: node-discover's
    #: acceptance.
    authority: RegistryAuthority | None = None
    #: With sealed datagrams: seconds a removed member's tombstone is kept while
    #: its sender boot is the same (the seal's timestamp window, so a captured
    #: hello cannot be replayed after node-discover's shorter horizon); a hello
    #: from a new boot of that id (a restart) clears it.
    replay_window: float = 0.0
    _records: dict[str, _Record] = field(factory=dict, init=False)
    _is_master: bool = field(default=False, init=False)
    _eligible: bool = field(default=True, init=False)
    _advertisement: object = field(default=_UNSET, init=False)
    _seq: int = field(default=0, init=False)
    _extension: dict[str, object] = field(factory=dict, init=False)
    _registry: dict[str, int] = field(factory=dict, init=False)
    _view_index: int | None = field(default=None, init=False)
    _own_index: int | None = field(default=None, init=False)
    _foreign_seen: bool = field(default=False, init=False)
    _tombstones: dict[str, tuple[int | None, float]] = field(factory=dict, init=False)
    _tomb_boots: dict[str, bytes] = field(factory=dict, init=False)
    _acked_hw: int | None = field(default=None, init=False)
    _drops: Counter[str] = field(factory=Counter, init=False)
    _conflict_since: float | None = field(default=None, init=False)
    _conflict_reported: bool = field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._eligible = not self.settings.client

    # -- queries ---------------------------------------------------------------

    @property
    def is_master(self) -> bool:
        """Whether this node is master now."""
        return self._is_master

    @property
    def listed(self) -> bool:
        """Whether a registry view has arrived since the bind (always, without one)."""
        return self.listing_wait is None or self._view_index is not None

    def waiting_for_listing(self, now: float) -> bool:
        """Whether promotion is held back now for want of a first registry view."""
        if self.listed:
            return False
        assert self.listing_wait is not None
        return now < self.started_at + self.listing_wait

    @property
    def is_master_eligible(self) -> bool:
        """Whether this node may become master."""
        return self._eligible

    @property
    def members(self) -> tuple[Member, ...]:
        """The other nodes, in table order."""
        return tuple(record.member() for record in self._records.values())

    def member(self, member_id: str) -> Member | None:
        """One member by id, or None."""
        record = self._records.get(member_id)
        return None if record is None else record.member()

    @property
    def master(self) -> str | None:
        """The id of the master as we see it (possibly ourselves); the heaviest.

        Among several, the highest weight wins, then a node-discover peer, then the
        smallest id (the order of the tie-break).
        """
        candidates = [
            (r.id, r.weight, r.marker is None)
            for r in self._records.values()
            if r.is_master
        ]
        if self._is_master:
            candidates.append((self.iid, self.settings.weight, False))
        if not candidates:
            return None
        candidates.sort()
        best = max(
            candidates, key=lambda c: (-math.inf if c[1] != c[1] else c[1], c[2])
        )
        return best[0]

    @property
    def dropped(self) -> Mapping[str, int]:
        """Counts of dropped messages by reason."""
        return MappingProxyType(self._drops)

    @property
    def early_election_possible(self) -> bool:
        """False once a mixed cluster is detected (static or node-discover peers)."""
        return not (self.static_peers or self._foreign_seen)

    def record_drop(self, reason: str) -> None:
        """Count a message the adapter dropped (decode errors, R4, R7...)."""
        self._drops[reason] += 1

    def message_refusal(self, member_id: str, source: Source) -> str | None:
        """Why a channel message from C{member_id} at C{source} is refused under the
        registry's authority (the rules of a hello), or None."""
        authority = self._authority()
        if authority is None:
            return None
        return authority.refusal(
            member_id, source, marked=True, in_table=member_id in self._records
        )

    def me(self) -> dict[str, object]:
        """Our own hello data as last sent (for display; no new sequence number)."""
        return self._hello(self._seq)

    def hello_data(self) -> dict[str, object]:
        """The hello data to send now; every call takes the next sequence number."""
        self._seq += 1
        return self._hello(self._seq)

    def bye_data(self) -> dict[str, object]:
        """The payload of a goodbye datagram (our marker with the next C{seq})."""
        self._seq += 1
        return {EXTENSION_KEY: {"v": EXTENSION_VERSION, "seq": self._seq}}

    def _hello(self, seq: int) -> dict[str, object]:
        data: dict[str, object] = {
            "isMaster": self._is_master,
            "isMasterEligible": self._eligible,
            "weight": self.settings.weight,
            "address": HELLO_ADDRESS,
        }
        if self._advertisement is not _UNSET:
            data["advertisement"] = self._advertisement
        data[EXTENSION_KEY] = {
            "v": EXTENSION_VERSION,
            "seq": seq,
            "idx": self._own_index,
            "view": self._view_index,
            "hw": self._heard_watermark(),
            **self._extension,
        }
        return data

    def set_advertisement(self, value: object) -> None:
        """Set the advertisement sent with every hello (any JSON; None is null)."""
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"the advertisement must be JSON: {e}") from None
        self._advertisement = value

    def set_extension(self, name: str, value: object) -> None:
        """Send C{name: value} in our extension key of every hello from now on
        (other parts' fields: the transport endpoint, the capacity); None removes
        it. The election's own fields cannot be replaced."""
        if name in ("v", "seq", "idx", "view", "hw"):
            raise ValueError(f"{name!r} is the election's own extension field")
        if value is None:
            self._extension.pop(name, None)
        else:
            self._extension[name] = value

    # -- inputs ----------------------------------------------------------------

    def bound(self, now: float) -> None:
        """The socket was (re-)bound: a fresh start.

        The first node-discover election is C{check_interval} from now; we are not
        master, and eligible again unless client-only (undoing a leave).
        """
        self.started_at = now
        self._is_master = False
        self._eligible = not self.settings.client

    def hello_received(
        self, now: float, envelope: Envelope, source: Source, boot: bytes | None = None
    ) -> list[Event]:
        """Process an accepted hello (spec §2); return the events that follow.

        @param boot: the sender's boot id, when the hello came sealed: a new one
            means a restarted sender, whose sequence numbers start again.
        """
        data = envelope.data
        if envelope.iid == self.iid:
            self._drops["own-instance"] += 1
            return []
        if envelope.event != "hello" or not isinstance(data, dict):
            self._drops["bad-hello-data"] += 1
            return []
        incoming = Marker.parse(data.get(EXTENSION_KEY))
        authority = self._authority()
        if authority is not None:
            refused = authority.refusal(
                envelope.iid,
                source,
                marked=incoming is not None and incoming.seq is not None,
                in_table=envelope.iid in self._records,
            )
            if refused is not None:
                self._drops[refused] += 1
                return []
        record = self._records.get(envelope.iid)
        if boot is not None:
            self._new_boot(envelope.iid, record, boot)
        if incoming is not None and incoming.seq is not None:
            last = record.seq if record is not None else None
            if record is None and envelope.iid in self._tombstones:
                last = self._tombstones[envelope.iid][0]
            if last is not None and incoming.seq <= last:
                self._drops["stale-seq"] += 1
                return []
        if incoming is None:
            self._foreign_seen = True
        is_new = record is None
        was_master: bool | None = None
        before: tuple[bool, bool] | None = None
        if record is None:
            record = _Record(envelope.iid, {}, source[0], source[1], None, now)
            self._records[envelope.iid] = record
            self._tombstones.pop(envelope.iid, None)
            self._tomb_boots.pop(envelope.iid, None)
        else:
            was_master = record.is_master
            before = (record.is_master, record.is_eligible)
        record.merge(data)
        record.boot = boot if boot is not None else record.boot
        record.address, record.port = source
        record.host_name = envelope.host_name
        record.last_seen = now
        if incoming is not None and incoming.seq is not None:
            record.seq = incoming.seq
        member = record.member()
        events: list[Event] = []
        if is_new:
            events.append(Added(member, envelope, source))
        if member.is_master and not was_master:
            events.append(MasterSeen(member, envelope, source))
        events.append(HelloReceived(member, envelope, source, is_new, was_master))
        if is_new:
            events.append(SendHello(source))  # introduce ourselves (and acknowledge)
        if is_new or before != (record.is_master, record.is_eligible):
            events += self._check(now)
        elif self._in_early_phase(now):
            events += self._elect(now)
        if is_new or any(isinstance(e, Removed) for e in events):
            events += self._ack_events()  # only the table changes the watermark
        return _finish(events)

    def goodbye_received(
        self, now: float, envelope: Envelope, source: Source | None = None
    ) -> list[Event]:
        """A goodbye datagram (L{BYE_EVENT}) from one of our nodes (at C{source}).

        Under the registry's authority a goodbye never removes a member whose
        record is live: the record's deletion does."""
        marker = Marker.parse(
            envelope.data.get(EXTENSION_KEY)
            if isinstance(envelope.data, dict)
            else None
        )
        if marker is None or marker.seq is None:
            self._drops["bad-bye"] += 1
            return []
        authority = self._authority()
        if authority is not None:
            refused = authority.goodbye_refusal(envelope.iid, source)
            if refused is not None:
                self._drops[refused] += 1
                return []
        return self.peer_left(now, envelope.iid, seq=marker.seq)

    def peer_left(
        self, now: float, member_id: str, seq: int | None = None
    ) -> list[Event]:
        """A member left: its goodbye (with C{seq}) or its registry record's deletion.

        A goodbye is sent after a permanent demotion, so it removes the member at once
        (unless it is older than the latest hello). A registry deletion may also be a
        lease or TTL expiry of a live node, so it removes only a member that can no
        longer block or lead (not master, not eligible, e.g. after its leave hellos);
        any other is left to the normal timeouts. Either way the election re-runs.
        """
        record = self._records.get(member_id)
        if record is None:
            if seq is not None:
                old = self._tombstones.get(member_id, (None, now))[0]
                self._tombstones[member_id] = (max(seq, old or 0), now)
            return []
        if seq is not None:
            if record.seq is not None and seq <= record.seq:
                self._drops["stale-seq"] += 1
                return []
            record.seq = seq
        elif record.is_master or record.is_eligible:
            return []
        del self._records[member_id]
        self._bury(member_id, record, now)
        events: list[Event] = [Removed(record.member(), "left")]
        return _finish(events + self._elect(now) + self._ack_events())

    def registry_view(
        self,
        now: float,
        members: Mapping[str, int],
        view_index: int,
        own_index: int | None,
        clients: Collection[str] = (),
        peers: Mapping[str, ListedPeer] | None = None,
    ) -> list[Event]:
        """The registry's member ids with their records' C{createdIndex}.

        @param view_index: the index up to which this view is complete (the list's
            X-Etcd-Index, then each watch event's index).
        @param own_index: our own record's C{createdIndex}, or None if not written.
        @param clients: ids whose records say they are client-only. They send no
            hellos, so the early rule does not wait for them; a node must never be
            listed here unless it really can never become master.
        @param peers: where each listed peer's hellos must come from, for the
            L{authority} (ignored without one).
        """
        registry: dict[str, int] = {}
        for member_id, index in members.items():
            if int_or_none(index) is None:
                raise ValueError(f"createdIndex of {member_id!r} must be an integer")
            if member_id != self.iid and member_id not in clients:
                registry[member_id] = index
        if int_or_none(view_index) is None:
            raise ValueError("view_index must be an integer")
        if own_index is not None and int_or_none(own_index) is None:
            raise ValueError("own_index must be an integer or None")
        if self.authority is not None and peers is not None:
            renewed, freed = self.authority.update(
                {i: p for i, p in peers.items() if i != self.iid}, set(self._records)
            )
            for member_id in renewed:
                self._records[member_id].seq = None  # a new process counts anew
            for member_id in freed:
                self._tombstones.pop(member_id, None)
                self._tomb_boots.pop(member_id, None)
        self._registry = registry
        self._view_index = view_index
        self._own_index = own_index
        events: list[Event] = []
        if self._in_early_phase(now):
            events += self._elect(now)
        return _finish(events + self._ack_events())

    def next_deadline(self, now: float) -> float | None:
        """The earliest time from C{now} on at which L{tick} may change something.

        The earlier of L{next_phase} and L{next_timeout}. A tick at any other time
        finds nothing to do, so the adapter may sleep until then. Everything else
        that changes the outcome (hellos, goodbyes, registry views) re-runs the
        election itself.
        """
        due = [
            t for t in (self.next_phase(now), self.next_timeout(now)) if t is not None
        ]
        return min(due) if due else None

    def next_phase(self, now: float) -> float | None:
        """The next election phase from C{now} on: C{early_delay} and
        C{check_interval} after the bind (and the listing wait), or the moment a
        masters conflict becomes reportable, C{master_timeout} after it began."""
        settings = self.settings
        times = [
            self.started_at + settings.early_delay,
            self.started_at + settings.check_interval,
        ]
        if not self.listed:
            assert self.listing_wait is not None
            times.append(self.started_at + self.listing_wait)
        if self._conflict_since is not None and not self._conflict_reported:
            times.append(self._conflict_since + settings.master_timeout)
        due = [t for t in times if t >= now]
        return min(due) if due else None

    def next_timeout(self, now: float) -> float | None:
        """The first member timeout from C{now} on: just after a member's last
        hello plus its limit (C{master_timeout} for a master, else
        C{node_timeout})."""
        settings = self.settings
        times = [
            record.last_seen
            + (settings.master_timeout if record.is_master else settings.node_timeout)
            for record in self._records.values()
        ]
        due = [t for t in times if t >= now]  # a timeout at now is due just after
        return min(due) if due else None

    def tick(self, now: float) -> list[Event]:
        """One run of the check loop: removal, then demotion or promotion."""
        horizon = self.settings.node_timeout + self.settings.check_interval
        authority = self.authority
        for member_id, (_seq, since) in list(self._tombstones.items()):
            if authority is not None and authority.holds_tombstone(member_id):
                continue  # removed while its record lives: replays stay refused
            if member_id in self._tomb_boots:
                if now - since <= max(horizon, self.replay_window):
                    continue  # a sealed hello of that boot may still be replayed
            if now - since > horizon:
                del self._tombstones[member_id]
                self._tomb_boots.pop(member_id, None)
        events = self._check(now)
        if any(isinstance(e, Removed) for e in events):
            events += self._ack_events()  # the watermark may have dropped
        return _finish(events + self._conflict(now))

    def _conflict(self, now: float) -> list[Event]:
        masters = [
            r.id
            for r in self._records.values()
            if r.is_master and now - r.last_seen < self.settings.master_timeout
        ]
        if self._is_master:
            masters.append(self.iid)
        if len(masters) <= self.settings.masters_required:
            self._conflict_since, self._conflict_reported = None, False
            return []
        if self._conflict_since is None:
            self._conflict_since = now
        if self._conflict_reported or (
            now - self._conflict_since <= self.settings.master_timeout
        ):
            return []
        self._conflict_reported = True
        return [MastersConflict(tuple(sorted(masters)), self._conflict_since)]

    def set_master(self, is_master: bool) -> list[Event]:
        """Under an external election: say in our hellos whether we are master.

        Returns a L{SendHello} to every destination when that changes.
        """
        if not self.external_election:
            raise ValueError("set_master is for an external election")
        if is_master == self._is_master:
            return []
        self._is_master = is_master
        return [SendHello()]

    def promote(self) -> list[Event]:
        """Become master unconditionally (node-discover's C{promote()})."""
        if self.settings.client:
            raise ValueError("a client-only node cannot become master")
        self._is_master = True
        self._eligible = True
        return [Promotion(self.me(), "manual"), SendHello()]

    def demote(self, permanent: bool = False) -> list[Event]:
        """Stop being master; with C{permanent}, also stop being eligible."""
        self._is_master = False
        self._eligible = not permanent and not self.settings.client
        return [Demotion(self.me(), "manual"), SendHello()]

    # -- the rules -------------------------------------------------------------

    def _bury(self, member_id: str, record: _Record, now: float) -> None:
        """Remember a removed member's last sequence number (and boot)."""
        self._tombstones[member_id] = (record.seq, now)
        if record.boot is not None:
            self._tomb_boots[member_id] = record.boot
        if self.authority is not None:
            self.authority.removed(member_id)

    def _new_boot(self, member_id: str, record: _Record | None, boot: bytes) -> None:
        """A sealed hello from C{boot}: if that id ran another boot before, it
        restarted, and its sequence numbers start again."""
        if record is not None:
            if record.boot is not None and record.boot != boot:
                record.seq = None
        elif self._tomb_boots.get(member_id, boot) != boot:
            self._tombstones.pop(member_id, None)
            del self._tomb_boots[member_id]

    def _authority(self) -> RegistryAuthority | None:
        """The registry's authority, unless static peers make a mixed cluster."""
        return None if self.static_peers else self.authority

    def _in_early_phase(self, now: float) -> bool:
        return now < self.started_at + self.settings.check_interval

    def _beats(self, record: _Record) -> bool:
        """§6.2 item 1: r beats me (use instead of "weight > my weight")."""
        weight = record.weight
        if weight > self.settings.weight:
            return True
        if weight == self.settings.weight:
            return record.marker is None or record.id < self.iid
        return False

    def _check(self, now: float) -> list[Event]:
        """Steps 1-5 of node-discover's check."""
        events: list[Event] = []
        for member_id, record in list(self._records.items()):
            limit = (
                self.settings.master_timeout
                if record.is_master
                else self.settings.node_timeout
            )
            if now - record.last_seen > limit:
                del self._records[member_id]
                self._bury(member_id, record, now)
                events.append(Removed(record.member(), "timeout"))
        return events + self._elect(now)

    def _elect(self, now: float) -> list[Event]:
        """Steps 2-5 (the early rule replaces step 5 before C{check_interval})."""
        if self.external_election:
            return []
        records = list(self._records.values())
        masters = [
            r
            for r in records
            if r.is_master and now - r.last_seen < self.settings.master_timeout
        ]
        heavier_masters = sum(1 for r in masters if self._beats(r))
        heavier_candidate = any(
            self._beats(r) and r.is_eligible and not r.is_master for r in records
        )
        required = self.settings.masters_required
        if self._is_master:
            if heavier_masters >= required:
                self._is_master = False
                return [Demotion(self.me(), "check"), SendHello()]
            return []
        if len(masters) >= required or not self._eligible or heavier_candidate:
            return []
        if self.waiting_for_listing(now):
            return []
        if not self.listed:
            reason = "unlisted"
        elif not self._in_early_phase(now):
            reason = "check"
        elif self._early_rule_holds(now):
            reason = "early"
        else:
            return []
        self._is_master = True
        self._eligible = True
        return [Promotion(self.me(), reason), SendHello()]

    def _early_rule_holds(self, now: float) -> bool:
        """Conditions (a) and (b) of the early election (module docstring)."""
        settings = self.settings
        if not settings.early_election or settings.masters_required != 1:
            return False
        if now < self.started_at + settings.early_delay:
            return False
        if not self.early_election_possible or self._own_index is None:
            return False
        for member_id, record in self._records.items():
            if (record.is_master or record.is_eligible) and (
                member_id not in self._registry
            ):
                return False
        for member_id in self._registry:
            heard = self._records.get(member_id)
            marker = None if heard is None else heard.marker
            if marker is None or marker.hw is None or marker.hw < self._own_index:
                return False
        return True

    def _heard_watermark(self) -> int | None:
        """The largest k <= view_index with every view member <= k in our table."""
        if self._view_index is None:
            return None
        unheard = [i for m, i in self._registry.items() if m not in self._records]
        if unheard:
            return min(self._view_index, min(unheard) - 1)
        return self._view_index

    def _ack_events(self) -> list[Event]:
        """Targeted hellos to members our watermark has just come to cover."""
        hw = self._heard_watermark()
        old, self._acked_hw = self._acked_hw, hw
        if hw is None or (old is not None and hw <= old):
            return []
        low = -math.inf if old is None else old
        events: list[Event] = []
        for member_id, index in self._registry.items():
            record = self._records.get(member_id)
            if record is not None and low < index <= hw:
                events.append(SendHello((record.address, record.port)))
        return events


def _finish(events: list[Event]) -> list[Event]:
    """Drop duplicate hello requests; a hello to all covers the targeted ones.

    The adapter handles every event after the call returns, so all the hellos carry
    the final state and only their destinations matter.
    """
    broadcast = any(isinstance(e, SendHello) and e.destination is None for e in events)
    seen: set[Source | None] = set()
    result: list[Event] = []
    for event in events:
        if isinstance(event, SendHello):
            if event.destination in seen or (broadcast and event.destination):
                continue
            seen.add(event.destination)
        result.append(event)
    return result
