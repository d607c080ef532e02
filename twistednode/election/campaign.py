# -*- test-case-name: tests.election.test_campaign -*-
"""The leased election's Twisted adapter: L{LeaseElection} over a registry backend.

It lists the cluster's directory, watches the C{master} key alone (a join or a
leave below the directory does not wake it), and tells the state machine; it sends
the creates, renewals and the resign the machine asks for, and reports what became
of them; it wakes at the machine's next deadline.
Times given to the machine are read from C{monotonic} (a clock that no wall-clock
step moves); timers run on the reactor.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol, TypeVar

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistednode.election.lease import (
    Action,
    Campaign,
    Elected,
    Holder,
    LeaseElection,
    MasterChanged,
    Renew,
    Resign,
    SteppedDown,
)
from twistednode.registry.backend import (
    BackendError,
    Change,
    Listing,
    RecordExists,
    RecordMissing,
    RegistryBackend,
    WatchTimedOut,
)
from twistednode.registry.backoff import Backoff

_T = TypeVar("_T")

#: The master key's name in the cluster's directory.
MASTER = "master"


class CampaignListener(Protocol):
    """Who hears how the election goes (the node)."""

    def elected(self, epoch: int) -> None: ...

    def stepped_down(self, epoch: int, reason: str) -> None: ...

    def master_changed(self, holder: Holder | None) -> None: ...


def master_key(cluster: str) -> str:
    """The registry key the master holds."""
    return f"/twistednode/{cluster}/{MASTER}"


def holder_in(listing: Listing) -> Holder | None:
    """The master key's holder in a listing of the cluster's directory."""
    for entry in listing.entries:
        if entry.name == MASTER and entry.value:
            return Holder(entry.value, entry.created_index)
    return None


def holder_after(change: Change) -> Holder | None:
    """The holder after a change of the master key."""
    if change.kind == "put" and change.value:
        return Holder(change.value, change.created_index)
    return None


@define(eq=False)
class LeaseCampaign(Service):
    """Run one node's candidacy for the cluster's master key.

    @ivar head_start: how long to wait after seeing a vacancy before campaigning
        (the node gives lighter nodes a longer one).
    @ivar watch_timeout: how long one watch waits before it is sent again. The
        master key is quiet for long stretches, and the next watch goes on from
        the index etcd answered the last one with: that index must still be in
        etcd's 1000-event history, which the TTL refreshes of a hundred nodes
        (some 25 a second in the scale benchmark) fill in under a minute: 20 s.
    """

    log = Logger()

    backend: RegistryBackend
    cluster: str
    node_id: str
    clock: IReactorTime
    monotonic: Callable[[], float]
    listener: CampaignListener
    ttl: int
    eligible: bool = True
    head_start: Callable[[], float] = lambda: 0.0
    watch_timeout: float = 20.0
    backoff: Backoff = field(factory=lambda: Backoff(initial=0.1, maximum=2.0))
    stop_timeout: float = 1.0
    random: Callable[[], float] = random.random

    election: LeaseElection = field(init=False)
    _timer: IDelayedCall | None = field(default=None, init=False)
    _watching: Deferred[None] | None = field(default=None, init=False)
    _in_flight: set[Deferred[None]] = field(factory=set, init=False)
    _failing: bool = field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self.election = LeaseElection(self.node_id, float(self.ttl))
        self.election.eligible = self.eligible

    @property
    def key(self) -> str:
        return master_key(self.cluster)

    @property
    def directory(self) -> str:
        return f"/twistednode/{self.cluster}"

    def is_master(self) -> bool:
        """Whether our term is valid now: read from the clock at every call."""
        return self.election.is_master(self.monotonic())

    def valid_for(self) -> float:
        return self.election.valid_for(self.monotonic())

    # -- service -------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._watching = Deferred.fromCoroutine(self._watch_loop())
        self._watching.addErrback(self._loop_failed)

    def stopService(self) -> Deferred[None]:
        """Resign (bounded wait), then stop watching."""
        super().stopService()
        if self._watching is not None:
            self._watching.cancel()
            self._watching = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        resigning = [a for a in self.election.resign(self.monotonic())]
        done = self._carry_out(resigning)
        for d in list(self._in_flight):
            if d not in done:
                d.cancel()
        if not done:
            return Deferred.fromCoroutine(_nothing())
        return Deferred.fromCoroutine(_all(done))

    # -- the registry's side -----------------------------------------------------

    async def _watch_loop(self) -> None:
        attempt = 0
        while self.running:
            asked_at = self.monotonic()
            try:
                listing = await self.backend.list(self.directory)
            except CancelledError:
                return
            except BackendError as e:
                self._warn_once(f"cannot list {self.directory}: {e}")
                await self._sleep(self.backoff.delay(attempt, self.random()))
                attempt += 1
                continue
            attempt = 0
            self._recovered()
            self._observed(holder_in(listing), listing.index, asked_at)
            await self._follow(listing.index + 1)

    async def _follow(self, index: int) -> None:
        """Watch from C{index} until a gap; then return so the loop lists again."""
        while self.running:
            try:
                changes = await self.backend.watch(
                    self.directory, index, self.watch_timeout, only=MASTER
                )
            except CancelledError:
                raise
            except WatchTimedOut:
                continue
            except BackendError as e:
                self.log.debug("master watch ended: {error}", error=e)
                return
            for change in changes:
                index = max(index, change.index + 1)
                if change.name == MASTER or change.name == "":
                    self._observed(holder_after(change), change.index)

    def _observed(
        self, holder: Holder | None, index: int, asked_at: float | None = None
    ) -> None:
        now = self.monotonic()
        self.apply(
            self.election.observed(now, holder, index, self.head_start(), asked_at)
        )

    # -- carrying out ------------------------------------------------------------

    def apply(self, actions: list[Action]) -> None:
        """Carry out C{actions}, then sleep until the machine's next deadline."""
        self._carry_out(actions)
        self._schedule()

    def _carry_out(self, actions: list[Action]) -> list[Deferred[None]]:
        sent = []
        for action in actions:
            if isinstance(action, Campaign):
                sent.append(self._campaign(action.token))
            elif isinstance(action, Renew):
                sent.append(self._renew(action.token))
            elif isinstance(action, Resign):
                sent.append(self._resign(action.epoch))
            elif isinstance(action, Elected):
                self.log.info("elected master, epoch {epoch}", epoch=action.epoch)
                self._tell(self.listener.elected, action.epoch)
            elif isinstance(action, SteppedDown):
                self.log.info(
                    "no longer master (epoch {epoch}): {reason}",
                    epoch=action.epoch,
                    reason=action.reason,
                )
                self._tell(self.listener.stepped_down, action.epoch, action.reason)
            elif isinstance(action, MasterChanged):
                self._tell(self.listener.master_changed, action.holder)
        return sent

    def _tell(self, call: Callable[..., None], *args: object) -> None:
        try:
            call(*args)
        except Exception:
            self.log.failure("election listener failed")

    def _schedule(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if not self.running:
            return
        deadline = self.election.next_deadline()
        if deadline is None:
            return
        delay = max(0.0, deadline - self.monotonic())
        self._timer = self.clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.apply(self.election.tick(self.monotonic()))

    def _request(
        self,
        d: Deferred[_T],
        timeout: float,
        ok: Callable[[_T], None],
        failed: Callable[[Failure], None],
    ) -> Deferred[None]:
        d.addTimeout(timeout, self.clock)
        done: Deferred[None] = d.addCallbacks(ok, failed)
        self._in_flight.add(done)

        def finished(result: object) -> None:
            self._in_flight.discard(done)

        done.addBoth(finished)
        return done

    def _campaign(self, token: int) -> Deferred[None]:
        def won(epoch: int) -> None:
            self.apply(self.election.campaign_won(self.monotonic(), token, epoch))

        def failed(failure: Failure) -> None:
            now = self.monotonic()
            if failure.check(RecordExists):
                self.apply(self.election.campaign_lost(now, token))
                return
            if not failure.check(CancelledError):
                self._warn_once(f"cannot campaign for {self.key}: {failure.value}")
            self.apply(self.election.campaign_failed(now, token))

        d = self.backend.create(self.key, self.node_id, self.ttl)
        return self._request(d, self.ttl / 2, won, failed)

    def _renew(self, token: int) -> Deferred[None]:
        def renewed(_: None) -> None:
            self._recovered()
            self.apply(self.election.renewed(self.monotonic(), token))

        def failed(failure: Failure) -> None:
            now = self.monotonic()
            if failure.check(RecordMissing):
                self.log.warn("lost {key}: {error}", key=self.key, error=failure.value)
                self.apply(self.election.renew_lost(now, token))
                return
            if not failure.check(CancelledError):
                self._warn_once(f"cannot renew {self.key}: {failure.value}")
            self.apply(self.election.renew_failed(now, token))

        d = self.backend.refresh_if(self.key, self.node_id, self.ttl)
        return self._request(d, self.ttl / 3, renewed, failed)

    def _resign(self, epoch: int) -> Deferred[None]:
        def resigned(_: None) -> None:
            self.log.info("resigned {key} (epoch {epoch})", key=self.key, epoch=epoch)

        def failed(failure: Failure) -> None:
            self.log.warn(
                "could not resign {key}: {error}; it expires within the TTL",
                key=self.key,
                error=failure.value,
            )

        d = self.backend.delete_if(self.key, self.node_id, epoch)
        return self._request(d, self.stop_timeout, resigned, failed)

    # -- small things ------------------------------------------------------------

    def _sleep(self, seconds: float) -> Deferred[None]:
        def cancel(_: Deferred[None]) -> None:
            if call.active():
                call.cancel()

        def fire() -> None:
            if not d.called:
                d.callback(None)

        d: Deferred[None] = Deferred(cancel)
        call = self.clock.callLater(seconds, fire)
        return d

    def _warn_once(self, message: str) -> None:
        if not self._failing:
            self._failing = True
            self.log.warn("election: {message}", message=message)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            self.log.info("election: the registry answers again")

    def _loop_failed(self, failure: Failure) -> None:
        if not failure.check(CancelledError):
            self.log.failure("master watch loop ended", failure)


async def _nothing() -> None:
    return None


async def _all(waiting: list[Deferred[None]]) -> None:
    for d in waiting:
        try:
            await d
        except (CancelledError, TimeoutError):
            pass
