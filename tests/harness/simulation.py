"""A pure, deterministic simulation of a cluster of L{Membership} nodes.

Used by the election property tests. It plays the parts of the UDP adapter
(destinations, learned destinations, hello schedule, goodbye), of the network
(per-datagram delay, loss, duplication, hence reordering), and of an etcd-like
registry (one global index; a node writes its record, then lists, then receives
watch events in index order after arbitrary delays). Datagrams go through the real
wire codec. Everything random comes from one C{random.Random}, so a hypothesis example
replays exactly.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from functools import partial
from itertools import count

from attrs import define, evolve, field

from twistednode.discovery import wire
from twistednode.discovery.membership import (
    BYE_EVENT,
    Added,
    Event,
    HelloReceived,
    Membership,
    Promotion,
    Removed,
    SendHello,
)
from twistednode.discovery.settings import Settings

HOST = "127.0.0.1"


@define
class NodeSpec:
    """One node of a scenario."""

    start: float
    weight: float
    client: bool = False
    register_delay: float = 0.0
    list_delay: float = 0.0
    kill_at: float | None = None
    leave_at: float | None = None
    expire_at: float | None = None
    rejoin_after: float = 1.0
    record_ttl: float = 5.0


@define
class Network:
    """How datagrams and watch events travel."""

    hello_delay: tuple[float, float] = (0.0, 0.05)
    watch_delay: tuple[float, float] = (0.0, 0.05)
    loss: float = 0.0
    duplicate: float = 0.0
    registry: bool = True
    jitter_ticks: bool = True


@define(eq=False)
class SimNode:
    """A simulated process: a Membership plus what the adapter and registry keep."""

    name: str
    port: int
    spec: NodeSpec
    membership: Membership
    alive: bool = False
    gone: bool = False
    static: list[str] = field(factory=list)
    registry_members: dict[str, int] = field(factory=dict)
    learned: dict[str, int] = field(factory=dict)
    listed: bool = False
    own_index: int | None = None
    view_index: int = 0
    watch_clock: float = 0.0
    promotions: list[tuple[float, str]] = field(factory=list)


@define(eq=False)
class Simulation:
    """Run a scenario; C{violations} lists every instant with two masters."""

    settings: Settings
    specs: list[NodeSpec]
    network: Network
    rng: random.Random
    check_step: float = 0.1
    max_events: int = 200_000
    nodes: list[SimNode] = field(factory=list)
    now: float = 0.0
    violations: list[tuple[float, list[str]]] = field(factory=list)
    _queue: list[tuple[float, int, Callable[[], None]]] = field(factory=list)
    _order: count[int] = field(factory=count)
    _index: int = 0
    _records: dict[str, int] = field(factory=dict)
    _by_id: dict[str, SimNode] = field(factory=dict)
    _by_port: dict[int, SimNode] = field(factory=dict)
    _stable_from: float | None = None

    def __attrs_post_init__(self) -> None:
        for n, spec in enumerate(self.specs):
            iid = f"{self.rng.getrandbits(32):08x}-{n}"  # random order, unique
            settings = evolve(self.settings, weight=spec.weight, client=spec.client)
            node = SimNode(
                name=f"n{n}",
                port=20000 + n,
                spec=spec,
                membership=Membership(iid, settings, started_at=spec.start),
            )
            self.nodes.append(node)
            self._by_id[iid] = node
            self._by_port[node.port] = node
            self._at(spec.start, partial(self._start, node))
            if spec.kill_at is not None:
                self._at(spec.kill_at, partial(self._kill, node))
            if spec.leave_at is not None:
                self._at(spec.leave_at, partial(self._leave, node))
            if spec.expire_at is not None:
                self._at(spec.expire_at, partial(self._expire, node))

    # -- driving ---------------------------------------------------------------

    def _at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._order), action))

    def run(self, until: float) -> None:
        """Process every event up to C{until}, checking the invariant after each."""
        while self._queue and self._queue[0][0] <= until:
            when, _n, action = heapq.heappop(self._queue)
            self.now = when
            self.max_events -= 1
            if self.max_events < 0:
                raise RuntimeError(f"runaway simulation at t={when}")
            action()
            masters = [n.name for n in self.nodes if n.alive and n.membership.is_master]
            if len(masters) > 1:
                self.violations.append((when, masters))
        self.now = until

    def stabilize(self, at: float) -> None:
        """From C{at} on, deliver every datagram within 10 ms, none lost or copied."""
        self._stable_from = at

    def _delay(self, bounds: tuple[float, float]) -> float:
        if self._stable_from is not None and self.now >= self._stable_from:
            return self.rng.uniform(0.0, 0.01)
        return self.rng.uniform(*bounds)

    def id_of(self, node: SimNode) -> str:
        return node.membership.iid

    def alive(self) -> list[SimNode]:
        return [n for n in self.nodes if n.alive]

    # -- node lifecycle ----------------------------------------------------------

    def _start(self, node: SimNode) -> None:
        node.alive = True
        node.membership.bound(self.now)
        if not self.network.registry:
            node.static = [self.id_of(n) for n in self.nodes if n is not node]
            node.membership.static_peers = True
        else:
            self._at(self.now + node.spec.register_delay, lambda: self._register(node))
        self._send_hello(node, None)
        self._schedule_hello(node, self.now)
        self._schedule_tick(node)

    def _schedule_hello(self, node: SimNode, last: float) -> None:
        at = last + node.membership.settings.hello_interval

        def fire() -> None:
            if node.alive:
                self._send_hello(node, None)
                self._schedule_hello(node, at)

        self._at(at, fire)

    def _schedule_tick(self, node: SimNode) -> None:
        step = self.check_step
        if self.network.jitter_ticks:
            step = self.rng.uniform(self.check_step / 2, self.check_step)

        def fire() -> None:
            if node.alive:
                self._apply(node, node.membership.tick(self.now))
                self._schedule_tick(node)

        self._at(self.now + step, fire)

    def _kill(self, node: SimNode) -> None:
        if not node.alive:
            return
        node.alive = False
        node.gone = True
        if self.id_of(node) in self._records:
            self._at(self.now + node.spec.record_ttl, lambda: self._delete(node))

    def _expire(self, node: SimNode) -> None:
        """The node's lease is lost while it runs on; it writes a new record later."""
        if not node.alive:
            return
        self._delete(node)
        node.listed = False
        self._at(self.now + node.spec.rejoin_after, partial(self._register, node))

    def _leave(self, node: SimNode) -> None:
        if not node.alive:
            return
        self._apply(node, node.membership.demote(permanent=True))
        self._send_hello(node, None)
        if not node.membership.settings.client:
            bye = wire.Envelope(
                BYE_EVENT, "pid", self.id_of(node), None, node.membership.bye_data()
            )
            datagram = wire.encode(bye)
            for port in self._destinations(node):
                self._transmit(node, port, datagram)
        node.alive = False
        node.gone = True
        self._delete(node)

    # -- registry ----------------------------------------------------------------

    def _register(self, node: SimNode) -> None:
        if not node.alive:
            return
        self._index += 1
        self._records[self.id_of(node)] = self._index
        node.own_index = self._index
        self._broadcast_watch(self._index, self.id_of(node), created=True)
        self._at(self.now + node.spec.list_delay, lambda: self._list(node))

    def _delete(self, node: SimNode) -> None:
        if self._records.pop(self.id_of(node), None) is None:
            return
        self._index += 1
        self._broadcast_watch(self._index, self.id_of(node), created=False)

    def _list(self, node: SimNode) -> None:
        if not node.alive:
            return
        node.listed = True
        node.view_index = self._index
        node.watch_clock = self.now
        self._view_changed(node, dict(self._records))

    def _broadcast_watch(self, index: int, member: str, created: bool) -> None:
        for node in self.nodes:
            if not node.listed or not node.alive:
                continue
            at = max(node.watch_clock, self.now + self._delay(self.network.watch_delay))
            node.watch_clock = at

            def deliver(node: SimNode = node) -> None:
                if not node.alive or index <= node.view_index:
                    return
                members = dict(node.registry_members)
                if created:
                    members[member] = index
                else:
                    members.pop(member, None)
                node.view_index = index
                self._view_changed(node, members)
                if not created and member != self.id_of(node):
                    self._apply(node, node.membership.peer_left(self.now, member))

            self._at(at, deliver)

    def _view_changed(self, node: SimNode, members: dict[str, int]) -> None:
        new = [m for m in members if m not in node.registry_members]
        node.registry_members = members
        clients = {m for m in members if self._by_id[m].spec.client}
        events = node.membership.registry_view(
            self.now, members, node.view_index, node.own_index, clients
        )
        self._apply(node, events)
        for member in new:
            if member != self.id_of(node):
                self._send_hello(node, self._by_id[member].port)

    # -- datagrams ---------------------------------------------------------------

    def _destinations(self, node: SimNode) -> list[int]:
        ports = [self._by_id[m].port for m in node.static]
        ports += [
            self._by_id[m].port for m in node.registry_members if m != self.id_of(node)
        ]
        ports += list(node.learned.values())
        return list(dict.fromkeys(ports))

    def _send_hello(self, node: SimNode, port: int | None) -> None:
        if node.membership.settings.client:
            return
        ports = self._destinations(node) if port is None else [port]
        if not ports:
            return
        envelope = wire.Envelope(
            "hello", "pid", self.id_of(node), None, node.membership.hello_data()
        )
        datagram = wire.encode(envelope)
        for dest in ports:
            self._transmit(node, dest, datagram)

    def _transmit(self, node: SimNode, port: int, datagram: bytes) -> None:
        stable = self._stable_from is not None and self.now >= self._stable_from
        copies = 1
        if not stable:
            if self.rng.random() < self.network.loss:
                return
            if self.rng.random() < self.network.duplicate:
                copies = 2
        for _ in range(copies):
            at = self.now + self._delay(self.network.hello_delay)
            self._at(at, lambda: self._receive(port, datagram, node.port))

    def _receive(self, port: int, datagram: bytes, source_port: int) -> None:
        node = self._by_port[port]
        if not node.alive:
            return
        envelope = wire.decode(datagram)
        if envelope.iid == self.id_of(node):
            return
        membership = node.membership
        if envelope.event == "hello":
            self._apply(
                node, membership.hello_received(self.now, envelope, (HOST, source_port))
            )
        elif envelope.event == BYE_EVENT:
            self._apply(node, membership.goodbye_received(self.now, envelope))

    def _apply(self, node: SimNode, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, SendHello):
                self._send_hello(
                    node, None if event.destination is None else event.destination[1]
                )
            elif isinstance(event, Added | HelloReceived):
                node.learned[event.member.id] = event.source[1]
            elif isinstance(event, Removed):
                node.learned.pop(event.member.id, None)
            elif isinstance(event, Promotion):
                node.promotions.append((self.now, event.reason))
