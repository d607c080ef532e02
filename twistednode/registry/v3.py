# -*- test-case-name: tests.registry.test_v3,tests.etcd.test_v3 -*-
"""
The registry backend over etcd's v3 API
(L{twistednode.registry.backend.RegistryBackend}).

 - The record lives under a lease: C{create} grants one (C{/v3/lease/grant}) and
   writes the key in a transaction that requires it to be absent; C{replace} writes
   it in a transaction that requires it to be present (the create revision is kept);
   C{refresh} is a keepalive (C{/v3/lease/keepalive}) plus a check that the key is
   still ours. A lease that is gone (expired while etcd was out of reach, or
   revoked) is L{RecordMissing}, the same as an expired v2 key, so the registry
   grants a new one and writes the record again.
 - C{list} is a prefix range; its index is the header revision and each entry's
   created index its C{create_revision}.
 - C{watch} keeps one C{/v3/watch} stream per directory open across calls (v3
   watches stream, unlike v2 long-polls): events are buffered as they arrive and
   each call returns those at or after its C{from_index}, so a caller asking for
   "the next revision" never misses one. A compacted start revision is
   L{HistoryLost}; a stream cancelled by etcd, broken or ended is L{WatchEnded}.
 - C{delete} (a clean stop) deletes the key together with a leaving marker in one
   revision, then revokes the lease; watchers use the marker to report "deleted"
   rather than "expired" (see L{twistednode.registry.v3codec}).

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from functools import partial
from typing import Any, ClassVar, Literal, TypeVar

from attrs import define, field, frozen
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistednode.etcd.base import EtcdError, EtcdUnavailable, JsonLines
from twistednode.etcd.v3 import (
    NOT_FOUND,
    OUT_OF_RANGE,
    PERMISSION_DENIED,
    EtcdAuthFailed,
    EtcdV3Client,
    EtcdV3Error,
    grpc_error,
    says_token_is_bad,
)
from twistednode.registry.backend import (
    BackendError,
    BackendUnavailable,
    Change,
    HistoryLost,
    Listing,
    RecordExists,
    RecordMissing,
    WatchEnded,
    WatchTimedOut,
)
from twistednode.registry.stream import WatchStream, watch_path
from twistednode.registry.v3codec import (
    LEAVING,
    KeyValue,
    changes,
    created_is,
    delete_op,
    encode,
    entries,
    header_revision,
    integer,
    kvs,
    prefix_range,
    put_op,
    range_op,
    value_is,
)

_T = TypeVar("_T")


class AuthenticationFailed(BackendError):
    """etcd refused the configured user and password (v3 auth)."""


class BadAnswer(BackendError):
    """etcd answered something that is not what the v3 gateway sends."""


@frozen
class Lease:
    """A lease we were granted, and the TTL we asked for."""

    id: int
    ttl: int


@define(eq=False)
class EtcdV3Backend:
    """L{twistednode.registry.backend.RegistryBackend} over the etcd v3 JSON gateway."""

    log = Logger()
    api: ClassVar[Literal["v3"]] = "v3"

    client: EtcdV3Client
    _clock: IReactorTime
    _leases: dict[str, Lease] = field(factory=dict, init=False)
    _watches: dict[str, WatchStream] = field(factory=dict, init=False)
    _in_flight: set[Deferred[Any]] = field(factory=set, init=False)

    @property
    def endpoint(self) -> str:
        return self.client.url

    def lease_of(self, key: str) -> Lease | None:
        """The lease our record at C{key} is attached to, if we hold one."""
        return self._leases.get(key)

    # -- RegistryBackend -----------------------------------------------------------

    def create(self, key: str, value: str, ttl: int) -> Deferred[int]:
        return self._run(self._create(key, value, _ttl(ttl)))

    def replace(self, key: str, value: str, ttl: int) -> Deferred[int]:
        return self._run(self._replace(key, value, _ttl(ttl)))

    def refresh(self, key: str, ttl: int) -> Deferred[None]:
        return self._run(self._refresh(key))

    def delete(self, key: str) -> Deferred[None]:
        return self._run(self._delete(key))

    def refresh_if(self, key: str, value: str, ttl: int) -> Deferred[None]:
        return self._run(self._refresh(key, value))

    def delete_if(self, key: str, value: str, created_index: int) -> Deferred[None]:
        return self._run(self._delete_if(key, value, created_index))

    def list(self, directory: str) -> Deferred[Listing]:
        return self._run(self._list(directory))

    def watch(
        self,
        directory: str,
        from_index: int,
        timeout: float,
        only: str | None = None,
    ) -> Deferred[Sequence[Change]]:
        return self._run(self._watch(directory, from_index, timeout, only))

    def close(self) -> Deferred[None]:
        for d in list(self._in_flight):
            d.cancel()
        for watch in list(self._watches.values()):
            self._drop_watch(watch)
        return self.client.close()

    # -- the record ----------------------------------------------------------------

    async def _grant(self, ttl: int) -> Lease:
        answer = await self.client.call("/v3/lease/grant", {"TTL": ttl})
        problem = answer.get("error")
        if problem:
            raise BackendError(f"etcd granted no lease: {problem}")
        return Lease(integer(answer, "ID"), ttl)

    async def _keepalive(self, lease: Lease) -> int:
        """Renew C{lease}; its remaining TTL, 0 if it no longer exists."""
        answer = await self.client.call("/v3/lease/keepalive", {"ID": str(lease.id)})
        error = grpc_error(answer, 200, self.client.url)
        if error is not None:
            raise error
        result = answer.get("result")
        if not isinstance(result, dict):
            raise BadAnswer(f"keepalive answer has no result: {answer!r:.200}")
        return integer(result, "TTL")

    async def _create(self, key: str, value: str, ttl: int) -> int:
        lease = await self._grant(ttl)
        put = put_op(key, value, lease.id)
        answer = await self._txn([created_is(key, "EQUAL")], [put])
        self._leases[key] = lease  # kept for the replace that follows RecordExists
        if not answer.get("succeeded"):
            raise RecordExists(f"{key} exists")
        return header_revision(answer)

    async def _replace(self, key: str, value: str, ttl: int) -> int:
        lease = self._leases.get(key)
        if lease is None or lease.ttl != ttl:
            lease = self._leases[key] = await self._grant(ttl)
        success = [put_op(key, value, lease.id), range_op(key)]
        try:
            answer = await self._txn([created_is(key, "GREATER")], success)
        except EtcdV3Error as e:
            if e.code != NOT_FOUND:
                raise
            self._leases.pop(key, None)
            raise RecordMissing(f"the lease of {key} is gone: {e.message}") from None
        if not answer.get("succeeded"):
            raise RecordMissing(f"{key} does not exist")
        if await self._keepalive(lease) <= 0:
            self._leases.pop(key, None)
            raise RecordMissing(f"the lease of {key} expired")
        found = _txn_kvs(answer, 1)
        if not found:
            raise RecordMissing(f"{key} vanished while it was written")
        return found[0].create_revision

    async def _refresh(self, key: str, value: str | None = None) -> None:
        lease = self._leases.get(key)
        if lease is None:
            raise RecordMissing(f"no lease is held for {key}")
        if await self._keepalive(lease) <= 0:
            self._leases.pop(key, None)
            raise RecordMissing(f"the lease of {key} expired")
        answer = await self.client.call("/v3/kv/range", {"key": encode(key)})
        found = kvs(answer)
        if not found:
            raise RecordMissing(f"{key} is gone (its lease is alive)")
        if found[0].lease != lease.id:
            raise RecordMissing(f"{key} was rewritten under another lease")
        if value is not None and found[0].value != value:
            raise RecordMissing(f"{key} holds another value")

    async def _delete_if(self, key: str, value: str, created_index: int) -> None:
        lease = self._leases.pop(key, None)
        guard = [value_is(key, value), created_is(key, "EQUAL", created_index)]
        await self._txn(guard, [delete_op(key)])
        if lease is not None:
            try:
                await self.client.call("/v3/lease/revoke", {"ID": str(lease.id)})
            except EtcdV3Error as e:
                if e.code != NOT_FOUND:
                    raise

    async def _delete(self, key: str) -> None:
        lease = self._leases.pop(key, None)
        if lease is None:
            await self.client.call("/v3/kv/deleterange", {"key": encode(key)})
            return
        leaving = [delete_op(key), put_op(key + LEAVING, "", lease.id)]
        try:
            await self._txn([created_is(key, "GREATER")], leaving)
        except EtcdV3Error as e:
            if e.code != NOT_FOUND:
                raise
            # The lease is gone, and with it the key; nothing left to mark.
            return
        try:
            await self.client.call("/v3/lease/revoke", {"ID": str(lease.id)})
        except EtcdV3Error as e:
            if e.code != NOT_FOUND:
                raise

    async def _txn(
        self, compare: Sequence[dict[str, Any]], success: Sequence[dict[str, Any]]
    ) -> dict[str, Any]:
        body = {"compare": [*compare], "success": [*success]}
        return await self.client.call("/v3/kv/txn", body)

    # -- listing and watching ------------------------------------------------------

    async def _list(self, directory: str) -> Listing:
        answer = await self.client.call("/v3/kv/range", prefix_range(directory))
        return Listing(entries(directory, answer), header_revision(answer))

    async def _watch(
        self, directory: str, from_index: int, timeout: float, only: str | None
    ) -> Sequence[Change]:
        deadline = self._clock.seconds() + timeout
        path = watch_path(directory, only)
        watch = self._watches.get(path)
        if watch is not None and not watch.can_serve(from_index, self.client.url):
            self._drop_watch(watch)
            watch = None
        if watch is None:
            watch = WatchStream(directory, from_index, only)
            self._watches[path] = watch
            await self._open(watch)
        while True:
            ready = watch.take(from_index)
            if ready:
                return ready
            if watch.ended is not None:
                self._drop_watch(watch)
                raise watch.ended
            remaining = deadline - self._clock.seconds()
            if remaining <= 0:
                raise WatchTimedOut(f"no change below {directory} in {timeout:g} s")
            waiter: Deferred[None] = Deferred()
            watch.waiter = waiter
            waiter.addTimeout(remaining, self._clock)
            try:
                await waiter
            except TimeoutError:
                raise WatchTimedOut(
                    f"no change below {directory} in {timeout:g} s"
                ) from None

    async def _open(self, watch: WatchStream) -> None:
        keys = (
            prefix_range(watch.directory)
            if watch.only is None
            else {"key": encode(watch.path)}
        )
        request = {
            **keys,
            "start_revision": str(watch.start),
            "prev_kv": True,
        }
        lines = JsonLines(partial(self._message, watch), partial(self._ended, watch))
        watch.lines = lines
        try:
            watch.url = await self.client.stream(
                "/v3/watch", {"create_request": request}, lines
            )
        except BaseException:
            self._drop_watch(watch)
            raise

    def _drop_watch(self, watch: WatchStream) -> None:
        if self._watches.get(watch.path) is watch:
            del self._watches[watch.path]
        watch.end(WatchEnded("watch closed"))

    def _message(self, watch: WatchStream, message: object) -> None:
        error = grpc_error(message, 200, watch.url)
        if error is not None:
            watch.end(WatchEnded(f"watch on {watch.url} failed: {error}"))
            return
        result = message.get("result") if isinstance(message, dict) else None
        if not isinstance(result, dict):
            what = f"bad watch message from {watch.url}: {message!r:.200}"
            watch.end(WatchEnded(what))
            return
        try:
            if result.get("canceled"):
                watch.end(self._cancelled(watch, result))
                return
            events = result.get("events", [])
            if not isinstance(events, list):
                raise ValueError("'events' is not a list")
            found = changes(watch.directory, events)
        except ValueError as e:
            watch.end(WatchEnded(f"bad watch message from {watch.url}: {e}"))
            return
        if found:
            watch.buffer.extend(found)
            watch.wake()

    def _cancelled(self, watch: WatchStream, result: dict[str, Any]) -> BackendError:
        compacted = integer(result, "compact_revision")
        if compacted:
            return HistoryLost(
                f"etcd compacted its history up to revision {compacted}; a watch "
                f"from revision {watch.start} cannot resume"
            )
        reason = result.get("cancel_reason") or "no reason given"
        if says_token_is_bad(str(reason)):
            self.client.forget_token()
        return WatchEnded(f"etcd cancelled the watch: {reason}")

    def _ended(self, watch: WatchStream, reason: Failure) -> None:
        if reason.check(CancelledError):
            watch.end(WatchEnded("watch closed"))
        else:
            why = reason.getErrorMessage()
            watch.end(WatchEnded(f"watch stream from {watch.url} ended: {why}"))

    # -- plumbing --------------------------------------------------------------------

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> Deferred[_T]:
        d = Deferred.fromCoroutine(coroutine)
        self._in_flight.add(d)

        def forget(result: object) -> object:
            self._in_flight.discard(d)
            self._follow_client()
            return result

        d.addBoth(forget)
        return d.addErrback(self._to_backend_error)

    def _follow_client(self) -> None:
        """
        End watch streams on a member the client has moved away from.

        A member cut off without a reset (a partition, a hung host) leaves its
        stream silent; once a keepalive or a listing has moved to another member,
        the watch follows at once rather than after the registry's watch timeout.
        """
        url = self.client.url
        for watch in list(self._watches.values()):
            if watch.url and watch.url != url and watch.ended is None:
                self.log.info(
                    "etcd calls moved from {old} to {new}; watching there too",
                    old=watch.url,
                    new=url,
                )
                watch.end(WatchEnded(f"etcd calls moved from {watch.url} to {url}"))

    def _to_backend_error(self, failure: Failure) -> Failure:
        """Map a client error onto the backend's exceptions; pass the rest on."""
        error = failure.value
        if isinstance(error, BackendError | CancelledError):
            return failure
        if isinstance(error, EtcdUnavailable):
            return Failure(BackendUnavailable(str(error)))
        if isinstance(error, EtcdAuthFailed):
            return Failure(AuthenticationFailed(str(error)))
        if isinstance(error, EtcdV3Error):
            if error.code == OUT_OF_RANGE:
                return Failure(HistoryLost(str(error)))
            if error.code == PERMISSION_DENIED:
                user = self.client.credentials
                who = "anonymous" if user is None else repr(user.user)
                return Failure(BackendError(f"etcd user {who} is not allowed: {error}"))
        if isinstance(error, EtcdError):
            return Failure(BackendError(str(error)))
        if isinstance(error, ValueError):
            return Failure(BadAnswer(f"bad answer from {self.client.url}: {error}"))
        return failure


def _ttl(ttl: int) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
        raise ValueError(f"ttl must be a whole number of seconds >= 1, not {ttl!r}")
    return ttl


def _txn_kvs(answer: dict[str, Any], index: int) -> list[KeyValue]:
    """The kvs of the C{index}-th (range) response of a transaction answer."""
    responses = answer.get("responses")
    if not isinstance(responses, list) or len(responses) <= index:
        raise ValueError("transaction answer lacks its responses")
    item = responses[index]
    found = item.get("response_range") if isinstance(item, dict) else None
    if not isinstance(found, dict):
        raise ValueError("transaction answer lacks the range response")
    return kvs(found)
