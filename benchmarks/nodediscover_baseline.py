"""Baseline: how fast real node-discover 1.2.1 peers mesh, elect and fail over.

Run from the repository root (needs node and ``npm ci --prefix tests/harness/nodejs``)::

    python -m benchmarks.nodediscover_baseline --sizes 3,10 --runs 5 --idle 10

Each run spawns N peers back to back on distinct 127.0.0.1 ports, each with the full
unicast list and node-discover's default timers, and measures (ms, CLOCK_MONOTONIC:
the peers' process.hrtime and Python's time.monotonic are the same clock):

  - spawn -> full mesh: from the first spawn until every peer emitted ``added`` for
    every other one (also from the last ``started``);
  - spawn -> one master agreed: until the heaviest (oldest) peer promoted and every
    other peer emitted ``master`` for it;
  - SIGKILL of the master (at a random timer phase) -> the heavier survivor promoted
    and every other survivor emitted ``master`` for it;
  - an idle member: % of one core and RSS, sampled from /proc over a window.

The measuring functions take started peers and return frozen results, so a later
benchmark can run a clusternode cluster through the same steps side by side.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from attrs import frozen

from benchmarks.procstats import ProcSample, sample
from tests.harness.nodediscover import (
    NodeDiscoverPeer,
    PeerEvent,
    masters_agreed,
    spawn_mesh,
    stop_all,
)

#: Bound for any one wait (default timers: discovery ~1 s, failover <= 4 s).
WAIT_S = 15.0


@frozen
class ColdStart:
    """Timings of one cold start of N peers (ms)."""

    size: int
    spawn_spread_ms: float
    started_spread_ms: float
    spawn_to_mesh_ms: float
    last_started_to_mesh_ms: float
    spawn_to_promotion_ms: float
    spawn_to_master_agreed_ms: float
    promotions: int
    master_is_heaviest: bool


@frozen
class Failover:
    """Timings after a SIGKILL of the master (ms from the kill)."""

    size: int
    kill_to_first_removed_ms: float
    kill_to_last_removed_ms: float
    kill_to_promotion_ms: float
    kill_to_master_agreed_ms: float
    promotions: int
    successor_is_heaviest: bool


def now_ms() -> float:
    """CLOCK_MONOTONIC in ms, comparable with PeerEvent.mono_ms."""
    return time.monotonic() * 1000.0


def heaviest(peers: Sequence[NodeDiscoverPeer]) -> NodeDiscoverPeer:
    """The peer node-discover's election picks: the highest weight."""
    return max(peers, key=lambda p: p.weight)


def first_event(
    peer: NodeDiscoverPeer,
    match: Callable[[PeerEvent], bool],
    description: str,
    since: int = 0,
) -> PeerEvent:
    """Block until C{peer} emits a matching event; return it."""
    return peer.wait_for(match, WAIT_S, description, since=since)


def mesh_time(peers: Sequence[NodeDiscoverPeer]) -> float:
    """Block until the mesh is full; return when its last ``added`` happened."""
    iids = {p.iid for p in peers}
    done = 0.0
    for peer in peers:
        others = iids - {peer.iid}

        def meshed(peer: NodeDiscoverPeer = peer, others: set[str] = others) -> bool:
            return others <= peer.added_ids()

        peer.wait_until(meshed, WAIT_S, "added for every other peer")
        done = max(
            done, max(e.mono_ms for e in peer.events("added") if e.node_id in others)
        )
    return done


def agreed_time(
    peers: Sequence[NodeDiscoverPeer],
    master: NodeDiscoverPeer,
    since: Sequence[int],
) -> tuple[float, float]:
    """Block until C{master} promoted and the others saw it; (promotion, agreed)."""
    promotion = first_event(
        master, lambda e: e.kind == "promotion", "promotion", since[peers.index(master)]
    ).mono_ms
    agreed = promotion
    for peer, mark in zip(peers, since, strict=True):
        if peer is not master:
            seen = first_event(
                peer,
                lambda e: e.kind == "master" and e.node_id == master.iid,
                "master event",
                mark,
            )
            agreed = max(agreed, seen.mono_ms)
    return promotion, agreed


def measure_cold_start(peers: Sequence[NodeDiscoverPeer]) -> ColdStart:
    """Measure a cold start of freshly spawned C{peers} (spawned, maybe not started)."""
    for peer in peers:
        peer.wait_started(WAIT_S)
    spawned = [p.spawned_at_ms or 0.0 for p in peers]
    started = [p.started_event.mono_ms for p in peers]
    t0 = min(spawned)
    meshed = mesh_time(peers)
    master = heaviest(peers)
    promotion, agreed = agreed_time(peers, master, [0] * len(peers))
    return ColdStart(
        size=len(peers),
        spawn_spread_ms=max(spawned) - t0,
        started_spread_ms=max(started) - min(started),
        spawn_to_mesh_ms=meshed - t0,
        last_started_to_mesh_ms=meshed - max(started),
        spawn_to_promotion_ms=promotion - t0,
        spawn_to_master_agreed_ms=agreed - t0,
        promotions=sum(len(p.events("promotion")) for p in peers),
        master_is_heaviest=masters_agreed(peers) == master.iid,
    )


def measure_failover(
    peers: Sequence[NodeDiscoverPeer], *, rng: random.Random | None = None
) -> Failover:
    """SIGKILL the master of an agreed cluster at a random phase; time the recovery."""
    master = heaviest(peers)
    check_s = float(master.started_event["settings"]["checkInterval"]) / 1000
    time.sleep((rng or random.Random()).uniform(0, check_s))
    survivors = [p for p in peers if p is not master]
    marks = [p.mark() for p in survivors]
    killed_at = now_ms()
    master.kill()
    removed = [
        first_event(
            p,
            lambda e: e.kind == "removed" and e.node_id == master.iid,
            "removal of the killed master",
            mark,
        ).mono_ms
        for p, mark in zip(survivors, marks, strict=True)
    ]
    successor = heaviest(survivors)
    promotion, agreed = agreed_time(survivors, successor, marks)
    return Failover(
        size=len(peers),
        kill_to_first_removed_ms=min(removed) - killed_at,
        kill_to_last_removed_ms=max(removed) - killed_at,
        kill_to_promotion_ms=promotion - killed_at,
        kill_to_master_agreed_ms=agreed - killed_at,
        promotions=sum(
            len(p.events("promotion", m)) for p, m in zip(survivors, marks, strict=True)
        ),
        successor_is_heaviest=masters_agreed(survivors) == successor.iid,
    )


def measure_idle(peers: Sequence[NodeDiscoverPeer], seconds: float) -> list[ProcSample]:
    """CPU % of one core and RSS of every peer over C{seconds} of idling."""
    return sample([p.pid for p in peers if p.pid is not None], seconds)


@frozen
class Run:
    """One cold start, optional idle sample, one failover."""

    cold: ColdStart
    failover: Failover
    idle: list[ProcSample]


def run_once(size: int, idle_s: float, rng: random.Random) -> Run:
    """Spawn C{size} peers with default timers, measure, and stop them."""
    peers = spawn_mesh(size, wait=False)
    try:
        cold = measure_cold_start(peers)
        idle = measure_idle(peers, idle_s) if idle_s > 0 else []
        failover = measure_failover(peers, rng=rng)
    finally:
        stop_all(peers)
    return Run(cold, failover, idle)


def summarise(label: str, values: Sequence[float]) -> str:
    """One table row: median, min, max."""
    return (
        f"| {label} | {statistics.median(values):.0f} | {min(values):.0f} "
        f"| {max(values):.0f} |"
    )


def report(size: int, runs: Sequence[Run]) -> str:
    """A markdown table for the runs of one cluster size."""
    rows = [
        f"### node-discover 1.2.1, {size} peers, n = {len(runs)}",
        "",
        "| metric (ms) | median | min | max |",
        "|---|---|---|---|",
    ]
    cold_fields = [
        ("spawn -> full mesh", "spawn_to_mesh_ms"),
        ("last started -> full mesh", "last_started_to_mesh_ms"),
        ("spawn -> promotion", "spawn_to_promotion_ms"),
        ("spawn -> one master agreed", "spawn_to_master_agreed_ms"),
        ("first -> last started", "started_spread_ms"),
    ]
    for label, name in cold_fields:
        rows.append(summarise(label, [getattr(r.cold, name) for r in runs]))
    fail_fields = [
        ("SIGKILL -> first survivor removed", "kill_to_first_removed_ms"),
        ("SIGKILL -> last survivor removed", "kill_to_last_removed_ms"),
        ("SIGKILL -> new promotion", "kill_to_promotion_ms"),
        ("SIGKILL -> new master agreed", "kill_to_master_agreed_ms"),
    ]
    for label, name in fail_fields:
        rows.append(summarise(label, [getattr(r.failover, name) for r in runs]))
    idle = [s for r in runs for s in r.idle]
    if idle:
        cpu = [s.cpu_percent for s in idle]
        rss = [s.rss_bytes / 2**20 for s in idle]
        rows.append(
            f"| idle CPU, % of a core (per process) | {statistics.median(cpu):.3f} "
            f"| {min(cpu):.3f} | {max(cpu):.3f} |"
        )
        rows.append(
            f"| RSS, MiB (per process) | {statistics.median(rss):.1f} "
            f"| {min(rss):.1f} | {max(rss):.1f} |"
        )
    cold_ok = sum(r.cold.promotions == 1 and r.cold.master_is_heaviest for r in runs)
    fail_ok = sum(
        r.failover.promotions == 1 and r.failover.successor_is_heaviest for r in runs
    )
    rows += [
        "",
        f"runs with exactly one promotion at start, the heaviest: "
        f"{cold_ok}/{len(runs)}",
        f"runs with exactly one promotion after the kill, the heaviest survivor: "
        f"{fail_ok}/{len(runs)}",
    ]
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the benchmark, print one table per size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,10", help="comma-separated peer counts")
    parser.add_argument("--runs", type=int, default=3, help="runs per size")
    parser.add_argument(
        "--idle", type=float, default=10.0, help="idle sample seconds (0: skip)"
    )
    parser.add_argument("--seed", type=int, default=None, help="kill-phase seed")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    for size in (int(s) for s in args.sizes.split(",")):
        runs = []
        for i in range(args.runs):
            runs.append(run_once(size, args.idle if i == 0 else 0.0, rng))
            print(f"# size {size} run {i + 1}/{args.runs} done", file=sys.stderr)
        print(report(size, runs))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
