"""Faults on real processes: the leased election never gives two masters.

Five nodes, each in its own network namespace (L{tests.harness.netns}), run the
fault application (L{tests.harness.faultapp}): a C{ClusterNode} under the leased
election that records, every 20 ms, whether it is master and writes through a shared
fenced resource while it is. The registry (minietcd, a real etcd 3.4 speaking v2 or
v3, or a cluster of three real etcd members) listens on the root namespace's end of
the bridge.

A randomized schedule of faults runs against the master of the moment: SIGSTOP for
0.5-3 master TTLs, SIGKILL, SIGTERM, its UDP cut (iptables in its namespace), its
registry connection cut, and the registry itself stopped and restarted (minietcd
restarts empty; etcd keeps its data); on the three-member etcd, also the etcd leader
killed and restarted under the cluster. After each fault the cluster must agree on one
master again. At the end the checker reads every node's samples and the resource's
log and asserts that no two mastership intervals of different nodes overlap and that
no write with a stale epoch was accepted; it prints the handover gaps and how many
late writes the fence refused.

The schedule's seed is printed; C{TWISTEDNODE_FAULT_SEED=N} replays one, and
C{TWISTEDNODE_FAULT_ROUNDS=N} runs more rounds (CI runs a short schedule; the
benchmark runs many more), and C{TWISTEDNODE_FAULTS=registry-cut,sigstop} only those
kinds.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import ClassVar

from twisted.trial.unittest import TestCase

from tests.harness.clusternodes import MasterTimeline, NodeView, agreed_master_of
from tests.harness.faults import (
    FaultNode,
    handover_gaps,
    overlaps,
    read_fence_log,
    stale_accepted,
)
from tests.harness.netns import Topology, require_netns
from tests.harness.servers import (
    ManagedProcess,
    MiniEtcdProcess,
    RealEtcd,
    RealEtcdCluster,
)

SIZE = 5
MASTER_TTL = 2
#: How long a healed cluster may take to agree on one master again.
RECOVERY = 20.0
HOLD = 5.0
FAULTS = (
    "sigstop",
    "sigkill",
    "sigterm",
    "udp-cut",
    "registry-cut",
    "registry-restart",
)


def rounds(faults: int) -> int:
    """How many faults to make: C{TWISTEDNODE_FAULT_ROUNDS}, or each kind once."""
    return int(os.environ.get("TWISTEDNODE_FAULT_ROUNDS", "0")) or faults


def schedule_seed() -> int:
    text = os.environ.get("TWISTEDNODE_FAULT_SEED")
    return int(text) if text else random.randrange(1 << 30)


class _FaultSuite:
    """The suite, for one registry (the subclasses below)."""

    api: ClassVar[str]
    label: ClassVar[str]
    faults: ClassVar[tuple[str, ...]] = FAULTS

    def make_registry(self, address: str) -> list[ManagedProcess]:
        """The registry's processes, listening on C{address} (not started)."""
        raise NotImplementedError

    def registry_urls(self) -> list[str]:
        raise NotImplementedError

    def start_registry(self) -> None:
        """Launch every registry process together (etcd members need each other)."""
        for process in self.registry:
            process.launch()
        for process in self.registry:
            process.wait_ready()

    def setUp(self) -> None:
        ip, iptables = require_netns()
        self.topology = Topology(SIZE, ip=ip, iptables=iptables).create()
        self.addCleanup(self.topology.destroy)
        self.registry = self.make_registry(self.topology.host_address)
        for process in self.registry:
            self.addCleanup(process.stop)
        self.start_registry()
        self.scratch = tempfile.mkdtemp(prefix="twistednode-faults-")
        self.addCleanup(shutil.rmtree, self.scratch, True)
        self.fence = os.path.join(self.scratch, "fence")
        cluster = "faults-" + uuid.uuid4().hex[:8]
        self.nodes = [
            FaultNode(
                prefix=self.topology.exec_prefix(index),
                address=self.topology.address(index),
                etcd=",".join(self.registry_urls()),
                etcd_api=self.api,
                cluster=cluster,
                fence=self.fence,
                weight=float(SIZE - index),
                master_ttl=MASTER_TTL,
            )
            for index in range(SIZE)
        ]
        for node in self.nodes:
            self.addCleanup(node.stop)
            node.launch()
        for node in self.nodes:
            node.wait_ready()
        self.timeline = MasterTimeline()
        self.report: list[str] = []

    # -- observing -------------------------------------------------------------------

    def views(self, nodes: list[FaultNode]) -> list[NodeView] | None:
        found = []
        for node in nodes:
            try:
                view = node.view()
            except OSError:
                return None
            self.timeline.add(view)
            found.append(view)
        return found

    def wait_for_master(self, why: str, timeout: float = RECOVERY) -> FaultNode:
        """Wait until every running node agrees on one master; return it."""
        deadline = time.monotonic() + timeout
        while True:
            live = [n for n in self.nodes if n.running]
            views = self.views(live)
            master = None if views is None else agreed_master_of(views)
            if master is not None:
                return next(n for n in self.nodes if n.id == master)
            if time.monotonic() > deadline:
                described = [
                    f"{v.id[:8]} master={v.is_master} "
                    f"names={v.master and v.master[:8]} "
                    f"claimants={sorted(c[:8] for c in v.claimants)}"
                    for v in views or []
                ]
                raise AssertionError(
                    f"no agreed master within {timeout:.0f} s {why}: {described}\n"
                    + self.describe(live)
                )
            time.sleep(0.02)

    def describe(self, nodes: list[FaultNode]) -> str:
        """Each node's members (as it sees them), drop counters, registry state and
        the tail of its log: what a failed agreement needs to be understood."""
        lines = []
        for node in nodes:
            try:
                status = node.status()
            except OSError as e:
                lines.append(f"{node.id[:8]}: no status ({e})")
                continue
            members = [
                f"{m['id'][:8]}@{m['port']} master={m['isMaster']} "
                f"seen={m['lastSeen']} {m['source']}"
                for m in status["members"]
            ]
            lines.append(
                f"{node.id[:8]} port={status['self']['port']} members={members} "
                f"dropped={status['dropped']} registry={status['registry']} "
                f"election={status['election']}"
            )
            tail = node.output().splitlines()[-15:]
            lines.extend(f"    | {line}" for line in tail)
        return "\n".join(lines)

    def hold(self, seconds: float) -> None:
        """Keep sampling every node's view for C{seconds}."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.views([n for n in self.nodes if n.running])
            time.sleep(0.02)

    # -- faults ----------------------------------------------------------------------

    def index_of(self, node: FaultNode) -> int:
        return self.nodes.index(node)

    def sigstop(self, master: FaultNode, rng: random.Random) -> str:
        pause = rng.uniform(0.5, 3.0) * MASTER_TTL
        master.pause()
        try:
            self.hold(pause)
        finally:
            master.resume()
        return f"SIGSTOP {pause:.1f} s"

    def sigkill(self, master: FaultNode, rng: random.Random) -> str:
        master.kill()
        self.wait_for_master("after SIGKILL of the master")
        master.launch()
        master.wait_ready()
        return "SIGKILL, restarted"

    def sigterm(self, master: FaultNode, rng: random.Random) -> str:
        stopped = time.monotonic()
        master.terminate()
        successor = self.wait_for_master("after SIGTERM of the master")
        took = time.monotonic() - stopped
        master.launch()
        master.wait_ready()
        return f"SIGTERM, {successor.id[:8]} master after {took * 1000:.0f} ms"

    def udp_cut(self, master: FaultNode, rng: random.Random) -> str:
        index = self.index_of(master)
        self.topology.cut_udp(index)
        try:
            self.hold(HOLD)
        finally:
            self.topology.heal(index)
        return f"UDP of the master cut {HOLD:.0f} s"

    def registry_cut(self, master: FaultNode, rng: random.Random) -> str:
        index = self.index_of(master)
        for url in self.registry_urls():
            port = int(url.rsplit(":", 1)[1])
            self.topology.cut_tcp_to(index, self.topology.host_address, port)
        try:
            self.hold(HOLD)
        finally:
            self.topology.heal(index)
        return f"the master's registry cut {HOLD:.0f} s"

    def registry_restart(self, master: FaultNode, rng: random.Random) -> str:
        for process in self.registry:
            process.kill()
        try:
            self.hold(HOLD)
        finally:
            self.start_registry()
        return f"registry down {HOLD:.0f} s, restarted"

    # -- the test --------------------------------------------------------------------

    def test_randomized_faults_never_give_two_masters(self) -> None:
        seed = schedule_seed()
        rng = random.Random(seed)
        self.report.append(f"seed {seed}")
        master = self.wait_for_master("at start")
        faults = list(self.faults)
        chosen = os.environ.get("TWISTEDNODE_FAULTS")
        if chosen:
            faults = [f for f in faults if f in chosen.split(",")]
        rng.shuffle(faults)
        for number in range(rounds(len(faults))):
            fault = faults[number % len(faults)]
            action: Callable[[FaultNode, random.Random], str] = getattr(
                self, fault.replace("-", "_")
            )
            began = time.monotonic()
            what = action(master, rng)
            master = self.wait_for_master(f"after {what} (seed {seed})")
            self.report.append(
                f"{what}: one master ({master.id[:8]}) "
                f"{time.monotonic() - began:.1f} s after the fault began"
            )
        self.hold(1.0)
        for node in self.nodes:
            node.terminate()
        self.check(seed)

    def check(self, seed: int) -> None:
        intervals = [i for node in self.nodes for i in node.intervals()]
        self.assertTrue(intervals, "no node ever recorded mastership")
        both = overlaps(intervals)
        self.assertEqual(both, [], f"two masters at once (seed {seed}): {both[:3]}")
        external = self.timeline.overlaps()
        self.assertEqual(
            external, [], f"status samples prove two masters: {external[:3]}"
        )
        writes = read_fence_log(self.fence + ".log")
        self.assertEqual(stale_accepted(writes), [])
        accepted = [w for w in writes if w.accepted]
        refused = [w for w in writes if not w.accepted]
        self.assertTrue(accepted, "the fenced resource accepted no write")
        gaps = handover_gaps(intervals) or [0.0]
        print(
            f"\n[faults, {self.label}] " + "; ".join(self.report) + f"\n  "
            f"{len(intervals)} terms, no overlap; handover gaps min "
            f"{min(gaps) * 1000:.0f} ms, max {max(gaps):.2f} s; {len(accepted)} "
            f"writes accepted, {len(refused)} late ones refused"
        )


class MiniEtcdFaultTests(_FaultSuite, TestCase):
    api = "v2"
    label = "minietcd"

    def make_registry(self, address: str) -> list[ManagedProcess]:
        self.minietcd = MiniEtcdProcess(host=address)
        return [self.minietcd]

    def registry_urls(self) -> list[str]:
        return [self.minietcd.url]


class RealEtcdV2FaultTests(_FaultSuite, TestCase):
    """The same schedule on a real etcd 3.4, its v2 API (keys with a TTL)."""

    api = "v2"
    label = "etcd v2"

    def make_registry(self, address: str) -> list[ManagedProcess]:
        self.etcd = RealEtcd(client_host=address)
        return [self.etcd]

    def registry_urls(self) -> list[str]:
        return [self.etcd.url]


class RealEtcdV3FaultTests(RealEtcdV2FaultTests):
    """The same on etcd's v3 gateway: the key under the node's lease, a transaction."""

    api = "v3"
    label = "etcd v3"


class RealEtcdClusterFaultTests(_FaultSuite, TestCase):
    """Three etcd members (v3), the nodes given all three URLs; the etcd leader's
    death joins the schedule."""

    api = "v3"
    label = "three etcd members, v3"
    faults = (*FAULTS, "etcd-leader-kill")

    def make_registry(self, address: str) -> list[ManagedProcess]:
        self.etcd_cluster = RealEtcdCluster(size=3, client_host=address)
        return list(self.etcd_cluster.members)

    def registry_urls(self) -> list[str]:
        return self.etcd_cluster.urls

    def etcd_leader_kill(self, master: FaultNode, rng: random.Random) -> str:
        leader = self.etcd_cluster.leader()
        leader.kill()
        try:
            self.hold(HOLD)
        finally:
            leader.launch()
            leader.wait_ready()
        return f"etcd leader {leader.name} killed {HOLD:.0f} s, restarted"
