"""A deterministic simulation of L{LeaseElection} nodes and a registry with TTL keys.

Real time is one float. The registry applies each request some time after it was
sent (or never), answers some time after that (or never: the sender times out), and
tells every watcher of each change of the master key, in order, after a delay. Nodes
read clocks with their own origin and rate (drift), and may be paused: whatever
arrives during a pause is handled when it ends, as a SIGSTOPped process would. Each
node's mastership is recorded as real-time intervals, so a checker can prove that no
two overlap.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from functools import partial
from typing import Any

from attrs import define, field

from twistednode.election.lease import (
    Action,
    Campaign,
    Holder,
    LeaseElection,
    Renew,
    Resign,
)


@define
class Key:
    holder: str
    epoch: int
    expires_at: float


@define
class Registry:
    """The master key as the registry holds it, and its global index."""

    ttl: float
    index: int = 0
    key: Key | None = None
    watchers: list[Callable[[float, Holder | None, int], None]] = field(factory=list)

    def current(self, now: float) -> Key | None:
        if self.key is not None and self.key.expires_at <= now:
            self._change(self.key.expires_at, None)
        return self.key

    def _change(self, now: float, key: Key | None) -> None:
        self.index += 1
        self.key = key
        holder = None if key is None else Holder(key.holder, key.epoch)
        for watcher in self.watchers:
            watcher(now, holder, self.index)

    def create(self, now: float, node: str) -> int | None:
        if self.current(now) is not None:
            return None
        self._change(now, Key(node, self.index + 1, now + self.ttl))
        return self.index

    def refresh_if(self, now: float, node: str) -> bool:
        key = self.current(now)
        if key is None or key.holder != node:
            return False
        key.expires_at = now + self.ttl
        return True

    def delete_if(self, now: float, node: str, epoch: int) -> None:
        key = self.current(now)
        if key is not None and key.holder == node and key.epoch == epoch:
            self._change(now, None)

    def listing(self, now: float) -> tuple[Holder | None, int]:
        key = self.current(now)
        return (None if key is None else Holder(key.holder, key.epoch)), self.index


@define
class Node:
    name: str
    election: LeaseElection
    origin: float
    rate: float
    pauses: list[tuple[float, float]]
    #: (epoch, start, end) in real time, end extended while the term holds.
    terms: list[list[float]] = field(factory=list)
    watch_delivered: float = 0.0
    #: The one pending timer of this node (a later arm replaces it).
    timer: int = 0

    def clock(self, real: float) -> float:
        return self.origin + real * self.rate

    def real(self, local: float) -> float:
        return (local - self.origin) / self.rate

    def awake_at(self, real: float) -> float:
        """When a message arriving at C{real} is handled (after any pause)."""
        for start, end in self.pauses:
            if start <= real < end:
                return end
        return real


@define
class Simulation:
    """Run C{nodes} candidates against one registry under random delays and pauses."""

    rng: random.Random
    nodes: list[Node]
    registry: Registry
    timeout: float
    horizon: float
    drop: float = 0.1
    max_delay: float = 0.5
    kicks: bool = True
    #: Called with (real time, node, actions) after each step, to debug a run.
    trace: Callable[[float, Node, list[Action]], None] | None = None
    _queue: list[tuple[float, int, Callable[[], None]]] = field(factory=list)
    _seq: Any = field(factory=itertools.count)
    now: float = 0.0

    def at(self, when: float, call: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), call))

    def delay(self) -> float | None:
        """A network delay, or None for a message that is lost."""
        if self.rng.random() < self.drop:
            return None
        return self.rng.random() * self.max_delay

    def run(self) -> None:
        for node in self.nodes:
            self.registry.watchers.append(self._watcher(node))
            self.at(self.rng.random(), partial(self._list, node))
            if self.kicks:
                self.at(self.rng.expovariate(0.3), partial(self._kick, node))
        while self._queue:
            when, _, call = heapq.heappop(self._queue)
            if when > self.horizon:
                break
            self.now = when
            self.registry.current(when)  # expiries happen on time, watched
            call()

    # -- one node's inputs -----------------------------------------------------------

    def _handle(self, node: Node, step: Callable[[float], list[Action]]) -> None:
        """Run C{step} at the node's (paused-aware) time, and carry out its actions."""
        real = node.awake_at(self.now)
        if real > self.now:
            self.at(real, lambda: self._handle(node, step))
            return
        actions = step(node.clock(real))
        if self.trace is not None:
            self.trace(real, node, actions)
        self._record(node, real)
        for action in actions:
            self._send(node, action, real)
        self._arm(node)

    def _record(self, node: Node, real: float) -> None:
        election = node.election
        local = node.clock(real)
        if election.is_master(local):
            until = node.real(local + election.valid_for(local))
            epoch = float(election.epoch or 0)
            if node.terms and node.terms[-1][0] == epoch and node.terms[-1][2] >= real:
                node.terms[-1][2] = max(node.terms[-1][2], until)
            else:
                node.terms.append([epoch, real, until])
        elif node.terms and node.terms[-1][2] > real:
            node.terms[-1][2] = real  # the term ended early (lost, resigned)

    def _arm(self, node: Node) -> None:
        node.timer += 1
        timer = node.timer
        deadline = node.election.next_deadline()
        if deadline is not None:
            when = max(self.now, node.real(deadline) + 1e-9)  # float rounding

            def fire() -> None:
                if node.timer == timer:
                    self._handle(node, node.election.tick)

            self.at(when, fire)

    def _kick(self, node: Node) -> None:
        """Now and then a node steps down and stays a candidate; rarely it resigns
        for good."""
        if self.rng.random() < 0.9:
            self._handle(node, node.election.step_down)
            self.at(self.now + self.rng.expovariate(0.3), lambda: self._kick(node))
        else:
            self._handle(node, node.election.resign)

    def _watcher(self, node: Node) -> Callable[[float, Holder | None, int], None]:
        def notify(when: float, holder: Holder | None, index: int) -> None:
            if self.rng.random() < self.drop:
                return  # a broken watch stream: the node learns it at its next listing
            delay = self.rng.random() * self.max_delay
            arrive = max(node.watch_delivered, when + delay)
            node.watch_delivered = arrive

            def deliver() -> None:
                self._handle(
                    node,
                    lambda now: node.election.observed(
                        now, holder, index, self.rng.random() * 0.1
                    ),
                )

            self.at(arrive, deliver)

        return notify

    def _list(self, node: Node) -> None:
        """List the registry now, and again every few seconds (a watch restart)."""
        self.at(self.now + 2.0 + self.rng.random(), partial(self._list, node))
        apply = self.delay()
        if apply is None:
            return

        asked_at = node.clock(node.awake_at(self.now))

        def applied() -> None:
            holder, index = self.registry.listing(self.now)
            self.at(
                self.now + self.rng.random() * self.max_delay,
                lambda: self._handle(
                    node,
                    lambda now: node.election.observed(
                        now, holder, index, asked_at=asked_at
                    ),
                ),
            )

        self.at(self.now + apply, applied)

    # -- requests --------------------------------------------------------------------

    def _send(self, node: Node, action: Action, sent: float) -> None:
        election = node.election
        if isinstance(action, Campaign):
            token = action.token

            def create() -> Callable[[float], list[Action]]:
                epoch = self.registry.create(self.now, node.name)
                if epoch is None:
                    return lambda now: election.campaign_lost(now, token)
                return lambda now: election.campaign_won(now, token, epoch)

            self._request(
                node, sent, create, lambda n: election.campaign_failed(n, token)
            )
        elif isinstance(action, Renew):
            token = action.token

            def renew() -> Callable[[float], list[Action]]:
                if self.registry.refresh_if(self.now, node.name):
                    return lambda now: election.renewed(now, token)
                return lambda now: election.renew_lost(now, token)

            self._request(node, sent, renew, lambda n: election.renew_failed(n, token))
        elif isinstance(action, Resign):
            epoch = action.epoch

            def resign() -> Callable[[float], list[Action]]:
                self.registry.delete_if(self.now, node.name, epoch)
                return lambda now: election.tick(now)

            self._request(node, sent, resign, election.tick)

    def _request(
        self,
        node: Node,
        sent: float,
        apply: Callable[[], Callable[[float], list[Action]]],
        failed: Callable[[float], list[Action]],
    ) -> None:
        """Apply at the registry after a delay; answer after another, or time out."""
        to_server, to_client = self.delay(), self.delay()
        answered: list[bool] = [False]

        def timed_out() -> None:
            if not answered[0]:
                answered[0] = True
                self._handle(node, failed)

        self.at(sent + self.timeout, timed_out)
        if to_server is None:
            return

        def at_server() -> None:
            outcome = apply()
            if to_client is None:
                return

            def back() -> None:
                if not answered[0]:
                    answered[0] = True
                    self._handle(node, outcome)

            self.at(self.now + to_client, back)

        self.at(sent + to_server, at_server)


def overlaps(nodes: list[Node]) -> list[str]:
    """Every pair of mastership intervals of different nodes that overlap."""
    found = []
    intervals = [
        (start, end, node.name, epoch)
        for node in nodes
        for epoch, start, end in node.terms
    ]
    intervals.sort()
    for i, (start, end, name, epoch) in enumerate(intervals):
        for other_start, other_end, other, other_epoch in intervals[i + 1 :]:
            if other_start >= end:
                break
            if other != name and other_start < end and start < other_end:
                found.append(
                    f"{name} epoch {epoch:g} [{start:.3f}, {end:.3f}) overlaps {other} "
                    f"epoch {other_epoch:g} [{other_start:.3f}, {other_end:.3f})"
                )
    return found


def make_simulation(
    seed: int,
    nodes: int,
    ttl: float,
    margin: float | None,
    drift: float,
    pause_rate: float,
    horizon: float = 30.0,
) -> Simulation:
    rng = random.Random(seed)
    members = []
    for i in range(nodes):
        pauses = []
        t = 0.0
        while True:
            t += rng.expovariate(pause_rate) if pause_rate > 0 else math.inf
            if t >= horizon:
                break
            length = rng.random() * 3 * ttl
            pauses.append((t, t + length))
            t += length
        election = (
            LeaseElection(f"n{i}", ttl)
            if margin is None
            else LeaseElection(f"n{i}", ttl, margin=margin)
        )
        members.append(
            Node(
                name=f"n{i}",
                election=election,
                origin=rng.random() * 1000,
                rate=1 + (rng.random() * 2 - 1) * drift,
                pauses=pauses,
            )
        )
    return Simulation(
        rng=rng,
        nodes=members,
        registry=Registry(ttl),
        timeout=ttl / 3,
        horizon=horizon,
        drop=rng.choice([0.0, 0.1, 0.3]),
    )
