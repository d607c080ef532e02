"""Cluster benchmark: clusternode on minietcd against node-discover, in the same run.

Run from the repository root (needs ``node`` and ``npm ci --prefix
tests/harness/nodejs``)::

    python -m benchmarks.cluster_bench --sizes 3,10 --runs 5
    python -m benchmarks.cluster_bench --sizes 3 --runs 1 --idle 5     # a smoke run
    python -m benchmarks.cluster_bench --sizes 3,10 --runs 5 --json results.json

Run it on a quiet machine: every number is a latency on a shared CPU. The report
prints the load average before and after.

Both kinds run with default timers (hello 1 s, check 2 s, node timeout 2 s) on
127.0.0.1, one after the other within each run (the order alternates between runs):

  - clusternode: N real ``twistd -n clusternode`` processes (UDP port 0, status API
    on a free port) on one minietcd (one per benchmark, a fresh cluster name per
    run); the node ids are given on the command line so the benchmark knows them;
  - node-discover 1.2.1: N peers, each with the full unicast list (the list also
    holds the late joiner's port, unbound until it starts).

Each run, for each kind: spawn N processes back to back, then measure

  1. spawn -> full mesh (every node lists every other one), from the first spawn as
     the node-discover baseline does, and last ready -> full mesh, so that the
     import time of Python + Twisted (ready = the node's "node ... of cluster" log
     line, written once its sockets are bound; node-discover: ``started``) shows
     separately;
  2. spawn -> one master agreed (every node names the same master and it says so);
  3. a late joiner: its registry record written -> every other node lists it
     (node-discover: its ``started``, i.e. its socket bound, as it has no registry);
  4. SIGKILL of the master at a random timer phase -> every survivor names the same
     new master;
  5. SIGTERM (clean stop) of the new master, again at a random phase -> agreed again.

Then, once per benchmark, an idle cluster of ``--idle-size`` nodes of each kind is
left to settle and sampled over ``--idle`` seconds: CPU as % of one core (ns
resolution, from /proc schedstat) and RSS per process; minietcd's own CPU and RSS
are reported beside it, as a cost the clusternode cluster adds.

How clusternode is observed: not by polling. Each node pushes its status document
on its ``GET /events`` stream the moment anything changes, and each document
carries the node's own clock at that moment, so event times are node times (see
L{benchmarks.clusternode_procs}); the record write is taken from a separate
long-poll watch on minietcd or the joiner's "registered" log line, whichever is
earlier. The streams also push once a second; they are closed for the idle sample.
node-discover is observed through its events (``tests/harness/nodediscover.py``).

Start-up is measured from bytecode cached as an installed package has it (a
prefix in the temp dir, filled by one warm-up node): the checkout's environment
sets PYTHONDONTWRITEBYTECODE, which would add ~0.25 s of compiling to every start
(``--no-bytecode-cache`` measures that way). Observation costs the nodes one JSON
render per change (~30 us for 3 nodes, ~170 us for 30): negligible up to 10 nodes,
a few per cent of the CPU of a 30-node cold start.

Output: one markdown table per size (metric, clusternode, node-discover, ratio,
goal, PASS/FAIL), medians and maxima in ms; with ``--json PATH`` also every run's
raw numbers (``-`` writes the JSON to stdout and the tables to stderr).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from attrs import asdict, frozen

from benchmarks.clusternode_procs import (
    ClusterNodeProcess,
    ClusterView,
    agreed_master,
    bytecode_env,
    meshed,
    removed_everywhere,
    seen_by,
    stop_nodes,
    watch_for_key,
)
from benchmarks.nodediscover_baseline import (
    WAIT_S,
    first_event,
    measure_idle,
    mesh_time,
    now_ms,
)
from benchmarks.procstats import ProcSample, sample
from benchmarks.report import write_json
from tests.harness.nodediscover import (
    NodeDiscoverPeer,
    free_udp_port,
    masters_agreed,
    spawn_mesh,
    stop_all,
)
from tests.harness.servers import MiniEtcdProcess

#: The default timers both kinds run with (seconds).
HELLO_S = 1.0
CHECK_S = 2.0
NODE_TIMEOUT_S = 2.0
#: Time after an agreement in which a second promotion would still be counted.
SETTLE_S = 0.5
#: Settling time before an idle sample.
IDLE_SETTLE_S = 3.0

Metrics = dict[str, float | bool]


def wait_bound(size: int) -> float:
    """Bound for any one wait: generous, as N processes import Twisted on 2 cores."""
    return 20.0 + 1.5 * size


def agreed(latest: Any) -> bool:
    """Condition: every node names the same master, which claims it."""
    return agreed_master(latest) is not None


def _promotions(nodes: Sequence[ClusterNodeProcess], start: float, end: float) -> int:
    return sum(1 for n in nodes for t in n.promotions if start <= t < end)


def run_clusternode(
    etcd: MiniEtcdProcess,
    size: int,
    rng: random.Random,
    env: Mapping[str, str] | None = None,
) -> Metrics:
    """One clusternode run: cold start, late joiner, SIGKILL and SIGTERM of masters."""
    view = ClusterView()
    cluster = f"bench-{uuid.uuid4().hex[:8]}"
    wait = wait_bound(size)

    def node() -> ClusterNodeProcess:
        return ClusterNodeProcess(etcd.url, cluster, view, str(uuid.uuid4()), env=env)

    nodes = [node() for _ in range(size)]
    everyone = list(nodes)
    by_id = {n.node_id: n for n in nodes}
    try:
        for n in nodes:
            n.start()
        ready = [n.wait_ready(wait) for n in nodes]
        ids = list(by_id)
        t0 = min(n.spawned_at or 0.0 for n in nodes)
        mesh = view.wait(ids, meshed(ids), t0, wait, "a full mesh")
        master_at = view.wait(ids, agreed, t0, wait, "one master agreed")
        late = sum(1 for s in view.samples() if s.first and s.members)

        joiner = node()
        everyone.append(joiner)
        by_id[joiner.node_id] = joiner
        written = watch_for_key(
            etcd.url,
            f"/twistednode/{cluster}/members",
            joiner.node_id,
            joiner.ttl,
            wait,
        )
        joiner.start()
        joiner.wait_ready(wait)
        current = [*ids, joiner.node_id]
        assert joiner.spawned_at is not None
        seen = view.wait(
            current, seen_by(current, joiner.node_id), joiner.spawned_at, wait, "joiner"
        )
        joined = view.wait(
            current, meshed(current), joiner.spawned_at, wait, "mesh with joiner"
        )
        watched = written()
        if watched is None:
            raise RuntimeError("the joiner's registry record was never seen written")
        registered = watched.at
        assert joiner.ready_at is not None

        time.sleep(rng.uniform(0, CHECK_S))
        view.wait(current, agreed, 0.0, wait, "a master")
        victim_id = agreed_master(view.latest(current))
        if victim_id is None:
            raise RuntimeError("the nodes do not agree on a master before the kill")
        victim = by_id[victim_id]
        killed = victim.signal(signal.SIGKILL)
        victim.wait_exit()
        survivors = [i for i in current if i != victim_id]
        removed = view.wait(
            survivors, removed_everywhere(survivors, victim_id), killed, wait, "removal"
        )
        kill_agreed = view.wait(survivors, agreed, killed, wait, "a new master")

        time.sleep(rng.uniform(0, CHECK_S))
        leaver_id = agreed_master(view.latest(survivors))
        assert leaver_id is not None
        leaver = by_id[leaver_id]
        rest = [i for i in survivors if i != leaver_id]
        stopped = leaver.signal(signal.SIGTERM)
        stop_agreed = view.wait(rest, agreed, stopped, wait, "a master after a stop")
        leaver.wait_exit()
        time.sleep(SETTLE_S)
        end = time.time()
    finally:
        stop_nodes(everyone)

    def one_master(nodes_: list[str], start: float, stop: float) -> bool:
        return (
            _promotions(everyone, start, stop) == 1
            and view.max_masters(nodes_, start, stop) <= 1
        )

    return {
        "spawn_to_ready": (max(ready) - t0) * 1000,
        "spawn_to_mesh": (mesh - t0) * 1000,
        "ready_to_mesh": (mesh - max(ready)) * 1000,
        "spawn_to_master": (master_at - t0) * 1000,
        "register_to_seen": (seen - registered) * 1000,
        "register_to_sees_all": (joined - registered) * 1000,
        "join_spawn_to_seen": (seen - joiner.spawned_at) * 1000,
        "join_spawn_to_ready": (joiner.ready_at - joiner.spawned_at) * 1000,
        "join_spawn_to_registered": (registered - joiner.spawned_at) * 1000,
        "join_spawn_to_watched": (watched.seen - joiner.spawned_at) * 1000,
        "join_spawn_to_logged": -1.0
        if joiner.registered_at is None
        else (joiner.registered_at - joiner.spawned_at) * 1000,
        "kill_to_removed": (removed - killed) * 1000,
        "kill_to_master": (kill_agreed - killed) * 1000,
        "stop_to_master": (stop_agreed - stopped) * 1000,
        "start_one_master": one_master(current, t0, killed),
        "kill_one_master": one_master(survivors, killed, stopped),
        "stop_one_master": one_master(rest, stopped, end),
        "late_attach": float(late),
    }


def nd_agreed(
    peers: Sequence[NodeDiscoverPeer], marks: Sequence[int], wait: float
) -> tuple[NodeDiscoverPeer, float, float]:
    """The first peer to promote after C{marks}; (it, promotion, all others saw it).

    Follows the peer that actually promotes rather than the heaviest: peers spawned
    in the same millisecond have equal default weights, and then node-discover lets
    whichever checks first win.
    """
    deadline = time.monotonic() + wait
    while True:
        found = [
            (events[0].mono_ms, i)
            for i, (p, m) in enumerate(zip(peers, marks, strict=True))
            if (events := p.events("promotion", m))
        ]
        if found:
            promotion, index = min(found)
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"no node-discover peer promoted within {wait:.0f} s")
        time.sleep(0.01)
    master = peers[index]
    agreed = promotion
    for peer, mark in zip(peers, marks, strict=True):
        if peer is not master:
            seen = first_event(
                peer,
                lambda e: e.kind == "master" and e.node_id == master.iid,
                "master event",
                mark,
            )
            agreed = max(agreed, seen.mono_ms)
    return master, promotion, agreed


def nd_one_master(peers: Sequence[NodeDiscoverPeer], marks: Sequence[int]) -> bool:
    """Exactly one promotion since C{marks}, and every peer names one master."""
    promotions = sum(
        len(p.events("promotion", m)) for p, m in zip(peers, marks, strict=True)
    )
    return promotions == 1 and masters_agreed(peers) is not None


def nd_sees_all(peer: NodeDiscoverPeer, others: Sequence[NodeDiscoverPeer]) -> float:
    """Block until C{peer} has added every one of C{others}; when the last was."""
    ids = {p.iid for p in others}
    peer.wait_until(lambda: ids <= peer.added_ids(), WAIT_S, "added every peer")
    return max(e.mono_ms for e in peer.events("added") if e.node_id in ids)


def nd_master_leaves(
    peers: Sequence[NodeDiscoverPeer], rng: random.Random, *, clean: bool
) -> tuple[dict[str, float | bool], list[NodeDiscoverPeer]]:
    """Kill or stop the agreed master at a random phase; time the recovery."""
    time.sleep(rng.uniform(0, CHECK_S))
    iid = masters_agreed(peers)
    if iid is None:
        raise RuntimeError("node-discover peers do not agree on a master")
    master = next(p for p in peers if p.iid == iid)
    survivors = [p for p in peers if p is not master]
    marks = [p.mark() for p in survivors]
    left = now_ms()
    if clean:
        master.stop()
    else:
        master.kill()
    removed = max(
        first_event(
            p,
            lambda e: e.kind == "removed" and e.node_id == iid,
            "removal of the old master",
            m,
        ).mono_ms
        for p, m in zip(survivors, marks, strict=True)
    )
    _, _, agreed = nd_agreed(survivors, marks, WAIT_S)
    time.sleep(SETTLE_S)
    return {
        "removed": removed - left,
        "agreed": agreed - left,
        "one_master": nd_one_master(survivors, marks),
    }, survivors


def run_nodediscover(size: int, rng: random.Random) -> Metrics:
    """The same steps with node-discover peers on a full unicast list."""
    wait = wait_bound(size)
    joiner_port = free_udp_port()
    peers = spawn_mesh(size, extra_unicast=[f"127.0.0.1:{joiner_port}"], wait=False)
    everyone = list(peers)
    try:
        for p in peers:
            p.wait_started(wait)
        t0 = min(p.spawned_at_ms or 0.0 for p in peers)
        last_started = max(p.started_event.mono_ms for p in peers)
        meshed_at = mesh_time(peers)
        _, _, master_at = nd_agreed(peers, [0] * size, wait)
        time.sleep(SETTLE_S)
        start_one_master = nd_one_master(peers, [0] * size)

        joiner = NodeDiscoverPeer.create(
            joiner_port, unicast=peers[0].options["unicast"]
        )
        everyone.append(joiner)
        joiner.start()
        started = joiner.wait_started(wait).mono_ms
        iid = joiner.iid
        seen = max(
            first_event(
                p, lambda e: e.kind == "added" and e.node_id == iid, "joiner"
            ).mono_ms
            for p in peers
        )
        sees_all = nd_sees_all(joiner, peers)

        kill, survivors = nd_master_leaves(everyone, rng, clean=False)
        stop, _ = nd_master_leaves(survivors, rng, clean=True)
    finally:
        stop_all(everyone)
    return {
        "spawn_to_ready": last_started - t0,
        "spawn_to_mesh": meshed_at - t0,
        "ready_to_mesh": meshed_at - last_started,
        "spawn_to_master": master_at - t0,
        "register_to_seen": seen - started,
        "register_to_sees_all": sees_all - started,
        "join_spawn_to_seen": seen - (joiner.spawned_at_ms or 0.0),
        "kill_to_removed": kill["removed"],
        "kill_to_master": kill["agreed"],
        "stop_to_master": stop["agreed"],
        "start_one_master": start_one_master,
        "kill_one_master": kill["one_master"],
        "stop_one_master": stop["one_master"],
    }


def warm_up(etcd: MiniEtcdProcess, env: Mapping[str, str] | None) -> None:
    """Start and stop one node, so that what the nodes import is compiled once."""
    node = ClusterNodeProcess(
        etcd.url, "warmup", ClusterView(), str(uuid.uuid4()), env=env, follow=False
    )
    try:
        node.start()
        node.wait_ready(60.0)
        deadline = time.monotonic() + 10.0
        while node.registered_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop_nodes([node])


@frozen
class IdleResult:
    """Idle samples of one kind's nodes (and minietcd for clusternode)."""

    nodes: list[ProcSample]
    registry: ProcSample | None


def idle_clusternode(
    etcd: MiniEtcdProcess,
    size: int,
    seconds: float,
    env: Mapping[str, str] | None = None,
) -> IdleResult:
    """A settled clusternode cluster, streams closed, sampled with minietcd."""
    view = ClusterView()
    cluster = f"idle-{uuid.uuid4().hex[:8]}"
    nodes = [
        ClusterNodeProcess(etcd.url, cluster, view, str(uuid.uuid4()), env=env)
        for _ in range(size)
    ]
    try:
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready(wait_bound(size))
        ids = [n.node_id for n in nodes]
        view.wait(ids, meshed(ids), 0.0, wait_bound(size), "a full mesh")
        view.wait(ids, agreed, 0.0, wait_bound(size), "one master")
        for n in nodes:
            n.detach()
        time.sleep(IDLE_SETTLE_S)
        assert etcd.pid is not None
        samples = sample([n.pid for n in nodes] + [etcd.pid], seconds)
    finally:
        stop_nodes(nodes)
    return IdleResult(samples[:-1], samples[-1])


def idle_nodediscover(size: int, seconds: float) -> IdleResult:
    """A settled node-discover cluster (unicast list of exactly its peers)."""
    peers = spawn_mesh(size, wait=False)
    try:
        for p in peers:
            p.wait_started(wait_bound(size))
        mesh_time(peers)
        nd_agreed(peers, [0] * size, wait_bound(size))
        time.sleep(IDLE_SETTLE_S)
        samples = measure_idle(peers, seconds)
    finally:
        stop_all(peers)
    return IdleResult(samples, None)


# -- report ---------------------------------------------------------------------------

Verdict = Callable[[float, float | None], bool]


@frozen
class Row:
    """One line of the table: a statistic of one metric, and its goal if any."""

    label: str
    key: str
    stat: str  # "median" or "max"
    goal: str = ""
    verdict: Verdict | None = None


def _half(ours: float, theirs: float | None) -> bool:
    return theirs is not None and ours <= 0.5 * theirs


ROWS = [
    Row("spawn -> last process ready", "spawn_to_ready", "median"),
    Row("spawn -> full mesh", "spawn_to_mesh", "median", "<= 0.5 x n-d", _half),
    Row("spawn -> full mesh", "spawn_to_mesh", "max"),
    Row("last ready -> full mesh", "ready_to_mesh", "median"),
    Row(
        "spawn -> one master agreed", "spawn_to_master", "median", "<= 0.5 x n-d", _half
    ),
    Row("spawn -> one master agreed", "spawn_to_master", "max"),
    Row("new node registered -> seen by all", "register_to_seen", "median"),
    Row(
        "new node registered -> seen by all",
        "register_to_seen",
        "max",
        "<= 50 ms",
        lambda ours, _: ours <= 50,
    ),
    Row("new node registered -> it sees all", "register_to_sees_all", "median"),
    Row("new node spawn -> seen by all", "join_spawn_to_seen", "median"),
    Row("SIGKILL master -> last survivor removed", "kill_to_removed", "median"),
    Row("SIGKILL master -> new master agreed", "kill_to_master", "median"),
    Row(
        "SIGKILL master -> new master agreed",
        "kill_to_master",
        "max",
        f"<= {(NODE_TIMEOUT_S + 0.25) * 1000:.0f} ms",
        lambda ours, _: ours <= (NODE_TIMEOUT_S + 0.25) * 1000,
    ),
    Row("SIGTERM master -> new master agreed", "stop_to_master", "median"),
    Row(
        "SIGTERM master -> new master agreed",
        "stop_to_master",
        "max",
        "<= 100 ms",
        lambda ours, _: ours <= 100,
    ),
]
CHECKS = [
    ("one master at start, never two", "start_one_master"),
    ("one new master after SIGKILL", "kill_one_master"),
    ("one new master after SIGTERM", "stop_one_master"),
]


def _stat(values: Sequence[float], stat: str) -> float:
    return statistics.median(values) if stat == "median" else max(values)


def _cell(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(ours: float, theirs: float | None) -> str:
    return "-" if not theirs else f"{ours / theirs:.2f}"


def size_rows(
    cn: Sequence[Metrics],
    nd: Sequence[Metrics],
    failed: tuple[int, int] = (0, 0),
) -> list[dict[str, Any]]:
    """The table of one size as dicts (for the JSON and the markdown).

    C{failed} counts the runs of each kind that ended in an error (a timeout).
    """
    rows: list[dict[str, Any]] = []
    for row in ROWS:
        ours = _stat([float(r[row.key]) for r in cn], row.stat) if cn else None
        theirs = _stat([float(r[row.key]) for r in nd], row.stat) if nd else None
        ok: bool | None = None
        if row.verdict is not None:
            ok = ours is not None and row.verdict(ours, theirs)
        rows.append(
            {
                "metric": f"{row.label} ({row.stat}, ms)",
                "clusternode": ours,
                "node-discover": theirs,
                "ratio": None if ours is None or not theirs else ours / theirs,
                "goal": row.goal,
                "pass": ok,
            }
        )
    for label, key in CHECKS:
        rows.append(
            {
                "metric": f"{label} (runs)",
                "clusternode": f"{sum(bool(r[key]) for r in cn)}/{len(cn)}",
                "node-discover": f"{sum(bool(r[key]) for r in nd)}/{len(nd)}",
                "ratio": None,
                "goal": "every run",
                "pass": bool(cn) and all(bool(r[key]) for r in cn),
            }
        )
    rows.append(
        {
            "metric": "runs that failed (an error or a timeout)",
            "clusternode": str(failed[0]),
            "node-discover": str(failed[1]),
            "ratio": None,
            "goal": "none",
            "pass": failed[0] == 0,
        }
    )
    return rows


def idle_rows(cn: IdleResult, nd: IdleResult | None) -> list[dict[str, Any]]:
    """The idle table as dicts."""

    def cpu(r: IdleResult) -> list[float]:
        return [s.cpu_percent for s in r.nodes]

    def rss(r: IdleResult) -> list[float]:
        return [s.rss_bytes / 2**20 for s in r.nodes]

    rows: list[dict[str, Any]] = []
    for label, get, stat, goal, verdict in [
        ("idle CPU, % of a core per node", cpu, "median", "", None),
        ("idle CPU, % of a core per node", cpu, "max", "<= 0.2 %", "cpu"),
        ("RSS per node, MiB", rss, "median", "<= n-d", "rss"),
        ("RSS per node, MiB", rss, "max", "", None),
    ]:
        ours = _stat(get(cn), stat)
        theirs = _stat(get(nd), stat) if nd is not None else None
        ok: bool | None = None
        if verdict == "cpu":
            ok = ours <= 0.2
        elif verdict == "rss":
            ok = theirs is not None and ours <= theirs
        rows.append(
            {
                "metric": f"{label} ({stat})",
                "clusternode": ours,
                "node-discover": theirs,
                "ratio": None if not theirs else ours / theirs,
                "goal": goal,
                "pass": ok,
            }
        )
    if cn.registry is not None:
        rows.append(
            {
                "metric": "minietcd (one, serving the cluster): CPU %",
                "clusternode": cn.registry.cpu_percent,
                "node-discover": None,
                "ratio": None,
                "goal": "",
                "pass": None,
            }
        )
        rows.append(
            {
                "metric": "minietcd: RSS, MiB",
                "clusternode": cn.registry.rss_bytes / 2**20,
                "node-discover": None,
                "ratio": None,
                "goal": "",
                "pass": None,
            }
        )
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of rows."""
    lines = [
        "| metric | clusternode | node-discover | ratio | goal | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        digits = 3 if "CPU" in r["metric"] else 1 if "MiB" in r["metric"] else 0

        def show(value: Any, digits: int = digits) -> str:
            return value if isinstance(value, str) else _cell(value, digits)

        verdict = {None: "", True: "PASS", False: "FAIL"}[r["pass"]]
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(
            f"| {r['metric']} | {show(r['clusternode'])} | {show(r['node-discover'])} "
            f"| {ratio} | {r['goal']} | {verdict} |"
        )
    return "\n".join(lines)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run both kinds per size, print the tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="3,10", help="comma-separated node counts")
    parser.add_argument("--runs", type=int, default=5, help="runs per size")
    parser.add_argument(
        "--idle", type=float, default=20.0, help="idle sample seconds (0: skip)"
    )
    parser.add_argument("--idle-size", type=int, default=3, help="idle cluster size")
    parser.add_argument("--seed", type=int, default=None, help="kill-phase seed")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="let clusternode compile the project at every start (a checkout run "
        "with PYTHONDONTWRITEBYTECODE) instead of caching bytecode as an install",
    )
    parser.add_argument(
        "--json", default=None, help="write raw results here (- = stdout)"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = random.Random(args.seed)
    out: TextIO = sys.stderr if args.json == "-" else sys.stdout
    result: dict[str, Any] = {
        "meta": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_before": _load(),
            "timers_s": {
                "hello": HELLO_S,
                "check": CHECK_S,
                "node_timeout": NODE_TIMEOUT_S,
            },
            "observation": "clusternode: pushed /events documents, node clock; "
            "node-discover: event lines, CLOCK_MONOTONIC",
        },
        "sizes": {},
    }
    print(
        "# cluster benchmark: clusternode on minietcd vs node-discover 1.2.1", file=out
    )
    print(f"load average before: {result['meta']['load_before']}", file=out)
    env: dict[str, str] | None = None
    if not args.no_bytecode_cache:
        env = bytecode_env(os.path.join(tempfile.gettempdir(), "twistednode-pycache"))
    result["meta"]["bytecode_cached"] = env is not None
    print(
        "clusternode bytecode: "
        + ("cached (as installed)" if env is not None else "compiled at each start"),
        file=out,
    )
    etcd = MiniEtcdProcess().start()
    try:
        warm_up(etcd, env)
        if args.idle > 0:
            idle_load = _load()
            cn_idle = idle_clusternode(etcd, args.idle_size, args.idle, env)
            nd_idle = idle_nodediscover(args.idle_size, args.idle)
            rows = idle_rows(cn_idle, nd_idle)
            result["idle"] = {
                "size": args.idle_size,
                "seconds": args.idle,
                "load_before": idle_load,
                "clusternode": asdict(cn_idle),
                "node-discover": asdict(nd_idle),
                "rows": rows,
            }
            print(
                f"\n## idle, {args.idle_size} nodes, {args.idle:.0f} s "
                f"(load before: {idle_load:.2f}; CPU figures grow with load)",
                file=out,
            )
            print(markdown(rows), file=out)
            out.flush()
        for size in sizes:
            cn: list[Metrics] = []
            nd: list[Metrics] = []
            errors: dict[str, list[str]] = {"clusternode": [], "node-discover": []}
            loads: list[float] = []

            def cn_run(size: int = size) -> Metrics:
                return run_clusternode(etcd, size, rng, env)

            def nd_run(size: int = size) -> Metrics:
                return run_nodediscover(size, rng)

            for i in range(args.runs):
                loads.append(_load())
                kinds = [("clusternode", cn_run, cn), ("node-discover", nd_run, nd)]
                for kind, run, into in kinds if i % 2 == 0 else kinds[::-1]:
                    try:
                        into.append(run())
                    except (AssertionError, RuntimeError, TimeoutError) as e:
                        errors[kind].append(str(e)[:2000])
                        print(f"# {kind} run failed: {e}"[:2000], file=sys.stderr)
                print(f"# size {size} run {i + 1}/{args.runs} done", file=sys.stderr)
            failed = (len(errors["clusternode"]), len(errors["node-discover"]))
            rows = size_rows(cn, nd, failed)
            result["sizes"][str(size)] = {
                "runs": args.runs,
                "load_at_run_start": loads,
                "clusternode": cn,
                "node-discover": nd,
                "errors": errors,
                "rows": rows,
            }
            print(
                f"\n## {size} nodes, {args.runs} runs (load at run starts: "
                f"{', '.join(f'{x:.2f}' for x in loads)})",
                file=out,
            )
            print(markdown(rows), file=out)
            print(
                'n-d has no registry: its "registered" is the joiner\'s bind '
                "(`started`); ratio = clusternode / node-discover",
                file=out,
            )
            late = sum(float(r["late_attach"]) for r in cn)
            if late:
                print(
                    f"note: {late:.0f} event streams attached after their node had "
                    "members; those times are upper bounds",
                    file=out,
                )
            out.flush()
    finally:
        etcd.stop()
    result["meta"]["load_after"] = _load()
    print(f"\nload average after: {result['meta']['load_after']}", file=out)
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
