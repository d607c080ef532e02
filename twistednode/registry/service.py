# -*- test-case-name: tests.registry.test_service -*-
"""
The registry: this node's record in etcd, and the peers found there.

L{Registry} is a Twisted service. It writes our L{MemberRecord} under
C{/twistednode/<cluster>/members/<id>} with a TTL and refreshes it every C{ttl / 3}
seconds; it lists the members directory, then watches it from the next index, and
reports every join, change and leave to a L{RegistryListener}. On any gap (history
cleared, a watch ended by the server, a broken connection, a watch timeout) it lists
again and diffs, so nothing is missed. While the store is unreachable it keeps the
last known peers and retries with jittered backoff; when the store is back it
re-creates the record if it expired. On a clean stop it deletes the record.

C{view_changed} takes our own index from the view itself: it stays None until our
record is in the view, so whenever it is set, C{own_index <= view_index} and the view
holds every record created before ours (the early election relies on this).

The bookkeeping is the pure L{twistednode.registry.view.MemberView}: listings and
changes go in, peer events come out. L{Registry} only moves data between it, the
backend and the listener.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from attrs import asdict, define, field
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistednode.registry.backend import (
    BackendError,
    Change,
    HistoryLost,
    Listing,
    RecordExists,
    RecordMissing,
    RegistryBackend,
    WatchEnded,
    WatchTimedOut,
)
from twistednode.registry.backoff import Backoff
from twistednode.registry.record import MemberRecord, check_cluster_name
from twistednode.registry.view import (
    MAX_MEMBERS,
    MAX_RECORD_BYTES,
    MemberView,
    PeerAdded,
    PeerChanged,
    PeerEvent,
    RemovalReason,
    ViewUpdate,
)

__all__ = [
    "Registry",
    "RegistryListener",
    "RegistryStats",
    "RemovalReason",
]


class RegistryListener(Protocol):
    """What the registry tells the node (implemented by the node)."""

    def peer_added(self, record: MemberRecord, created_index: int) -> None:
        """A peer's record appeared (C{created_index}: its etcd createdIndex)."""

    def peer_changed(self, record: MemberRecord) -> None:
        """A known peer rewrote its record (new address, port or advertisement)."""

    def peer_removed(self, record_id: str, reason: RemovalReason) -> None:
        """A peer's record is gone; see L{RemovalReason}."""

    def view_changed(
        self, members: Mapping[str, int], view_index: int, own_index: int | None
    ) -> None:
        """
        After every list or watch step: every valid record (ours included) as
        id -> createdIndex, the store index the view is complete up to, and the
        createdIndex of our own record in this view (None while it is not in it).
        """


# -- the service ---------------------------------------------------------------------


def _check_cluster(instance: object, attribute: object, value: Any) -> None:
    check_cluster_name(value)


def _check_ttl(instance: object, attribute: object, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"ttl must be a whole number of seconds >= 1, not {value!r}")


def _check_seconds(instance: object, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name.lstrip('_')} must be > 0 s, not {value!r}")
    if value == float("inf"):
        raise ValueError(f"{attribute.name.lstrip('_')} must be finite")


@define
class RegistryStats:
    """Counters for the status API."""

    lists: int = 0
    watch_restarts: int = 0
    events: int = 0
    errors: int = 0
    refreshes: int = 0
    recreations: int = 0
    rewrites: int = 0
    rejected: int = 0


@define(eq=False, kw_only=True)
class Registry(Service):
    """
    Keep this node's record alive in the store and report the other records.

    @param backend: the store (L{twistednode.registry.backends.make_backend}: etcd v2
    or v3).
    @param cluster: the cluster name; records live under
        C{/twistednode/<cluster>/members/}.
    @param listener: told about peers and the view (L{RegistryListener}).
    @param clock: for refresh timers, backoff and bounded waits.
    @param record: our record; may be given later with L{set_record} (once the UDP
        socket is bound), and replaced at any time (the stored record is rewritten).
    @param ttl: seconds the record outlives its last refresh.
    @param max_members: at most this many records are taken from the members
        directory (ours included); the others are refused, one warning each.
    @param max_record_bytes: a peer's record above this size is refused.
    """

    log = Logger()

    _backend: RegistryBackend
    _cluster: str = field(validator=_check_cluster)
    _listener: RegistryListener
    _clock: IReactorTime
    _record: MemberRecord | None = None
    _ttl: int = field(default=10, validator=_check_ttl)
    _max_members: int = MAX_MEMBERS
    _max_record_bytes: int = MAX_RECORD_BYTES
    _watch_timeout: float = field(default=60.0, validator=_check_seconds)
    _stop_timeout: float = field(default=2.0, validator=_check_seconds)
    _backoff: Backoff = field(factory=Backoff)
    _random: Callable[[], float] = random.random

    stats: RegistryStats = field(factory=RegistryStats, init=False)
    last_error: str | None = field(default=None, init=False)
    _view: MemberView | None = field(default=None, init=False)
    _registered: int | None = field(default=None, init=False)
    _ever_registered: bool = field(default=False, init=False)
    _create_sent: bool = field(default=False, init=False)
    _dirty: bool = field(default=False, init=False)
    _listed: bool = field(default=False, init=False)
    _failing: set[str] = field(factory=set, init=False)
    _generation: int = field(default=0, init=False)
    _tasks: list[Deferred[None]] = field(factory=list, init=False)
    _nap: Deferred[None] | None = field(default=None, init=False)
    _logged_rejects: dict[str, str] = field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        if self._record is not None:
            self._view = self._new_view(self._record.id)

    # -- what the node and the status API read --------------------------------------

    @property
    def directory(self) -> str:
        """The members directory of our cluster."""
        return f"/twistednode/{self._cluster}/members"

    @property
    def record(self) -> MemberRecord | None:
        """Our record as last set."""
        return self._record

    @property
    def state(self) -> str:
        """One of "stopped", "unreachable", "registering" or "watching"."""
        if not self.running:
            return "stopped"
        if self._failing:
            return "unreachable"
        if self._registered is None or not self._listed:
            return "registering"
        return "watching"

    @property
    def endpoint(self) -> str:
        """The store URL in use."""
        return self._backend.endpoint

    @property
    def own_index(self) -> int | None:
        """The createdIndex of our record as the store last confirmed it."""
        return self._registered

    @property
    def view_index(self) -> int:
        """The store index the view of the members is complete up to."""
        return 0 if self._view is None else self._view.index

    @property
    def peers(self) -> dict[str, MemberRecord]:
        """The last known peers (kept while the store is unreachable)."""
        return {} if self._view is None else self._view.peers()

    @property
    def members(self) -> dict[str, int]:
        """Every valid record in the view (ours included) -> createdIndex."""
        return {} if self._view is None else self._view.created_indexes()

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary for the status API."""
        return {
            "state": self.state,
            "cluster": self._cluster,
            "endpoint": self.endpoint,
            "ttl": self._ttl,
            "ownIndex": self.own_index,
            "viewIndex": self.view_index,
            "peers": {
                member_id: {
                    "address": record.address,
                    "port": record.port,
                    "hostName": record.host_name,
                }
                for member_id, record in sorted(self.peers.items())
            },
            "counters": asdict(self.stats),
            "lastError": self.last_error,
        }

    # -- control ------------------------------------------------------------------

    def set_record(self, record: MemberRecord) -> None:
        """
        Set or replace our record (its id may not change).

        Before the first record the service waits; afterwards the stored value is
        rewritten (keeping its createdIndex, so the election order is unchanged).
        """
        if self._record is not None and record.id != self._record.id:
            raise ValueError(
                f"the record id is fixed ({self._record.id}), not {record.id}"
            )
        if record == self._record:
            return
        self._record = record
        if self._view is None:
            self._view = self._new_view(record.id)
        if self._registered is not None:
            self._dirty = True
        if self.running:
            if self._tasks:
                self._wake()
            else:
                self._start_tasks()

    def _new_view(self, own_id: str) -> MemberView:
        return MemberView(
            own_id,
            max_record_bytes=self._max_record_bytes,
            max_members=self._max_members,
        )

    def startService(self) -> None:
        super().startService()
        if self._record is not None:
            self._start_tasks()

    def stopService(self) -> Deferred[None]:
        """Stop the loops, delete our record (bounded wait), close the backend."""
        super().stopService()
        self._generation += 1
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        return Deferred.fromCoroutine(self._shutdown())

    async def _shutdown(self) -> None:
        if self._record is not None and (self._create_sent or self._registered):
            key = self._key(self._record)
            d = self._backend.delete(key)
            d.addTimeout(self._stop_timeout, self._clock)
            try:
                await d
            except (BackendError, TimeoutError, CancelledError) as e:
                self.log.warn("could not delete {key}: {error}", key=key, error=e)
            else:
                self.log.info("deleted {key}", key=key)
        self._registered = None
        self._ever_registered = False
        self._create_sent = False
        self._dirty = False
        self._failing.clear()
        try:
            await self._backend.close()
        except Exception:
            self.log.failure("closing the registry backend")

    # -- internals ----------------------------------------------------------------

    def _key(self, record: MemberRecord) -> str:
        return f"{self.directory}/{record.id}"

    def _live(self, generation: int) -> bool:
        return bool(self.running) and generation == self._generation

    def _start_tasks(self) -> None:
        generation = self._generation
        self._listed = False
        # The listing is asked for first, so that etcd serves it before it tells
        # every watcher of our new record: a joining node then knows its peers
        # when their first hellos come, instead of refusing those it has not
        # listed yet (etcd answered the listing only after that fan-out).
        for loop in (self._watch_loop, self._record_loop):
            task = Deferred.fromCoroutine(loop(generation))
            task.addErrback(self._task_failed)
            self._tasks.append(task)

    def _task_failed(self, failure: Failure) -> None:
        if not failure.check(CancelledError):
            self.log.failure("registry loop ended", failure)

    def _delay(self, attempt: int) -> float:
        return self._backoff.delay(attempt, self._random())

    def _sleep(self, seconds: float) -> Deferred[None]:
        def cancel(_: Deferred[None]) -> None:
            if call.active():
                call.cancel()

        def fire() -> None:
            if not d.called:
                d.callback(None)

        d: Deferred[None] = Deferred(cancel)
        call = self._clock.callLater(seconds, fire)
        return d

    def _wake(self) -> None:
        """End the record loop's wait now (a new record to write)."""
        nap = self._nap
        if nap is not None and not nap.called:
            nap.cancel()

    def _failed(self, where: str, error: BaseException, step: str) -> None:
        """Count a failed C{step} of the C{where} loop (call it from the except
        clause: an error that is not a BackendError is logged with its traceback).
        """
        if not isinstance(error, BackendError):
            self.log.failure("registry {step}", step=step)
        self.stats.errors += 1
        self.last_error = f"{where}: {error}"
        if where not in self._failing:
            self.log.warn("registry {where} failed: {error}", where=where, error=error)
        self._failing.add(where)

    def _recovered(self, where: str) -> None:
        if where in self._failing:
            self._failing.discard(where)
            self.log.info("registry {where} works again", where=where)

    async def _record_loop(self, generation: int) -> None:
        attempt = 0
        while self._live(generation):
            record = self._record
            assert record is not None
            key = self._key(record)
            delay = self._ttl / 3
            try:
                await self._record_step(record, key)
            except CancelledError:
                return
            except RecordMissing:
                if not self._live(generation):
                    return
                self.log.warn("our record {key} is gone; creating it again", key=key)
                self._registered = None
                continue
            except Exception as e:
                if not self._live(generation):
                    return
                self._failed("record", e, "record step")
                delay = min(self._delay(attempt), self._ttl / 3)
                attempt += 1
            else:
                attempt = 0
                self._recovered("record")
                if self._dirty or self._registered is None:
                    continue
            if not self._live(generation):
                return
            self._nap = self._sleep(delay)
            try:
                await self._nap
            except CancelledError:
                pass  # woken by set_record, or stopped (checked by the loop)
            finally:
                self._nap = None

    async def _record_step(self, record: MemberRecord, key: str) -> None:
        """One write of C{record}: create it (or take it over), rewrite it if it
        changed, or refresh its TTL."""
        value = record.to_json()
        if self._registered is None:
            self._create_sent = True
            try:
                index = await self._backend.create(key, value, self._ttl)
            except RecordExists:
                index = await self._backend.replace(key, value, self._ttl)
            if self._ever_registered:
                self.stats.recreations += 1
            self.log.info("registered {key} ({index})", key=key, index=index)
            self._registered = index
            self._ever_registered = True
            self._dirty = self._record != record
        elif self._dirty:
            self._dirty = False
            try:
                self._registered = await self._backend.replace(key, value, self._ttl)
            except BaseException:
                self._dirty = True
                raise
            self.stats.rewrites += 1
            self._dirty = self._dirty or self._record != record
        else:
            await self._backend.refresh(key, self._ttl)
            self.stats.refreshes += 1

    async def _watch_loop(self, generation: int) -> None:
        """List, then watch from the listing's index; list again on any gap.

        Back-to-back restarts (a watch that ends or fails without any change in
        between) wait with backoff from the second on, so a store that ends every
        watch at once is not hammered.
        """
        attempt = 0
        streak: int | None = 0
        while streak is not None and self._live(generation):
            try:
                if streak > 1:
                    await self._sleep(self._delay(streak - 2))
                listing = await self._backend.list(self.directory)
            except CancelledError:
                return
            except Exception as e:
                if not self._live(generation):
                    return
                self._failed("watch", e, "list")
                try:
                    await self._sleep(self._delay(attempt))
                except CancelledError:
                    return
                attempt += 1
                continue
            if not self._live(generation):
                return
            attempt = 0
            self._apply_listing(listing)
            streak = await self._follow(generation, listing.index + 1, streak)

    def _apply_listing(self, listing: Listing) -> None:
        self._recovered("watch")
        self.stats.lists += 1
        self._listed = True
        self._applied(self._view_().apply_listing(listing))
        if self._registered is not None and listing.index >= self._registered:
            own = self._view_().members.get(self._view_().own_id)
            if own is None:
                self._own_record_lost()
            elif self._record is not None and own.record != self._record:
                self._check_own_value(own.record.to_json())
        self._view_changed()

    async def _follow(
        self, generation: int, next_index: int, streak: int
    ) -> int | None:
        """Watch from C{next_index} until the watch must restart.

        Returns the restart streak (0 after a change or a quiet timeout, one more
        after an end or a failure), or None once the service has stopped.
        """
        while self._live(generation):
            try:
                changes = await self._backend.watch(
                    self.directory, next_index, self._watch_timeout
                )
            except CancelledError:
                return None
            except WatchTimedOut:
                streak = 0
            except (HistoryLost, WatchEnded) as e:
                streak += 1
                self.log.info("watch restarts: {error}", error=e)
            except Exception as e:
                streak += 1
                if self._live(generation):
                    self._failed("watch", e, "watch")
            else:
                if not self._live(generation):
                    return None
                streak = 0
                for change in changes:
                    self.stats.events += 1
                    self._applied(self._view_().apply_change(change))
                    self._check_own_change(change)
                    next_index = max(next_index, change.index + 1)
                self._view_changed()
                continue
            self.stats.watch_restarts += 1
            return streak
        return None

    def _view_(self) -> MemberView:
        assert self._view is not None
        return self._view

    def _check_own_change(self, change: Change) -> None:
        record = self._record
        if record is None or self._registered is None:
            return
        if change.kind == "put" and change.name == record.id:
            self._check_own_value(change.value)
            return
        if change.kind == "put" or change.name not in ("", record.id):
            return
        if change.name == "" or change.created_index == self._registered:
            self._own_record_lost()

    def _check_own_value(self, value: str | None) -> None:
        """Someone else wrote our key: write our record back (once per change)."""
        record = self._record
        assert record is not None
        try:
            stored = MemberRecord.from_json(value or "")
        except ValueError:
            return  # an invalid value: _applied has marked it dirty already
        if stored == record or self._dirty:
            return
        self.log.warn(
            "our record {id} was changed by someone else; writing it back",
            id=record.id,
        )
        self._dirty = True
        self._wake()

    def _own_record_lost(self) -> None:
        self.log.warn("our record left the members directory; creating it again")
        self._registered = None
        self._wake()

    def _applied(self, update: ViewUpdate) -> None:
        record = self._record
        for name, why in update.rejected:
            self.stats.rejected += 1
            if self._logged_rejects.get(name) != why:
                self._logged_rejects[name] = why
                self.log.warn("ignoring {key}: {why}", key=name, why=why)
            if record is not None and name == record.id and self._registered:
                self._dirty = True
                self._wake()
        for event in update.events:
            self._notify(event)

    def _notify(self, event: PeerEvent) -> None:
        try:
            if isinstance(event, PeerAdded):
                self._listener.peer_added(event.record, event.created_index)
            elif isinstance(event, PeerChanged):
                self._listener.peer_changed(event.record)
            else:
                self._listener.peer_removed(event.record_id, event.reason)
        except Exception:
            self.log.failure("registry listener failed on {event!r}", event=event)

    def _view_changed(self) -> None:
        view = self._view_()
        try:
            self._listener.view_changed(
                view.created_indexes(), view.index, view.own_index
            )
        except Exception:
            self.log.failure("registry listener failed on view_changed")
