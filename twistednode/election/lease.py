# -*- test-case-name: tests.election.test_lease -*-
"""The leased election as a pure state machine: terms, deadlines, the fencing epoch.

The master is the node that holds the key C{/twistednode/<cluster>/master} in the
registry, created only if absent (v2 C{prevExist=false}, v3 C{create_revision == 0})
with a time to live, renewed while its value is still our id, deleted on resign.
No Twisted, no clock: every method takes C{now}, a reading of a monotonic clock, and
returns the actions that follow; the adapter (L{twistednode.election.campaign})
carries them out and reports back.

Why there are never two masters
===============================

A term is valid until C{S + ttl - margin}, where C{S} is the time we I{sent} the last
create or renewal that the registry accepted. The registry starts the key's time to
live when it applies the request, which is after C{S}, and removes the key no sooner
than C{ttl} after that; another node can create the key only once it is gone. So our
term ends, on our clock, before anyone else's can begin, for clocks that advance at
the same rate within C{margin / ttl}. L{LeaseElection.is_master} compares C{now} with
that deadline every time it is asked, so code that runs after a pause (SIGSTOP, a long
garbage collection, a blocked reactor) sees C{False} before any timer has fired. A
node that cannot reach the registry never starts a term, and one that loses it stops
at its deadline, while the registry still holds the key for it.

The epoch (fencing token) is the key's created index (v2 C{createdIndex}, v3
C{create_revision}): the registry's global index, so a later term always has a larger
one. An application passes it with every write to a resource that refuses an epoch
lower than the highest it has seen (L{twistednode.election.fencing}); that also covers
what no lease can: an administrator deleting the key by hand while its master runs.

Who goes first
==============

Candidates learn of a vacancy from the registry (a listing, or a watched delete or
expiry) and campaign after a head start the adapter computes from the weights
(node-discover's rule: the heavier node first). The head start only orders the race;
the registry's create-if-absent decides it, so safety never depends on it.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import math

from attrs import define, field, frozen

#: The shortest time to live etcd v3 grants a lease (its minimum lease TTL).
MIN_TTL = 2


def default_margin(ttl: float) -> float:
    """How long before the registry could expire the key a master stops: 10 % of
    the TTL, at least 0.1 s, and never more than a quarter of it."""
    return min(ttl / 4, max(0.1, ttl / 10))


@frozen
class Holder:
    """Who holds the master key, and the term's epoch (the key's created index)."""

    node_id: str
    epoch: int


@frozen
class Campaign:
    """Send the create-if-absent of the master key now; report with C{token}."""

    token: int


@frozen
class Renew:
    """Send the renewal of our master key now (guarded by our id); report with
    C{token}, so that a late answer to an older request is not taken for this one."""

    token: int


@frozen
class Resign:
    """Delete the master key if it still holds our id (the term of C{epoch})."""

    epoch: int


@frozen
class Elected:
    """Our term of C{epoch} is valid: we are master."""

    epoch: int


@frozen
class SteppedDown:
    """Our term of C{epoch} stopped being valid.

    C{reason}: "expired" (the deadline passed without a renewal; we may still hold
    the key and continue if a renewal gets through), "lost" (the key is gone or
    someone else's), "resigned" (we gave it up).
    """

    epoch: int
    reason: str


@frozen
class MasterChanged:
    """The registry's master key changed hands: C{holder} is None when vacant."""

    holder: Holder | None


Action = Campaign | Renew | Resign | Elected | SteppedDown | MasterChanged


@define
class LeaseElection:
    """One node's side of the leased election.

    @ivar node_id: the value we write into the master key.
    @ivar ttl: the key's time to live, in seconds.
    @ivar margin: how much earlier than the registry we end a term.
    @ivar retry: how soon to try again when the registry could not be reached.
    @ivar eligible: whether this node may become master (client nodes may not).
    """

    node_id: str
    ttl: float
    margin: float = field()
    retry: float = 0.5
    eligible: bool = True

    _holder: Holder | None = field(default=None, init=False)
    _seen_index: int = field(default=0, init=False)
    _seen_at: float = field(default=-math.inf, init=False)
    _listed: bool = field(default=False, init=False)
    _stopped: bool = field(default=False, init=False)
    _epoch: int | None = field(default=None, init=False)
    _valid_until: float = field(default=-math.inf, init=False)
    _announced: bool = field(default=False, init=False)
    _campaign_at: float | None = field(default=None, init=False)
    _campaign_sent: float | None = field(default=None, init=False)
    _campaign_token: int = field(default=0, init=False)
    _renew_at: float | None = field(default=None, init=False)
    _renew_sent: float | None = field(default=None, init=False)
    _renew_token: int = field(default=0, init=False)
    _terms: int = field(default=0, init=False)
    _step_downs: int = field(default=0, init=False)

    @margin.default
    def _margin(self) -> float:
        return default_margin(self.ttl)

    def __attrs_post_init__(self) -> None:
        if not self.ttl > 0 or not math.isfinite(self.ttl):
            raise ValueError(
                f"the master TTL must be a positive number, not {self.ttl}"
            )
        if not 0 <= self.margin < self.ttl:
            raise ValueError(f"the margin must be in [0, ttl), not {self.margin}")

    # -- queries -------------------------------------------------------------------

    def is_master(self, now: float) -> bool:
        """Whether we hold a term that is valid at C{now} (read at every call)."""
        return self._epoch is not None and now < self._valid_until

    def valid_for(self, now: float) -> float:
        """How many seconds our current term is still valid (0 when not master)."""
        return max(0.0, self._valid_until - now) if self.is_master(now) else 0.0

    @property
    def epoch(self) -> int | None:
        """Our term's epoch while we hold the key, valid or not; else None."""
        return self._epoch

    @property
    def holder(self) -> Holder | None:
        """The master key's holder as last seen in the registry (or by our create)."""
        return self._holder

    @property
    def listed(self) -> bool:
        """Whether we have seen the registry's master key at least once."""
        return self._listed

    @property
    def terms(self) -> int:
        """How many terms this node has started."""
        return self._terms

    @property
    def step_downs(self) -> int:
        """How many times a valid term of ours stopped being valid."""
        return self._step_downs

    def next_deadline(self) -> float | None:
        """When L{tick} next has something to do (None: only input can change it)."""
        due = []
        if self._announced:
            due.append(self._valid_until)
        if self._epoch is not None and self._renew_sent is None:
            due.append(self._renew_at if self._renew_at is not None else -math.inf)
        if self._campaign_at is not None and self._campaign_sent is None:
            due.append(self._campaign_at)
        return min(due) if due else None

    # -- what the registry says ----------------------------------------------------

    def observed(
        self,
        now: float,
        holder: Holder | None,
        index: int,
        head_start: float = 0.0,
        asked_at: float | None = None,
    ) -> list[Action]:
        """The registry shows C{holder} at C{index} (a listing or a watched change).

        An observation older than one already applied (or than our own create) is
        ignored, so a listing that was in flight cannot end a newer term. A listing
        asked for (C{asked_at}) after we learned that index is not stale, though: its
        lower index means the registry was wiped (restarted empty), and it counts.
        """
        if index < self._seen_index and (asked_at is None or asked_at <= self._seen_at):
            return self.tick(now)
        self._seen_index = index
        self._seen_at = now
        self._listed = True
        actions: list[Action] = []
        if holder != self._holder:
            self._holder = holder
            actions.append(MasterChanged(holder))
        if self._epoch is not None and (holder is None or holder.epoch != self._epoch):
            actions += self._end_term("lost")
        if holder is None:
            if self._campaign_at is None and self._campaign_sent is None:
                self._campaign_at = now + max(0.0, head_start)
        elif self._campaign_sent is None:
            self._campaign_at = None
        return actions + self.tick(now)

    # -- what our requests did -----------------------------------------------------

    def _campaign_answered(self, token: int) -> float | None:
        """The send time of the campaign C{token} answers, if it is the one pending."""
        if token != self._campaign_token or self._campaign_sent is None:
            return None
        sent, self._campaign_sent = self._campaign_sent, None
        return sent

    def _renew_answered(self, token: int) -> float | None:
        if token != self._renew_token or self._renew_sent is None:
            return None
        sent, self._renew_sent = self._renew_sent, None
        return sent

    def campaign_won(self, now: float, token: int, epoch: int) -> list[Action]:
        """Our create C{token} made the key, with created index C{epoch}."""
        sent = self._campaign_answered(token)
        if sent is None:
            # Not the pending campaign: a key we hold no term for expires by itself.
            return self.tick(now)
        self._campaign_at = None
        mine = Holder(self.node_id, epoch)
        if self._stopped:
            return [Resign(epoch)]
        if self._seen_index >= epoch and self._holder != mine:
            # The registry has already shown a later change of that very key (a
            # delete, an expiry): the term we won is over before it began.
            return [Resign(epoch), *self.tick(now)]
        self._seen_index = max(self._seen_index, epoch)
        self._seen_at = now
        actions: list[Action] = []
        self._epoch = epoch
        self._terms += 1
        self._valid_until = sent + self.ttl - self.margin
        self._renew_at = sent + self.ttl / 3
        holder = Holder(self.node_id, epoch)
        if holder != self._holder:
            self._holder = holder
            actions.append(MasterChanged(holder))
        if self.is_master(now):
            self._announced = True
            actions.append(Elected(epoch))
        return actions + self.tick(now)

    def campaign_lost(self, now: float, token: int) -> list[Action]:
        """Our create C{token} found the key already there: someone else holds it."""
        if self._campaign_answered(token) is not None:
            self._campaign_at = None
        return self.tick(now)

    def campaign_failed(self, now: float, token: int) -> list[Action]:
        """Our create C{token} got no answer: try again soon if the key still looks
        vacant (if it did make the key, we never renew it and it expires)."""
        if self._campaign_answered(token) is not None:
            if self._holder is None and not self._stopped:
                self._campaign_at = now + self.retry
        return self.tick(now)

    def renewed(self, now: float, token: int) -> list[Action]:
        """The registry accepted our renewal C{token}: the key still holds our id."""
        sent = self._renew_answered(token)
        if sent is None or self._epoch is None:
            return self.tick(now)
        self._valid_until = max(self._valid_until, sent + self.ttl - self.margin)
        self._renew_at = sent + self.ttl / 3
        actions: list[Action] = []
        if not self._announced and self.is_master(now):
            self._announced = True
            actions.append(Elected(self._epoch))
        return actions + self.tick(now)

    def renew_lost(self, now: float, token: int) -> list[Action]:
        """Our renewal C{token} found the key gone or someone else's: the term is
        over."""
        if self._renew_answered(token) is None:
            return self.tick(now)
        return self._end_term("lost") + self.tick(now)

    def renew_failed(self, now: float, token: int) -> list[Action]:
        """Our renewal C{token} got no answer: try again soon (the deadline does not
        move)."""
        if self._renew_answered(token) is not None and self._epoch is not None:
            self._renew_at = now + min(self.retry, self.ttl / 6)
        return self.tick(now)

    def resign(self, now: float) -> list[Action]:
        """Stop for good: end our term and give the key up; never campaign again."""
        self._stopped = True
        self._campaign_at = None
        epoch = self._epoch
        if epoch is None:
            return []
        return [*self._end_term("resigned"), Resign(epoch)]

    def step_down(self, now: float) -> list[Action]:
        """Give up our term (resign the key) but stay a candidate for the next one."""
        epoch = self._epoch
        if epoch is None:
            return self.tick(now)
        return [*self._end_term("resigned"), Resign(epoch), *self.tick(now)]

    def set_eligible(self, now: float, eligible: bool) -> list[Action]:
        """Become a candidate (again) or stop being one; a held term is kept."""
        self.eligible = eligible
        if not eligible:
            self._campaign_at = None
        return self.tick(now)

    # -- time ----------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """Whatever is due at C{now}: the end of a term, a renewal, a campaign."""
        actions: list[Action] = []
        if self._announced and not self.is_master(now):
            assert self._epoch is not None
            self._announced = False
            self._step_downs += 1
            actions.append(SteppedDown(self._epoch, "expired"))
        if (
            self._epoch is not None
            and self._renew_sent is None
            and (self._renew_at is None or self._renew_at <= now)
        ):
            self._renew_sent = now
            self._renew_token += 1
            actions.append(Renew(self._renew_token))
        if (
            self._epoch is None
            and self._campaign_sent is None
            and self._campaign_at is not None
            and self._campaign_at <= now
        ):
            self._campaign_at = None
            if (
                self.eligible
                and self._listed
                and not self._stopped
                and self._holder is None
            ):
                self._campaign_sent = now
                self._campaign_token += 1
                actions.append(Campaign(self._campaign_token))
        return actions

    def _end_term(self, reason: str) -> list[Action]:
        epoch = self._epoch
        if epoch is None:
            return []
        self._epoch = None
        self._valid_until = -math.inf
        self._renew_at = None
        self._renew_sent = None
        if not self._announced:
            return []
        self._announced = False
        self._step_downs += 1
        return [SteppedDown(epoch, reason)]
