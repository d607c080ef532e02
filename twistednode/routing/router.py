# -*- test-case-name: tests.routing.test_router -*-
"""Calls sent to whichever node owns their key, retried until an owner answers.

L{Router.call} runs the service's handler here when this node owns the key, and
otherwise sends the call to the owner (through the C{send} it is given: the
node-to-node transport). The owner checks the key against its own view: if it no
longer owns it, it forwards the call once more (two hops at most) or answers
L{Moved}. A call whose owner cannot be reached, has moved, or is not known yet is
tried again, on the owner the view names then, after a short backoff, until its
deadline; then it fails with the last reason (L{NoOwner}, else L{CallTimedOut}).
A handler that raised (L{HandlerFailed}) or a service nobody handles
(L{UnknownService}) fails the call at once: those are answers, not absences.

Delivery is at least once: a call whose owner died after running the handler and
before answering is run again by the next owner; handlers of calls that must not
repeat should be idempotent on the key (as Elasticsearch's index operation is on a
document id).

Deadlines are read from the injected monotonic clock; waits use the reactor's
C{callLater}.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from attrs import define, evolve, field
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from twistednode.routing.errors import (
    CallError,
    CallTimedOut,
    HandlerFailed,
    Moved,
    NoOwner,
    UnknownService,
    Unreachable,
)
from twistednode.routing.ownership import Key, OwnershipView, key_bytes
from twistednode.routing.request import MAX_HOPS, CallRequest, check_service

Handler = Callable[[Key, Any], Any]
#: send(url, request) -> Deferred firing with the answer, or failing with a CallError.
Send = Callable[[str, CallRequest], "Deferred[Any]"]

DEFAULT_TIMEOUT = 5.0
RETRY_FIRST = 0.05
RETRY_MAX = 0.5
#: Failures after which a call is tried again on the owner the view names then.
RETRIED: tuple[type[CallError], ...] = (Moved, Unreachable, NoOwner, CallTimedOut)


@define
class RouterStats:
    """Counters for /metrics and the status page."""

    local: int = 0
    forwarded: int = 0
    received: int = 0
    retries: int = 0
    failed: dict[str, int] = field(factory=dict)

    def fail(self, kind: str) -> None:
        self.failed[kind] = self.failed.get(kind, 0) + 1


@define(eq=False)
class Router:
    """This node's end of routed calls.

    @ivar node_id: this node's id, as ownership views name it.
    @ivar clock: the reactor's time (for the waits between attempts).
    @ivar monotonic: the clock deadlines are read from.
    @ivar view: the current ownership view.
    @ivar endpoint_of: a member's transport URL, or None when it has none.
    @ivar send: the transport's client (see L{Send}); None: no transport, so only
        keys this node owns can be served.
    @ivar timeout: the default deadline of a call, in seconds.
    """

    log = Logger()

    node_id: str
    clock: IReactorTime
    monotonic: Callable[[], float]
    view: Callable[[], OwnershipView]
    endpoint_of: Callable[[str], str | None]
    send: Send | None = None
    timeout: float = DEFAULT_TIMEOUT
    stats: RouterStats = field(factory=RouterStats)
    _handlers: dict[str, Handler] = field(factory=dict, init=False)

    def handle(self, service: str, handler: Handler) -> Callable[[], None]:
        """Run C{handler(key, payload)} for calls to C{service} this node owns; it
        returns the answer (JSON) or a Deferred of it. Returns an unregister
        function. One handler per service."""
        check_service(service)
        if service in self._handlers:
            raise ValueError(f"service {service!r} already has a handler")
        self._handlers[service] = handler

        def remove() -> None:
            if self._handlers.get(service) is handler:
                del self._handlers[service]

        return remove

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(sorted(self._handlers))

    def call(
        self, service: str, key: Key, payload: Any = None, timeout: float | None = None
    ) -> Deferred[Any]:
        """The answer of C{service}'s handler on the owner of C{key}."""
        check_service(service)
        key_bytes(key)  # a TypeError now, not in a later attempt
        limit = self.timeout if timeout is None else timeout
        if not limit > 0:
            raise ValueError(f"timeout must be above 0, not {timeout!r}")
        return Deferred.fromCoroutine(self._call(service, key, payload, limit))

    async def _call(self, service: str, key: Key, payload: Any, limit: float) -> Any:
        deadline = self.monotonic() + limit
        attempt = 0
        while True:
            owner = self.view().owner(key)
            if owner == self.node_id:
                self.stats.local += 1
                return await self._run(service, key, payload)
            try:
                if owner is None:
                    raise NoOwner("no member owns keys (no node, or only clients)")
                remaining = deadline - self.monotonic()
                request = CallRequest(service, key, payload, 1, remaining, self.node_id)
                self.stats.forwarded += 1
                return await self._send_to(owner, request)
            except RETRIED as e:
                last = e
            except CallError as e:
                self.stats.fail(e.kind)
                raise
            attempt += 1
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                self.stats.fail(last.kind if isinstance(last, NoOwner) else "timed-out")
                if isinstance(last, NoOwner):
                    raise last
                raise CallTimedOut(
                    f"no owner of key {key!r} answered {service!r} within {limit:g} s "
                    f"({attempt} attempts; last: {last})",
                    last.node,
                )
            self.stats.retries += 1
            delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (attempt - 1), remaining)
            await deferLater(self.clock, delay)

    def receive(self, request: CallRequest) -> Deferred[Any]:
        """A call the transport received: run it if we own the key, else forward
        it once more or answer L{Moved}."""
        return Deferred.fromCoroutine(self._receive(request))

    async def _receive(self, request: CallRequest) -> Any:
        self.stats.received += 1
        owner = self.view().owner(request.key)
        if owner == self.node_id:
            return await self._run(request.service, request.key, request.payload)
        if owner is None:
            raise NoOwner("no member owns keys here", self.node_id)
        if request.hops >= MAX_HOPS:
            raise Moved(
                f"node {self.node_id} does not own the key; {owner} does here",
                self.node_id,
            )
        try:
            return await self._send_to(owner, evolve(request, hops=request.hops + 1))
        except Unreachable as e:
            raise Moved(f"the owner here, {owner}, is unreachable: {e}", owner) from e

    def _send_to(self, owner: str, request: CallRequest) -> Deferred[Any]:
        url = self.endpoint_of(owner)
        if url is None or self.send is None:
            raise Unreachable(f"node {owner} has no node-to-node transport", owner)
        return self.send(url, request)

    async def _run(self, service: str, key: Key, payload: Any) -> Any:
        handler = self._handlers.get(service)
        if handler is None:
            self.stats.fail(UnknownService.kind)
            raise UnknownService(
                f"node {self.node_id} has no handler for service {service!r}",
                self.node_id,
            )
        try:
            answer = await maybeDeferred(handler, key, payload)
        except Exception as e:
            self.log.failure(
                "handler of service {service} failed on key {key!r}",
                service=service,
                key=key,
            )
            self.stats.fail(HandlerFailed.kind)
            raise HandlerFailed(
                f"the {service!r} handler on node {self.node_id} raised "
                f"{type(e).__name__}: {e}",
                self.node_id,
            ) from e
        try:
            json.dumps(answer, allow_nan=False)
        except (TypeError, ValueError) as e:
            self.stats.fail(HandlerFailed.kind)
            raise HandlerFailed(
                f"the {service!r} handler on node {self.node_id} answered "
                f"something that is not JSON: {e}",
                self.node_id,
            ) from None
        return answer
