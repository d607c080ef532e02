"""Scale benchmark: up to a hundred nodes on one machine, clusternode vs node-discover.

Run from the repository root (needs ``node`` and ``npm ci --prefix
tests/harness/nodejs``)::

    python -m benchmarks.scale_bench                       # 10,30,50,100: ~30 min
    python -m benchmarks.scale_bench --sizes 10 --idle 20  # a smoke run, ~1 min
    python -m benchmarks.scale_bench --sizes 30,100 --json scale.json

For each N of ``--sizes``, in one run, one kind after the other (the order alternates
between sizes), with default timers (hello 1 s, check 2 s, node timeout 2 s) on
127.0.0.1:

  - clusternode: N real ``twistd -n clusternode`` processes on one minietcd (one for
    the whole benchmark, a fresh cluster name per N), bytecode cached as an install
    has it (L{benchmarks.clusternode_procs.bytecode_env});
  - node-discover 1.2.1: N peers, each given the full unicast list (which also holds
    the late joiner's port).

The start is staggered: at most ``--start-window`` (4) processes are starting at
any time, a new one is spawned when the oldest starting one is up (clusternode: its
"node ... of cluster" log line, sockets bound; node-discover: ``started``), so that
a hundred Pythons importing Twisted do not starve the nodes already up. Each step:

  1. last node up -> full mesh (every node lists every other one);
  2. ``--joins`` (5) late joiners, one after the other: its registry record written
     (minietcd's clock, from a watch) -> every node lists it, and the first and
     half of them (node-discover: from its socket bound); the joiner is then
     stopped cleanly and its removal awaited everywhere, so the idle cluster is N.
     The table shows the medians over the joiners, the JSON each one;
  3. the idle window (``--idle`` s, after 3 s of settling): per node, % of one core
     (ns, /proc schedstat, summed over threads), wake-ups per second (voluntary +
     involuntary context switches of every thread, /proc/<pid>/task/*/status; the
     main thread's alone beside it) and RSS; minietcd's CPU over the same window;
  4. false removals over the idle window: node-discover prints every ``removed``
     event anyway, so its count is exact; clusternode is asked once, after the
     window, for ``GET /status`` of every node, and each member another node does
     not list counts as one (a removal re-added within the window does not show:
     the status document has no removal counter). The nodes' log lines written in
     the window are counted too (a late check logs one).

clusternode is observed through each node's ``GET /events`` stream (documents carry
the node's clock) while it starts and while the joiner comes and goes (not the
joiner's own: it would render its document once per peer it lists, on its way to
the hellos that make the others list it); the streams are closed before the idle
window, since every stream costs its node one render of the whole document per
second (the table shows what one ``GET /status`` takes after the window).

Output: one markdown table per N (metric, clusternode, node-discover, ratio
clusternode / node-discover, goal, verdict), the load average before each step,
and with ``--json PATH`` every raw number (``-`` writes the JSON to stdout and the
tables to stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import FrameType
from typing import Any, TextIO, TypeVar

from attrs import asdict, define, field, frozen

from benchmarks.cluster_bench import (
    CHECK_S,
    HELLO_S,
    IDLE_SETTLE_S,
    NODE_TIMEOUT_S,
    markdown,
    wait_bound,
    warm_up,
)
from benchmarks.clusternode_procs import (
    ClusterNodeProcess,
    ClusterView,
    Condition,
    bytecode_env,
    meshed,
    removed_everywhere,
    seen_by,
    stop_nodes,
    watch_for_key,
)
from benchmarks.nodediscover_baseline import first_event, mesh_time
from benchmarks.procstats import sample
from benchmarks.report import write_json
from tests.harness.nodediscover import (
    NodeDiscoverPeer,
    free_udp_port,
    free_udp_ports,
    require_node_discover,
    stop_all,
)
from tests.harness.servers import MiniEtcdProcess

KINDS = ("clusternode", "node-discover")
#: How often the benchmark replays the collected documents while it waits.
POLL_S = 0.2
#: Log lines of a clusternode that say a check ran late (the process was starved).
LATE_CHECK = "s late: reading waiting hellos"

#: Its status port, free when picked, can be taken before the node binds it (an
#: outgoing connection's ephemeral port): such a node is started again on another.
PORT_IN_USE = "address already in use"
PORT_RETRIES = 3

_T = TypeVar("_T")


# -- measuring ------------------------------------------------------------------------


def load() -> tuple[float, float, float]:
    """The machine's load average (1, 5, 15 min), rounded."""
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def context_switches(pid: int) -> tuple[int, int]:
    """Voluntary + involuntary context switches of C{pid}: (all threads, main).

    Every time a thread is scheduled in it was woken (voluntary: it slept) or
    preempted (involuntary). A thread that ended takes its count with it.
    """
    total = main = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        count = 0
        try:
            with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith(
                        ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
                    ):
                        count += int(line.split()[1])
        except FileNotFoundError:
            continue
        total += count
        if tid == str(pid):
            main = count
    return total, main


@frozen
class IdleSample:
    """One process over the idle window."""

    pid: int
    cpu_percent: float
    rss_bytes: int
    wakeups_per_s: float
    main_wakeups_per_s: float
    threads: int
    window_s: float


def measure_idle(pids: Sequence[int], seconds: float) -> list[IdleSample]:
    """CPU, RSS and wake-ups of every pid over the same window."""
    before = {pid: context_switches(pid) for pid in pids}
    cpu = sample(pids, seconds)
    after = {pid: context_switches(pid) for pid in pids}
    return [
        IdleSample(
            pid=s.pid,
            cpu_percent=s.cpu_percent,
            rss_bytes=s.rss_bytes,
            wakeups_per_s=(after[s.pid][0] - before[s.pid][0]) / s.window_s,
            main_wakeups_per_s=(after[s.pid][1] - before[s.pid][1]) / s.window_s,
            threads=len(os.listdir(f"/proc/{s.pid}/task")),
            window_s=s.window_s,
        )
        for s in cpu
    ]


def staggered(
    items: Sequence[_T],
    start: Callable[[_T], object],
    ready: Callable[[_T], object],
    window: int,
) -> None:
    """Start C{items} with at most C{window} of them starting at any time."""
    pending: deque[_T] = deque()
    for item in items:
        while len(pending) >= window:
            ready(pending.popleft())
        start(item)
        pending.append(item)
    for item in pending:
        ready(item)


def poll_view(
    view: ClusterView,
    nodes: Sequence[str],
    condition: Condition,
    after: float,
    timeout: float,
    description: str,
) -> float:
    """When C{condition} first held over C{nodes} (node clocks), replaying every
    C{POLL_S}: cheaper than L{ClusterView.wait}'s replay per document when a
    hundred streams push."""
    deadline = time.monotonic() + timeout
    while True:
        found = view.first_time(nodes, condition, after)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f} s waiting for {description}"
            )
        time.sleep(POLL_S)


def fetch_status(port: int, timeout: float = 30.0) -> dict[str, Any]:
    """One node's C{GET /status} document."""
    url = f"http://127.0.0.1:{port}/status"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        document: dict[str, Any] = json.loads(response.read())
    return document


@define(eq=False)
class Session:
    """What one kind did at one N: numbers, the load before each step, any error."""

    kind: str
    size: int
    steps: list[dict[str, Any]] = field(factory=list)
    metrics: dict[str, float] = field(factory=dict)
    idle: list[IdleSample] = field(factory=list)
    registry: IdleSample | None = None
    notes: list[str] = field(factory=list)
    error: str | None = None
    #: Each late joiner's figures (JOIN_KEYS); the table shows their medians.
    joins: list[dict[str, float]] = field(factory=list)
    joins_wanted: int = 5

    def joined(self, figures: dict[str, float]) -> None:
        """Keep one late joiner's figures; the metrics hold the medians so far."""
        self.joins.append(figures)
        for key in JOIN_KEYS:
            found = [j[key] for j in self.joins if key in j]
            if found:
                self.metrics[key] = statistics.median(found)

    def step(self, name: str, out: TextIO) -> None:
        """Record and print the load average before a step."""
        now = load()
        self.steps.append({"step": name, "load": now, "at": time.time()})
        print(
            f"- N={self.size} {self.kind}: {name} (load {now[0]:.2f} / {now[1]:.2f} / "
            f"{now[2]:.2f})",
            file=out,
            flush=True,
        )


#: The figures measured for each late joiner.
JOIN_KEYS = (
    "registered_to_seen_ms",
    "registered_to_first_ms",
    "registered_to_half_ms",
    "joiner_stop_to_removed_ms",
)


def spread(delays: Sequence[float]) -> dict[str, float]:
    """The joiner seen by the first node and by half of them (ms)."""
    if not delays:
        return {}
    return {
        "registered_to_first_ms": min(delays),
        "registered_to_half_ms": statistics.median(delays),
    }


def run_clusternode(
    etcd: MiniEtcdProcess,
    session: Session,
    idle_s: float,
    window: int,
    env: Mapping[str, str] | None,
    out: TextIO,
) -> None:
    """N clusternodes: start, mesh, late joiner, idle window, false removals."""
    size = session.size
    view = ClusterView()
    cluster = f"scale-{uuid.uuid4().hex[:8]}"
    wait = wait_bound(size)

    everyone: list[ClusterNodeProcess] = []

    def node(follow: bool = True) -> ClusterNodeProcess:
        made = ClusterNodeProcess(
            etcd.url, cluster, view, str(uuid.uuid4()), env=env, follow=follow
        )
        everyone.append(made)
        return made

    slots: dict[int, ClusterNodeProcess] = {}

    def start(slot: int) -> None:
        slots[slot] = node()
        slots[slot].start()

    def up(slot: int) -> None:
        for attempt in range(PORT_RETRIES):
            try:
                slots[slot].wait_ready(wait)
                return
            except RuntimeError:
                lost = PORT_IN_USE in slots[slot].output(10**9)
                if not lost or attempt + 1 == PORT_RETRIES:
                    raise
            session.notes.append("a node lost its status port to another socket")
            slots[slot].stop()
            start(slot)

    try:
        session.step(f"start {size} nodes, {window} at a time", out)
        staggered(range(size), start, up, window)
        nodes = [slots[i] for i in range(size)]
        ready = [n.wait_ready(wait) for n in nodes]
        first_spawn = min(n.spawned_at or 0.0 for n in nodes)
        ids = [n.node_id for n in nodes]
        mesh = poll_view(view, ids, meshed(ids), 0.0, wait, "a full mesh")
        session.metrics["spawn_to_last_up_s"] = max(ready) - first_spawn
        session.metrics["up_to_mesh_ms"] = (mesh - max(ready)) * 1000
        late = sum(1 for s in view.samples() if s.first and len(s.members) >= size - 1)
        if late:
            session.notes.append(
                f"{late} streams attached to a node that was already meshed: "
                "the mesh time is an upper bound"
            )

        for number in range(session.joins_wanted):
            session.step(f"late joiner {number + 1} of {session.joins_wanted}", out)
            session.joined(late_clusternode(etcd, cluster, view, ids, node, wait))

        for n in nodes:
            n.detach()
        before = [fetch_status(n.http_port) for n in nodes]
        log_marks = [len(n.output(10**9).splitlines()) for n in nodes]
        time.sleep(IDLE_SETTLE_S)
        session.step(f"idle window, {idle_s:.0f} s, streams closed", out)
        assert etcd.pid is not None
        samples = measure_idle([n.pid for n in nodes] + [etcd.pid], idle_s)
        session.idle, session.registry = samples[:-1], samples[-1]

        after, took = [], []
        for n in nodes:
            asked = time.perf_counter()
            after.append(fetch_status(n.http_port))
            took.append((time.perf_counter() - asked) * 1000)
        # What one render of the document costs (a stream pays it every second).
        session.metrics["status_request_ms"] = statistics.median(took)
        missing = 0
        for n, document in zip(nodes, after, strict=True):
            listed = {str(m["id"]) for m in document["members"]}
            missing += len(set(ids) - {n.node_id} - listed)
        session.metrics["false_removals"] = missing
        lines = [
            line
            for n, mark in zip(nodes, log_marks, strict=True)
            for line in n.output(10**9).splitlines()[mark:]
        ]
        session.metrics["idle_log_lines"] = len(lines)
        session.metrics["idle_late_checks"] = sum(LATE_CHECK in x for x in lines)
        session.metrics["idle_record_recreations"] = sum(
            _counter(a, "recreations") - _counter(b, "recreations")
            for a, b in zip(after, before, strict=True)
        )
        if lines:
            session.notes.append("log lines in the idle window, e.g.: " + lines[0])
    finally:
        stop_nodes(everyone)


def _counter(document: Mapping[str, Any], name: str) -> float:
    counters = document.get("registry", {}).get("counters") or {}
    value = counters.get(name, 0)
    return float(value) if isinstance(value, (int, float)) else 0.0


def late_clusternode(
    etcd: MiniEtcdProcess,
    cluster: str,
    view: ClusterView,
    ids: Sequence[str],
    node: Callable[[bool], ClusterNodeProcess],
    wait: float,
) -> dict[str, float]:
    """One late joiner: seen by all, the first and half; stopped, removed (ms)."""
    # No stream on the joiner: it would render its document once per peer it
    # lists, on the way to the hellos that make the others list it.
    joiner = node(False)
    written = watch_for_key(
        etcd.url,
        f"/twistednode/{cluster}/members",
        joiner.node_id,
        joiner.ttl,
        wait,
    )
    joiner.start()
    joiner.wait_ready(wait)
    assert joiner.spawned_at is not None
    seen = poll_view(
        view,
        ids,
        seen_by(ids, joiner.node_id),
        joiner.spawned_at,
        wait,
        "the joiner seen by all",
    )
    watched = written()
    if watched is None:
        raise RuntimeError("the joiner's registry record was never seen written")
    figures = {"registered_to_seen_ms": (seen - watched.at) * 1000}
    each = [
        view.first_time([i], seen_by([i], joiner.node_id), joiner.spawned_at)
        for i in ids
    ]
    figures |= spread([(t - watched.at) * 1000 for t in each if t is not None])
    stopped = joiner.signal(signal.SIGTERM)
    joiner.wait_exit()
    gone = poll_view(
        view,
        ids,
        removed_everywhere(ids, joiner.node_id),
        stopped,
        wait,
        "the joiner's removal",
    )
    figures["joiner_stop_to_removed_ms"] = (gone - stopped) * 1000
    return figures


def late_nodediscover(
    peers: Sequence[NodeDiscoverPeer], joiner: NodeDiscoverPeer, wait: float
) -> dict[str, float]:
    """One late node-discover peer, as L{late_clusternode} (from its socket bound)."""
    joiner.start()
    bound = joiner.wait_started(wait).mono_ms
    iid = joiner.iid

    def added(e: Any) -> bool:
        return bool(e.kind == "added" and e.node_id == iid)

    seen = max(first_event(p, added, "the joiner").mono_ms for p in peers)
    figures = {"registered_to_seen_ms": seen - bound}
    figures |= spread(
        [
            e.mono_ms - bound
            for p in peers
            for e in p.events("added")
            if e.node_id == iid
        ]
    )
    marks = [p.mark() for p in peers]
    stopped = time.monotonic() * 1000

    def removed(e: Any) -> bool:
        return bool(e.kind == "removed" and e.node_id == iid)

    joiner.stop()
    gone = max(
        first_event(p, removed, "the joiner's removal", m).mono_ms
        for p, m in zip(peers, marks, strict=True)
    )
    figures["joiner_stop_to_removed_ms"] = gone - stopped
    return figures


def run_nodediscover(session: Session, idle_s: float, window: int, out: TextIO) -> None:
    """N node-discover peers: the same steps; removals from their own events."""
    size = session.size
    wait = wait_bound(size)
    joiner_port = free_udp_port()
    ports = free_udp_ports(size)
    unicast = [f"127.0.0.1:{p}" for p in ports] + [f"127.0.0.1:{joiner_port}"]
    peers = [NodeDiscoverPeer.create(p, unicast=unicast) for p in ports]
    everyone = list(peers)
    try:
        session.step(f"start {size} peers, {window} at a time", out)
        staggered(peers, lambda p: p.start(), lambda p: p.wait_started(wait), window)
        first_spawn = min(p.spawned_at_ms or 0.0 for p in peers)
        last_up = max(p.started_event.mono_ms for p in peers)
        meshed_at = mesh_time(peers)
        session.metrics["spawn_to_last_up_s"] = (last_up - first_spawn) / 1000
        session.metrics["up_to_mesh_ms"] = meshed_at - last_up

        joiners: set[str] = set()
        for number in range(session.joins_wanted):
            session.step(f"late joiner {number + 1} of {session.joins_wanted}", out)
            joiner = NodeDiscoverPeer.create(joiner_port, unicast=unicast)
            everyone.append(joiner)
            session.joined(late_nodediscover(peers, joiner, wait))
            joiners.add(joiner.iid)

        time.sleep(IDLE_SETTLE_S)
        marks = [p.mark() for p in peers]
        session.step(f"idle window, {idle_s:.0f} s", out)
        session.idle = measure_idle([p.pid for p in peers if p.pid is not None], idle_s)
        session.metrics["false_removals"] = sum(
            1
            for p, m in zip(peers, marks, strict=True)
            for e in p.events("removed", m)
            if e.node_id not in joiners
        )
    finally:
        stop_all(everyone)


# -- report ---------------------------------------------------------------------------


def _median(values: Iterable[float]) -> float | None:
    found = list(values)
    return statistics.median(found) if found else None


def summary(session: Session | None, ncpu: int) -> dict[str, float | None]:
    """The figures of the table for one kind at one N (None where missing)."""
    if session is None:
        return {}
    figures: dict[str, float | None] = {"ran": 1.0}
    idle, registry = session.idle, session.registry
    cpu = [s.cpu_percent for s in idle]
    figures |= {
        "cpu_median": _median(cpu),
        "cpu_max": max(cpu) if cpu else None,
        "wakeups_median": _median(s.wakeups_per_s for s in idle),
        "main_wakeups_median": _median(s.main_wakeups_per_s for s in idle),
        "threads_median": _median(float(s.threads) for s in idle),
        "rss_median": _median(s.rss_bytes / 2**20 for s in idle),
        "machine_share": sum(cpu) / ncpu if cpu else None,
        "registry_cpu": None if registry is None else registry.cpu_percent,
        "registry_wakeups": None if registry is None else registry.wakeups_per_s,
    }
    for key in (
        "up_to_mesh_ms",
        "registered_to_seen_ms",
        "registered_to_first_ms",
        "registered_to_half_ms",
        "joiner_stop_to_removed_ms",
        "spawn_to_last_up_s",
        "false_removals",
        "idle_log_lines",
        "status_request_ms",
    ):
        figures[key] = session.metrics.get(key)
    figures["joins"] = float(len(session.joins))
    return figures


@frozen
class Row:
    """One line of a table: a figure, how to print it, and its goal at this N."""

    label: str
    key: str
    digits: int
    goal: Callable[[int], str | None] = lambda size: None
    verdict: Callable[[float, float | None], bool] | None = None


def _at(sizes: Sequence[int], text: str) -> Callable[[int], str | None]:
    return lambda size: text if size in sizes else None


def _no_more(ours: float, theirs: float | None) -> bool:
    return theirs is not None and ours <= theirs


ROWS = [
    Row(
        "idle CPU per node, median (% of one core)",
        "cpu_median",
        3,
        _at((30, 100), "<= n-d"),
        _no_more,
    ),
    Row("idle CPU per node, max (% of one core)", "cpu_max", 3),
    Row("wake-ups /s per node, all threads (median)", "wakeups_median", 1),
    Row("wake-ups /s per node, main thread (median)", "main_wakeups_median", 1),
    Row("threads per process (median)", "threads_median", 0),
    Row("RSS per node, median (MiB)", "rss_median", 1),
    Row(
        "all nodes together (% of the machine)",
        "machine_share",
        2,
        _at((100,), "<= 50 %"),
        lambda ours, _: ours <= 50,
    ),
    Row("minietcd (% of one core)", "registry_cpu", 3),
    Row("minietcd wake-ups /s", "registry_wakeups", 1),
    Row("first spawn -> last node up (s)", "spawn_to_last_up_s", 1),
    Row(
        "last node up -> full mesh (ms)",
        "up_to_mesh_ms",
        0,
        _at((100,), "<= 1000 ms"),
        lambda ours, _: ours <= 1000,
    ),
    Row(
        "registered node seen by all (ms, median of the joiners)",
        "registered_to_seen_ms",
        1,
        _at((30,), "<= 50 ms"),
        lambda ours, _: ours <= 50,
    ),
    Row("... seen by the first node (ms)", "registered_to_first_ms", 1),
    Row("... seen by half the nodes (ms)", "registered_to_half_ms", 1),
    Row("joiner stopped -> removed by all (ms)", "joiner_stop_to_removed_ms", 0),
    Row(
        "false removals over the idle window",
        "false_removals",
        0,
        _at((100,), "0"),
        lambda ours, _: ours == 0,
    ),
    Row("log lines written in the idle window", "idle_log_lines", 0),
    Row("one GET /status after the window, median (ms)", "status_request_ms", 2),
]


def table_rows(
    size: int, cn: Mapping[str, Any], nd: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The rows of one N in the form L{benchmarks.cluster_bench.markdown} prints.

    The verdicts are on clusternode's figures: blank if it was not run, FAIL if it
    ran but a figure is missing (it did not start, or an error cut it short).
    """
    rows: list[dict[str, Any]] = []
    for row in ROWS:
        ours, theirs = cn.get(row.key), nd.get(row.key)
        goal = row.goal(size)
        ok: bool | None = None
        if goal is not None and row.verdict is not None and cn:
            ok = ours is not None and row.verdict(ours, theirs)
        rows.append(
            {
                "metric": row.label,
                "clusternode": "-" if ours is None else f"{ours:.{row.digits}f}",
                "node-discover": "-" if theirs is None else f"{theirs:.{row.digits}f}",
                "ratio": None if ours is None or not theirs else ours / theirs,
                "goal": goal or "",
                "pass": ok,
            }
        )
    return rows


# -- main -----------------------------------------------------------------------------


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _node_version() -> str:
    try:
        return subprocess.run(
            [require_node_discover(), "--version"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except Exception as e:
        return f"unavailable ({e})"


def _tree() -> str:
    """The commit measured, and the measured packages' uncommitted files if any."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "twistednode", "minietcd", "tapkit"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError) as e:
        return f"unknown ({e})"
    changed = [line[3:] for line in dirty if line.strip()]
    return head + (f" + uncommitted {', '.join(changed)}" if changed else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run each N with both kinds, print the tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10,30,50,100", help="node counts")
    parser.add_argument("--kinds", default=",".join(KINDS), help="kinds to run")
    parser.add_argument("--idle", type=float, default=180.0, help="idle window, s")
    parser.add_argument(
        "--start-window",
        type=int,
        default=4,
        help="at most this many processes starting at once",
    )
    parser.add_argument(
        "--joins",
        type=int,
        default=5,
        help="late joiners per N, one after the other (the table shows medians)",
    )
    parser.add_argument("--json", default=None, help="raw results here (- = stdout)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    out: TextIO = sys.stderr if args.json == "-" else sys.stdout
    ncpu = os.cpu_count() or 1
    # Unwind (and stop every process) on SIGTERM, and on SIGINT even where it was
    # ignored (a background job).
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    began = time.time()
    result: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(began)),
            "argv": sys.argv,
            "python": platform.python_version(),
            "node": _node_version() if "node-discover" in kinds else None,
            "cpus": ncpu,
            "tree": _tree(),
            "idle_s": args.idle,
            "start_window": args.start_window,
            "timers_s": {
                "hello": HELLO_S,
                "check": CHECK_S,
                "node_timeout": NODE_TIMEOUT_S,
            },
            "load_before": load(),
        },
        "sizes": {},
    }
    meta = result["meta"]
    print("# scale benchmark: clusternode on minietcd vs node-discover 1.2.1", file=out)
    print(
        f"{meta['date']}; {ncpu} cores; Python {meta['python']}, node {meta['node']}; "
        f"default timers; idle window {args.idle:.0f} s; staggered start, at most "
        f"{args.start_window} processes starting at once; tree {meta['tree']}; "
        "load average before: " + " / ".join(f"{x:.2f}" for x in meta["load_before"]),
        file=out,
        flush=True,
    )
    env = bytecode_env(os.path.join(tempfile.gettempdir(), "twistednode-pycache"))
    etcd = MiniEtcdProcess().start()
    try:
        if "clusternode" in kinds:
            warm_up(etcd, env)
        for index, size in enumerate(sizes):
            sessions: dict[str, Session] = {}
            order = kinds if index % 2 == 0 else kinds[::-1]
            for kind in order:
                session = sessions[kind] = Session(kind, size, joins_wanted=args.joins)
                try:
                    if kind == "clusternode":
                        run_clusternode(
                            etcd, session, args.idle, args.start_window, env, out
                        )
                    else:
                        run_nodediscover(session, args.idle, args.start_window, out)
                except (AssertionError, RuntimeError, TimeoutError, OSError) as e:
                    session.error = f"{type(e).__name__}: {e}"[:2000]
                    print(f"- N={size} {kind} failed: {session.error}"[:600], file=out)
            figures = {k: summary(sessions.get(k), ncpu) for k in KINDS}
            rows = table_rows(size, figures["clusternode"], figures["node-discover"])
            result["sizes"][str(size)] = {
                "order": order,
                "sessions": {
                    k: {
                        "steps": s.steps,
                        "metrics": s.metrics,
                        "idle": [asdict(x) for x in s.idle],
                        "registry": None if s.registry is None else asdict(s.registry),
                        "notes": s.notes,
                        "error": s.error,
                    }
                    for k, s in sessions.items()
                },
                "figures": figures,
                "rows": rows,
            }
            print(f"\n### N = {size} ({' first, then '.join(order)})\n", file=out)
            print(markdown(rows), file=out)
            print(
                "\nratio = clusternode / node-discover; node-discover has no registry: "
                'its "registered" is the joiner\'s socket bound (`started`)',
                file=out,
            )
            for kind, s in sessions.items():
                for note in s.notes:
                    print(f"\n{kind}: {note}", file=out)
                if s.error is not None:
                    print(f"\n{kind} did not finish: {s.error[:500]}", file=out)
            print("", file=out, flush=True)
    finally:
        etcd.stop()
    meta["load_after"] = load()
    meta["took_s"] = round(time.time() - began)
    print(
        "load average after: "
        + " / ".join(f"{x:.2f}" for x in meta["load_after"])
        + f"; took {meta['took_s']} s",
        file=out,
    )
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
