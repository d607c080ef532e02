"""Mixed clusters: clusternode processes and real node-discover 1.2.1 peers.

Clusternodes run with C{--no-etcd} and C{--peer} entries, node-discover peers
(tests/harness/nodediscover.py) with static unicast lists; all of them on distinct
127.0.0.1 ports and with the same intervals. We check what the wire spec promises
(node-discover-wire.md sections 6, 6.2, 7, 9, 10): every node sees every other, one
master agreed by all four, fail-over to exactly one new master whichever kind died,
the legacy key, the one-sided tie-break (on equal weights the node-discover peer
leads), and channels in both directions (a ClusterNode in the trial reactor).

Where the point is not node-discover's own timing the intervals are short
(L{FAST_TIMERS}); one test runs the defaults and compares with the spec's baseline.
Timelines: clusternode status samples and node-discover promotion and demotion
events (monotonic timestamps) together prove that no two nodes were master at once.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from attrs import define
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.harness.clusternodes import (
    DEFAULT_TIMERS,
    FAST_TIMERS,
    ClusterNodeProcess,
    ClusterWait,
    MasterTimeline,
    NodeView,
    Timers,
    ViewSource,
    agreed_master_of,
    all_see_all,
    wait_for_cluster,
)
from tests.harness.nodediscover import (
    NodeDiscoverPeer,
    free_udp_ports,
    require_node_discover,
)
from twistednode.discovery.settings import make_settings
from twistednode.discovery.wire import Envelope
from twistednode.node import ClusterNode

#: Bound for anything that takes a few timer periods.
SETTLE = 15.0
#: Head-room on top of a designed bound, for a loaded CI machine.
HEADROOM = 1.0
KEY = "secret"

Node = ClusterNodeProcess | NodeDiscoverPeer
Predicate = Callable[[list[NodeView]], bool]


def report(what: str, seconds: float) -> None:
    """Print one measured time (the report collects these lines)."""
    print(f"\n    [timing] {what}: {seconds * 1000:.0f} ms", flush=True)


def node_id(node: Node) -> str:
    """The id peers know a node by (its node-discover iid)."""
    return node.id if isinstance(node, ClusterNodeProcess) else node.iid


def alive(node: Node) -> bool:
    """Whether the node's process runs."""
    if isinstance(node, ClusterNodeProcess):
        return node.running
    return node.pid is not None and node.returncode is None


def peer_view(peer: NodeDiscoverPeer) -> NodeView:
    """A L{NodeView} from a node-discover peer's current node table."""
    sent = time.monotonic()
    table = peer.send_command({"cmd": "members"})
    received = time.monotonic()
    nodes = table["nodes"]
    claimants = {str(n["id"]) for n in nodes if n.get("isMaster")}
    if table["isMaster"]:
        claimants.add(peer.iid)
    return NodeView(
        id=peer.iid,
        is_master=bool(table["isMaster"]),
        members=frozenset(str(n["id"]) for n in nodes),
        claimants=frozenset(claimants),
        master=None,
        sent=sent,
        received=received,
    )


def view_source(node: Node) -> ViewSource:
    """The function that asks C{node} for its view."""
    if isinstance(node, ClusterNodeProcess):
        return node.view
    return lambda: peer_view(node)


def add_peer_intervals(timeline: MasterTimeline, peer: NodeDiscoverPeer) -> None:
    """Add the intervals in which a peer was certainly master, from its events.

    From each C{promotion} to the next C{demotion}, or else to the last event it
    printed (it was still master then: peer.js prints events in order).
    """
    events = peer.events()
    for i, event in enumerate(events):
        if event.kind != "promotion":
            continue
        end = events[-1].mono_ms
        for later in events[i + 1 :]:
            if later.kind == "demotion":
                end = later.mono_ms
                break
        timeline.add_interval(peer.iid, event.mono_ms / 1000, end / 1000)


@define(eq=False)
class MixedCluster:
    """Clusternodes and node-discover peers on one static list, in spec order."""

    nodes: list[Node]
    timeline: MasterTimeline

    def live(self) -> list[Node]:
        return [n for n in self.nodes if alive(n)]

    def ids(self, nodes: Sequence[Node] | None = None) -> set[str]:
        return {node_id(n) for n in (self.nodes if nodes is None else nodes)}

    def wait(
        self,
        predicate: Predicate,
        description: str,
        timeout: float = SETTLE,
        nodes: Sequence[Node] | None = None,
    ) -> ClusterWait:
        chosen = self.live() if nodes is None else list(nodes)
        try:
            return wait_for_cluster(
                [view_source(n) for n in chosen],
                predicate,
                timeout,
                description,
                timeline=self.timeline,
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.describe()}") from None

    def converged(self) -> str:
        """Wait until every live node sees every other and one master is agreed."""
        ids = self.ids(self.live())
        done = self.wait(
            lambda vs: all_see_all(vs, ids) and agreed_master_of(vs) is not None,
            "all see all and one agreed master",
        )
        master = agreed_master_of(done.views)
        assert master is not None
        return master

    def by_id(self, wanted: str) -> Node:
        (found,) = [n for n in self.nodes if node_id(n) == wanted]
        return found

    def describe(self) -> str:
        parts = [f"nodes: {[(type(n).__name__, node_id(n)) for n in self.nodes]}"]
        for node in self.nodes:
            if isinstance(node, ClusterNodeProcess):
                parts.append(node.describe(12))
            else:
                parts.append(node.describe())
        return "\n".join(parts)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class _MixedClusterMixin:
    """Builds mixed clusters for a SynchronousTestCase."""

    def mixed(
        self: Any,
        specs: Sequence[tuple[str, float | None]],
        timers: Timers,
        key: str | None = None,
        *,
        groups: Sequence[Sequence[int]] | None = None,
    ) -> MixedCluster:
        """Start nodes of the given kinds ("cn" or "nd") and weights.

        The nodes start in C{groups} (indexes into C{specs}): each group is launched
        at once and waited for before the next. By default the first node starts
        alone, so it is the master-to-be whatever the start-up times of the others.
        """
        require_node_discover()
        ports = free_udp_ports(len(specs))
        endpoints = [f"127.0.0.1:{p}" for p in ports]
        nodes: list[Node] = []
        for (kind, weight), port, endpoint in zip(specs, ports, endpoints, strict=True):
            if kind == "cn":
                nodes.append(
                    ClusterNodeProcess(
                        peers=[e for e in endpoints if e != endpoint],
                        udp_port=port,
                        weight=weight,
                        legacy_key=key,
                        timers=timers,
                    )
                )
            else:
                nodes.append(
                    NodeDiscoverPeer.create(
                        port,
                        unicast=endpoints,
                        key=key,
                        weight=weight,
                        **timers.node_discover(),
                    )
                )
        cluster = MixedCluster(nodes, MasterTimeline())
        self.addCleanup(self.check_cluster, cluster)
        self.addCleanup(cluster.stop)
        if groups is None:
            groups = [[0], list(range(1, len(nodes)))]
        for indexes in groups:
            group = [nodes[i] for i in indexes]
            for node in group:
                if isinstance(node, ClusterNodeProcess):
                    node.launch()
                else:
                    node.start()
            for node in group:
                if isinstance(node, ClusterNodeProcess):
                    node.wait_ready()
                else:
                    node.wait_started()
        return cluster

    def check_cluster(self: Any, cluster: MixedCluster) -> None:
        """After the test: never two masters, no node-discover peer crashed."""
        for node in cluster.nodes:
            if isinstance(node, NodeDiscoverPeer):
                add_peer_intervals(cluster.timeline, node)
                self.assertEqual(
                    [e.fields for e in node.events() if e.kind in ("crash", "error")],
                    [],
                    node.describe(),
                )
        self.assertEqual(cluster.timeline.overlaps(), [])


def kill(node: Node) -> None:
    """SIGKILL, whichever kind."""
    node.kill()


class MixedClusterTests(_MixedClusterMixin, SynchronousTestCase):
    """Two clusternodes and two node-discover peers, short intervals."""

    timers = FAST_TIMERS

    def failover(self, cluster: MixedCluster, victim: Node, expected: Node) -> float:
        """Kill the master C{victim}; wait for C{expected} agreed by all survivors."""
        old = node_id(victim)
        survivors = [n for n in cluster.nodes if n is not victim]
        started = time.monotonic()
        kill(victim)
        done = cluster.wait(
            lambda vs: (
                agreed_master_of(vs) not in (None, old)
                and all(old not in v.members for v in vs)
            ),
            "one new master agreed by the survivors",
            nodes=survivors,
        )
        elapsed = done.at - started
        self.assertEqual(agreed_master_of(done.views), node_id(expected))
        bound = self.timers.master_timeout + self.timers.check_interval
        self.assertLessEqual(elapsed, bound + HEADROOM)
        return elapsed

    def check_mesh(self, cluster: MixedCluster, master: Node) -> None:
        """All see all (node-discover by its events), the expected master agreed."""
        self.assertEqual(cluster.converged(), node_id(master))
        for node in cluster.nodes:
            others = cluster.ids() - {node_id(node)}
            if isinstance(node, NodeDiscoverPeer):
                self.assertEqual(node.added_ids(), others)
            else:
                sources = node.view().sources
                self.assertEqual(sources, {i: "static" for i in others})

    def run_kill(
        self, specs: Sequence[tuple[str, float | None]], key: str | None, label: str
    ) -> None:
        cluster = self.mixed(specs, self.timers, key)
        first, second = cluster.nodes[0], cluster.nodes[1]
        self.check_mesh(cluster, first)
        elapsed = self.failover(cluster, first, second)
        report(f"{label}: SIGKILL of master -> new master agreed", elapsed)

    def test_clusternode_master_killed(self) -> None:
        """A killed clusternode master is followed by the heaviest peer, a Node one."""
        self.run_kill(
            [("cn", 10), ("nd", 8), ("cn", 6), ("nd", 4)], None, "clusternode master"
        )

    def test_node_discover_master_killed(self) -> None:
        """A killed node-discover master is followed by the heaviest, a clusternode."""
        self.run_kill(
            [("nd", 10), ("cn", 8), ("nd", 6), ("cn", 4)], None, "node-discover master"
        )

    def test_legacy_key_clusternode_master_killed(self) -> None:
        """With the legacy key on all four, a killed clusternode master is replaced."""
        self.run_kill(
            [("cn", 10), ("nd", 8), ("cn", 6), ("nd", 4)], KEY, "keyed, clusternode"
        )

    def test_legacy_key_node_discover_master_killed(self) -> None:
        """With the legacy key on all four, a killed Node master is replaced."""
        self.run_kill(
            [("nd", 10), ("cn", 8), ("nd", 6), ("cn", 4)], KEY, "keyed, node-discover"
        )

    def test_keyless_peer_is_not_part_of_a_keyed_cluster(self) -> None:
        """A peer without the key that lists everyone is seen by nobody, sees none."""
        cluster = self.mixed([("cn", 10), ("nd", 8), ("cn", 6)], self.timers, KEY)
        master = cluster.converged()
        ours = [n for n in cluster.nodes if isinstance(n, ClusterNodeProcess)]
        before = [n.status()["dropped"].get("bad-cipher", 0) for n in ours]
        intruder = NodeDiscoverPeer.create(
            unicast=[f"127.0.0.1:{p}" for p in self.ports(cluster)],
            weight=100,
            **self.timers.node_discover(),
        )
        self.addCleanup(intruder.stop)
        intruder.start()
        intruder.wait_started()
        # It promotes alone at its first check, having sent a few hellos by then.
        intruder.wait_for_kind("promotion", SETTLE)
        done = cluster.wait(
            lambda vs: agreed_master_of(vs) == master, "the keyed cluster unchanged"
        )
        for view in done.views:
            self.assertNotIn(intruder.iid, view.members)
        self.assertEqual(intruder.members(), [])
        after = [n.status()["dropped"].get("bad-cipher", 0) for n in ours]
        for old, new in zip(before, after, strict=True):
            self.assertGreater(new, old)

    def ports(self, cluster: MixedCluster) -> list[int]:
        return [
            n.udp_port if isinstance(n, ClusterNodeProcess) else n.port
            for n in cluster.nodes
        ]

    def test_clean_stop_of_clusternode_master(self) -> None:
        """SIGTERM of a clusternode master: node-discover peers re-elect at a check."""
        cluster = self.mixed([("cn", 10), ("nd", 8), ("cn", 6), ("nd", 4)], self.timers)
        stopping, successor = cluster.nodes[0], cluster.nodes[1]
        assert isinstance(stopping, ClusterNodeProcess)
        self.check_mesh(cluster, stopping)
        survivors = cluster.nodes[1:]
        old = stopping.id
        started = time.monotonic()
        stopping.signal(signal.SIGTERM)
        done = cluster.wait(
            lambda vs: agreed_master_of(vs) not in (None, old),
            "one new master agreed by the survivors",
            nodes=survivors,
        )
        elapsed = done.at - started
        report("mixed: SIGTERM of clusternode master -> new master agreed", elapsed)
        self.assertEqual(agreed_master_of(done.views), node_id(successor))
        # The leave hellos say "not eligible": the peer promotes at its next check,
        # not after masterTimeout (wire spec 6.2 item 2).
        self.assertLess(elapsed, self.timers.check_interval + HEADROOM)
        stopping.wait_exit()

    def test_equal_weights_node_discover_peer_leads(self) -> None:
        """On equal weights our node yields: the node-discover peer becomes master."""
        cluster = self.mixed([("cn", 10), ("nd", 5), ("cn", 5), ("nd", 1)], self.timers)
        first, tied_peer, tied_node = cluster.nodes[:3]
        self.check_mesh(cluster, first)
        elapsed = self.failover(cluster, first, tied_peer)
        report("equal weights: SIGKILL of master -> node-discover peer agreed", elapsed)
        # Stable: for several checks, still that one master, never ours as well.
        until = time.monotonic() + 3 * self.timers.check_interval
        while time.monotonic() < until:
            cluster.wait(
                lambda vs: agreed_master_of(vs) == node_id(tied_peer),
                "the node-discover peer staying master",
                timeout=1.0,
            )
        assert isinstance(tied_node, ClusterNodeProcess)
        self.assertFalse(tied_node.status()["self"]["isMaster"])


class DefaultTimingTests(_MixedClusterMixin, SynchronousTestCase):
    """A mixed cluster on node-discover's default intervals (the spec's baseline)."""

    def peer_up_before_first_checks(self, cluster: MixedCluster) -> bool:
        """Whether the heavy peer was bound well before each clusternode's first check.

        A clusternode's first check runs a check_interval after its bind, which is
        after its startedAt (read here as a lower bound on the monotonic clock).
        """
        peer = cluster.nodes[2]
        assert isinstance(peer, NodeDiscoverPeer)
        bound = peer.started_event.mono_ms / 1000
        for node in cluster.nodes[:2]:
            assert isinstance(node, ClusterNodeProcess)
            view = node.view()
            assert view.uptime is not None
            first_check = view.sent - view.uptime + DEFAULT_TIMERS.check_interval
            if bound + 0.3 > first_check:
                return False
        return True

    def test_joint_election_and_failover_at_default_intervals(self) -> None:
        """At a cold start our node yields to an equal-weight peer; then takes over."""
        # The clusternodes first, then the peers, which must be up before the
        # clusternodes' first check (2 s after their bind). At that check the
        # peer with the same weight as our heaviest node is eligible and not yet
        # master: the one-sided tie-break (spec 6.2 item 1) says it beats us, so
        # our node must not promote, and the peer promotes at its own check.
        # (With a plain "weight >" our node would promote first and stay master.)
        # node takes up to 1.5 s to start on a loaded machine: if the peer came
        # too late for the scenario, it is set up again (a few times at most).
        for _attempt in range(3):
            cluster = self.mixed(
                [("cn", 8), ("cn", 2), ("nd", 8), ("nd", 4)],
                DEFAULT_TIMERS,
                groups=[[0, 1], [2, 3]],
            )
            if self.peer_up_before_first_checks(cluster):
                break
            cluster.stop()
        else:
            self.fail("node-discover never started within 1.7 s of the clusternodes")
        ours = [n for n in cluster.nodes if isinstance(n, ClusterNodeProcess)]
        theirs = [n for n in cluster.nodes if isinstance(n, NodeDiscoverPeer)]
        ours_up = min(n.ready_at or 0.0 for n in ours)
        spawned = min(n.spawned_at_ms or 0.0 for n in theirs) / 1000
        master = cluster.converged()
        self.assertEqual(master, node_id(theirs[0]), cluster.describe())
        agreed = time.monotonic()
        report(
            "default intervals: clusternodes up -> one agreed master", agreed - ours_up
        )
        report(
            "default intervals: peers spawned -> one agreed master", agreed - spawned
        )
        for node in ours:
            self.assertFalse(node.status()["self"]["isMaster"])
        survivors = [n for n in cluster.nodes if n is not theirs[0]]
        started = time.monotonic()
        kill(theirs[0])
        done = cluster.wait(
            lambda vs: (
                agreed_master_of(vs) not in (None, master)
                and all(master not in v.members for v in vs)
            ),
            "one new master agreed by the survivors",
            nodes=survivors,
        )
        elapsed = done.at - started
        report("default intervals: SIGKILL of master -> new master agreed", elapsed)
        self.assertEqual(agreed_master_of(done.views), node_id(ours[0]))
        timers = DEFAULT_TIMERS
        self.assertLessEqual(
            elapsed, timers.master_timeout + timers.check_interval + HEADROOM
        )


def fast_settings(weight: float, key: str | None = None) -> Any:
    """Settings with L{FAST_TIMERS} for an in-process ClusterNode."""
    return make_settings(
        epoch_ms=int(time.time() * 1000),
        hello_interval=FAST_TIMERS.hello_interval,
        check_interval=FAST_TIMERS.check_interval,
        node_timeout=FAST_TIMERS.node_timeout,
        master_timeout=FAST_TIMERS.master_timeout,
        weight=weight,
        key=key,
    )


class ChannelTests(TestCase):
    """Channel messages between a ClusterNode in the trial reactor and real peers."""

    def setUp(self) -> None:
        require_node_discover()
        from twisted.internet import reactor

        self.reactor: Any = reactor

    def start_cluster(
        self, key: str | None
    ) -> tuple[ClusterNode, list[NodeDiscoverPeer]]:
        """The ClusterNode (heaviest, started first), then two peers on channel jobs."""
        ports = free_udp_ports(3)
        endpoints = [f"127.0.0.1:{p}" for p in ports]
        node = ClusterNode(
            reactor=self.reactor,
            settings=fast_settings(10.0, key),
            static_peers=tuple(("127.0.0.1", p) for p in ports[1:]),
            udp_port=ports[0],
            udp_interface="127.0.0.1",
            pid=str(uuid.uuid4()),
            host_name="py-node",
        )
        node.startService()
        self.addCleanup(node.stopService)
        peers = [
            NodeDiscoverPeer.create(
                port,
                unicast=endpoints,
                key=key,
                weight=float(5 - i),
                channels=("jobs",),
                **FAST_TIMERS.node_discover(),
            )
            for i, port in enumerate(ports[1:])
        ]
        for peer in peers:
            self.addCleanup(peer.stop)
            peer.start()
        for peer in peers:
            peer.wait_started()
        return node, peers

    async def until(self, condition: Any, description: str) -> None:
        deadline = self.reactor.seconds() + SETTLE
        while not condition():
            if self.reactor.seconds() > deadline:
                raise AssertionError(f"timed out waiting for {description}")
            await deferLater(self.reactor, 0.02)

    async def both_ways(self, key: str | None) -> None:
        node, peers = self.start_cluster(key)
        ids = {p.iid for p in peers}
        for peer in peers:
            await peer.when(
                lambda e: e.kind == "added" and e.node_id == node.id,
                self.reactor,
                SETTLE,
                "added for the ClusterNode",
            )
        await self.until(lambda: {m.id for m in node.members} == ids, "both peers")

        # ClusterNode -> node-discover subscribers.
        marks = [p.mark() for p in peers]
        node.publish("jobs", {"id": 42, "op": "rébuild"})
        for peer, mark in zip(peers, marks, strict=True):
            got = await peer.when(
                lambda e: e.kind == "message",
                self.reactor,
                SETTLE,
                "a message",
                since=mark,
            )
            self.assertEqual(got["channel"], "jobs")
            self.assertEqual(got["data"], {"id": 42, "op": "rébuild"})
            self.assertEqual(got["envelope"]["iid"], node.id)
            self.assertEqual(got["envelope"]["hostName"], "py-node")
            self.assertEqual(got["source"], {"address": "127.0.0.1", "port": node.port})

        # node-discover -> ClusterNode subscriber.
        received: list[tuple[object, Envelope, tuple[str, int]]] = []
        node.subscribe("jobs", lambda p, e, s: received.append((p, e, s)))
        sender = peers[0]
        self.assertTrue(sender.send("jobs", {"from": "node", "n": [1, 2, 3]}))
        await self.until(lambda: bool(received), "a message from the peer")
        payload, envelope, source = received[0]
        self.assertEqual(payload, {"from": "node", "n": [1, 2, 3]})
        self.assertEqual(envelope.iid, sender.iid)
        self.assertEqual(envelope.event, "jobs")
        self.assertEqual(source, ("127.0.0.1", sender.port))
        self.assertEqual(len(received), 1)
        # A channel we did not subscribe to is dropped and counted.
        self.assertTrue(sender.send("other", {"unsubscribed": True}))
        await self.until(
            lambda: node.status_document()["dropped"].get("not-joined", 0) >= 1,
            "the unsubscribed message counted as dropped",
        )
        self.assertEqual(len(received), 1)
        # And the ClusterNode is master of this mixed cluster (heaviest), for all.
        await self.until(lambda: node.is_master, "the ClusterNode's promotion")
        for peer in peers:
            await peer.when(
                lambda e: e.kind == "master" and e.node_id == node.id,
                self.reactor,
                SETTLE,
                "master event for the ClusterNode",
            )

    def test_channels_both_ways(self) -> Deferred[None]:
        """publish() reaches node-discover subscribers, and their send() reaches us."""
        return Deferred.fromCoroutine(self.both_ways(None))

    def test_channels_both_ways_with_legacy_key(self) -> Deferred[None]:
        """The same with node-discover's legacy key on every node."""
        return Deferred.fromCoroutine(self.both_ways(KEY))
