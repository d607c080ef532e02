"""Call benchmark: C{node.call} served here against forwarded to the owner, one run.

Run from the repository root with the project's venv Python::

    .venv/bin/python benchmarks/call_bench.py                 # 2 rounds, about 35 s
    .venv/bin/python benchmarks/call_bench.py --quick         # 1 round, about 10 s
    .venv/bin/python benchmarks/call_bench.py --calls 5000 --inflight 64 --json out.json
    .venv/bin/python benchmarks/call_bench.py --profile       # + cProfile of this side

On 127.0.0.1: one minietcd (C{twistd -n minietcd}), two real C{twistd -n
clusternode} processes, A and B (transport auto, status API on a free port), and, in
this process, an embedded L{twistednode.ClusterNode} E (the library way: the real
reactor, C{transport="auto"}, no HTTP). Once every node's ownership view lists all
three, keys are picked by their owner: keys E owns, keys A owns, keys B owns
(C{call-bench-<i>}, C{--keys} of each). Every call is to the built-in C{echo}
service with a JSON payload of C{--payload-bytes} (100) characters, and every answer
is checked: its C{handledBy} must be the owner the key was picked for.

  1. library: C{E.call("echo", key, payload)} for keys E owns (served here, no
     I/O) and for keys A owns (forwarded to A over the node-to-node transport);
  2. HTTP: C{POST /v1/route/echo/<key>} with the payload as the JSON body, to A's
     status API, for keys A owns (A serves it) and for keys B owns (A forwards to
     B). The client is a raw-socket HTTP/1.1 loop with keep-alive connections,
     in a thread of this process (so E's reactor keeps running meanwhile).

Each is run sequentially (C{--calls}, 2000, after C{--warmup}, 200: one call in
flight, the latency figure) and with C{--inflight} (32) calls in flight
(C{--concurrent-calls}, 5000, after a warm-up of 4 x C{--inflight}: the throughput
figure), C{--rounds} (2) times, local and forwarded alternating first, so both see
the same machine. Latencies are pooled over the rounds; calls/s is all calls over all
their time. Per run it also reads the CPU of this process, A and B (from /proc,
ns resolution) and the TCP connections opened to the three node-to-node
transports (from C{/proc/net/tcp}): a forwarded call that cannot reuse a pooled
connection shows there.

The table has p50 / p99 / calls/s per path and mode, then forwarded minus local at
p99 against the goal of issue 13: forwarding adds at most 2 ms at p99 (sequential:
queueing at 32 in flight is reported, not judged). The exit status is 1 if the
library's goal fails. The load average is printed before and after: latencies on
a shared CPU (two cores here, four Pythons) move with it.

C{--profile} then runs one more sequential forwarded library pass under cProfile
(this process only: E's client side and the benchmark loop) and prints the top
functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import selectors
import socket
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Collection, Coroutine, Sequence
from typing import Any, TypeVar

from attrs import define, field, frozen

from benchmarks.clusternode_procs import (
    ClusterNodeProcess,
    ClusterView,
    bytecode_env,
    stop_nodes,
)
from benchmarks.longpoll_fanout import _Response
from benchmarks.procstats import cpu_seconds
from benchmarks.report import write_json
from tests.harness.servers import MiniEtcdProcess

#: The goal of issue 13: what forwarding may add at p99 (ms).
GOAL_MS = 2.0
#: How long the cluster may take to agree on its members (s).
SETTLE_TIMEOUT = 60.0
SERVICE = "echo"
T = TypeVar("T")


def show_load(averages: Sequence[float]) -> str:
    """The load averages as the report prints them."""
    return " / ".join(f"{a:.2f}" for a in averages) + " (1 / 5 / 15 min)"


def percentile(sorted_ms: Sequence[float], q: float) -> float:
    """The C{q}-th percentile (nearest rank) of sorted values."""
    if not sorted_ms:
        return float("nan")
    rank = max(0, min(len(sorted_ms) - 1, round(q / 100 * len(sorted_ms) + 0.5) - 1))
    return sorted_ms[rank]


def connections_to(ports: Collection[int]) -> set[tuple[int, int]]:
    """The TCP connections on 127.0.0.1 to any of C{ports}, in any state.

    Each is C{(port, the other end's port)}, read from C{/proc/net/tcp}: a closed
    connection stays listed in TIME_WAIT (by whichever end closed first) for a
    minute, so the connections opened during a run of a few seconds are the ones
    listed after it and not before.
    """
    found: set[tuple[int, int]] = set()
    with open("/proc/net/tcp", encoding="ascii") as f:
        next(f)
        for line in f:
            local, remote = line.split()[1:3]
            here = int(local.rsplit(":", 1)[1], 16)
            there = int(remote.rsplit(":", 1)[1], 16)
            if there in ports:
                found.add((there, here))
            elif here in ports and there != 0:
                found.add((here, there))
    return found


# -- one measured run -----------------------------------------------------------------


@frozen
class Cost:
    """CPU seconds of each process and the transports' connections, at one moment."""

    cpu: dict[str, float]
    connections: set[tuple[int, int]]

    @classmethod
    def now(cls, pids: dict[str, int], ports: Collection[int]) -> Cost:
        """Read them now."""
        cpu = {n: cpu_seconds(p) for n, p in pids.items()}
        return cls(cpu, connections_to(ports))


@define
class Run:
    """The pooled result of one path, kind and mode over the rounds."""

    path: str  # "library" or "HTTP"
    kind: str  # "local" or "forwarded"
    mode: str  # "sequential" or "concurrent"
    latencies_ms: list[float] = field(factory=list)
    seconds: float = 0.0
    wrong: int = 0
    cpu_s: dict[str, float] = field(factory=dict)
    connects: int = 0

    def add(
        self,
        latencies: Sequence[float],
        seconds: float,
        wrong: int,
        before: Cost,
        after: Cost,
    ) -> None:
        """Pool one round's measurement."""
        self.latencies_ms.extend(latencies)
        self.seconds += seconds
        self.wrong += wrong
        for name, used in after.cpu.items():
            self.cpu_s[name] = self.cpu_s.get(name, 0.0) + used - before.cpu[name]
        self.connects += len(after.connections - before.connections)

    @property
    def calls(self) -> int:
        return len(self.latencies_ms)

    def summary(self) -> dict[str, Any]:
        """p50, p99, max (ms), calls/s, CPU us per call per process, connects."""
        ordered = sorted(self.latencies_ms)
        return {
            "path": self.path,
            "kind": self.kind,
            "mode": self.mode,
            "calls": self.calls,
            "p50_ms": percentile(ordered, 50),
            "p99_ms": percentile(ordered, 99),
            "max_ms": ordered[-1] if ordered else float("nan"),
            "calls_per_s": self.calls / self.seconds if self.seconds else 0.0,
            "cpu_us_per_call": {
                n: 1e6 * s / max(1, self.calls) for n, s in self.cpu_s.items()
            },
            "connections": self.connects,
            "wrong_owner": self.wrong,
        }


# -- library calls (in the reactor) ----------------------------------------------------


def payload_of(size: int, i: int) -> dict[str, Any]:
    """The payload of call C{i}: a sequence number and C{size} characters."""
    return {"seq": i, "data": "x" * size}


async def library_sequential(
    node: Any, keys: Sequence[str], owner: str, size: int, count: int, warm: int
) -> tuple[list[float], float, int]:
    """C{count} calls one after the other: latencies (ms), time (s), wrong owners."""
    wrong = 0
    latencies: list[float] = []
    clock = time.perf_counter
    for i in range(warm):
        await node.call(SERVICE, keys[i % len(keys)], payload_of(size, i))
    started = clock()
    for i in range(count):
        key = keys[i % len(keys)]
        sent = clock()
        answer = await node.call(SERVICE, key, payload_of(size, i))
        latencies.append((clock() - sent) * 1000)
        wrong += answer.get("handledBy") != owner
    return latencies, clock() - started, wrong


async def library_concurrent(
    node: Any,
    keys: Sequence[str],
    owner: str,
    size: int,
    count: int,
    inflight: int,
) -> tuple[list[float], float, int]:
    """C{count} calls, C{inflight} at a time: latencies (ms), time (s), wrong owners."""
    from twisted.internet.defer import Deferred, gatherResults

    clock = time.perf_counter
    latencies: list[float] = []
    wrong = 0
    issued = 0

    async def worker() -> None:
        nonlocal issued, wrong
        while issued < count:
            i = issued
            issued += 1
            sent = clock()
            answer = await node.call(SERVICE, keys[i % len(keys)], payload_of(size, i))
            latencies.append((clock() - sent) * 1000)
            wrong += answer.get("handledBy") != owner

    started = clock()
    await gatherResults(
        [Deferred.fromCoroutine(worker()) for _ in range(inflight)],
        consumeErrors=True,
    )
    return latencies, clock() - started, wrong


# -- HTTP calls (a raw-socket client, in a thread) ------------------------------------


def route_request(port: int, key: str, body: bytes) -> bytes:
    """The bytes of one C{POST /v1/route/echo/<key>} (keep-alive)."""
    return (
        f"POST /v1/route/{SERVICE}/{key} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("ascii") + body


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _answered(response: _Response, owner: bytes) -> bool:
    """Whether a complete response is a 200 from C{owner} (else raise or False)."""
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.body[:500]!r}")
    return owner in response.body


def http_sequential(
    port: int, keys: Sequence[str], owner: str, size: int, count: int, warm: int
) -> tuple[list[float], float, int]:
    """C{count} POSTs one after the other on one connection."""
    clock = time.perf_counter
    expected = owner.encode("ascii")
    latencies: list[float] = []
    wrong = 0
    with _connect(port) as sock:
        started = clock()
        for i in range(warm + count):
            if i == warm:
                started = clock()
            body = json.dumps(payload_of(size, i)).encode()
            request = route_request(port, keys[i % len(keys)], body)
            response = _Response()
            sent = clock()
            sock.sendall(request)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the node closed the connection")
                if response.feed(chunk):
                    break
            if i >= warm:
                latencies.append((clock() - sent) * 1000)
                wrong += not _answered(response, expected)
    return latencies, clock() - started, wrong


def http_concurrent(
    port: int, keys: Sequence[str], owner: str, size: int, count: int, inflight: int
) -> tuple[list[float], float, int]:
    """C{count} POSTs over C{inflight} keep-alive connections, one epoll loop."""
    clock = time.perf_counter
    expected = owner.encode("ascii")
    latencies: list[float] = []
    wrong = 0
    issued = 0
    selector = selectors.DefaultSelector()
    socks = [_connect(port) for _ in range(inflight)]
    state: dict[socket.socket, tuple[_Response, float]] = {}

    def send(sock: socket.socket) -> None:
        nonlocal issued
        i = issued
        issued += 1
        body = json.dumps(payload_of(size, i)).encode()
        state[sock] = (_Response(), clock())
        sock.sendall(route_request(port, keys[i % len(keys)], body))

    try:
        started = clock()
        for sock in socks:
            sock.setblocking(True)
            selector.register(sock, selectors.EVENT_READ, sock)
            if issued < count:
                send(sock)
        while len(latencies) < count:
            events = selector.select(30.0)
            if not events:
                raise RuntimeError("no answer within 30 s")
            for ready, _ in events:
                sock = ready.data
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the node closed a connection")
                response, sent = state[sock]
                if not response.feed(chunk):
                    continue
                latencies.append((clock() - sent) * 1000)
                wrong += not _answered(response, expected)
                del state[sock]
                if issued < count:
                    send(sock)
        return latencies, clock() - started, wrong
    finally:
        selector.close()
        for sock in socks:
            sock.close()


# -- the cluster ----------------------------------------------------------------------


def fetch_json(url: str) -> Any:
    """GET a JSON document (blocking; from a thread)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


async def settle(
    reactor: Any, embedded: Any, nodes: Sequence[ClusterNodeProcess]
) -> list[str]:
    """Wait until E, A and B all list the same three owners and have a transport;
    their transports' URLs."""
    from twisted.internet.task import deferLater
    from twisted.internet.threads import deferToThread

    wanted = {embedded.id, *(n.node_id for n in nodes)}
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last: Any = None
    while time.monotonic() < deadline:
        views = [{c.id for c in embedded.ownership.candidates}]
        transports = [embedded.transport_url]
        for n in nodes:
            status = await deferToThread(
                fetch_json, f"http://127.0.0.1:{n.http_port}/status"
            )
            ownership = status.get("ownership", {})
            views.append({o["id"] for o in ownership.get("owners", [])})
            transports.append(ownership.get("transport"))
        last = (views, transports)
        if all(v == wanted for v in views) and all(transports):
            return [str(t) for t in transports]
        await deferLater(reactor, 0.1)
    registry = embedded.status_document()["registry"]
    raise TimeoutError(
        f"the nodes did not agree on {sorted(wanted)} within {SETTLE_TIMEOUT:.0f} s: "
        f"(owners seen by E, A, B; transports) {last}; E's registry: "
        + json.dumps({k: registry.get(k) for k in ("state", "ownIndex", "viewIndex")})
    )


def pick_keys(
    embedded: Any, owners: Sequence[str], per_owner: int
) -> dict[str, list[str]]:
    """C{per_owner} keys C{call-bench-<i>} owned by each of C{owners}."""
    picked: dict[str, list[str]] = {o: [] for o in owners}
    i = 0
    while any(len(k) < per_owner for k in picked.values()):
        key = f"call-bench-{i}"
        found = embedded.owner(key)
        if found in picked and len(picked[found]) < per_owner:
            picked[found].append(key)
        i += 1
        if i > 1000 * per_owner * len(owners):
            raise RuntimeError(f"cannot find keys for every owner: {picked}")
    return picked


def call_stats(embedded: Any, nodes: Sequence[ClusterNodeProcess]) -> dict[str, Any]:
    """Each node's call counters (local, forwarded, received, retries, failed)."""
    found = {"E": embedded.status_document()["ownership"]["calls"]}
    for name, n in zip("AB", nodes, strict=True):
        status = fetch_json(f"http://127.0.0.1:{n.http_port}/status")
        found[name] = status["ownership"]["calls"]
    return found


# -- the run ---------------------------------------------------------------------------


async def bench(
    reactor: Any,
    args: argparse.Namespace,
    etcd: MiniEtcdProcess,
    nodes: Sequence[ClusterNodeProcess],
    cluster: str,
) -> dict[str, Any]:
    """Everything that runs in the reactor: start E, settle, measure, stop E."""
    from twisted.internet.threads import deferToThread

    from twistednode import ClusterNode, make_settings

    embedded = ClusterNode(
        reactor=reactor,
        settings=make_settings(epoch_ms=time.time_ns() // 1_000_000),
        cluster=cluster,
        etcd_urls=(etcd.url,),
        udp_port=0,
        udp_interface="127.0.0.1",
        http=None,
        transport="auto",
    )
    embedded.startService()
    try:
        transports = await settle(reactor, embedded, nodes)
        ports = {urllib.parse.urlsplit(t).port or 80 for t in transports}
        a, b = nodes
        keys = pick_keys(embedded, [embedded.id, a.node_id, b.node_id], args.keys)
        pids = {"here": os.getpid(), "A": a.pid, "B": b.pid}
        runs: dict[tuple[str, str, str], Run] = {}
        size = args.payload_bytes

        async def measure(
            what: tuple[str, str, str], start: Callable[..., Any], *given: Any
        ) -> None:
            """Run C{start(*given)} (a coroutine or Deferred), pooled under C{what}."""
            run = runs.setdefault(what, Run(*what))
            before = Cost.now(pids, ports)
            latencies, seconds, wrong = await start(*given)
            after = Cost.now(pids, ports)
            run.add(latencies, seconds, wrong, before, after)
            print(
                f"# {' '.join(what)}: {len(latencies)} calls in {seconds:.2f} s",
                file=sys.stderr,
            )

        # library: E's keys are served here, A's are forwarded to A
        lib_target = {"local": embedded.id, "forwarded": a.node_id}
        # HTTP to A: A's keys A serves, B's keys A forwards to B
        http_target = {"local": a.node_id, "forwarded": b.node_id}
        warm_conc = 4 * args.inflight
        for r in range(args.rounds):
            order = ["local", "forwarded"] if r % 2 == 0 else ["forwarded", "local"]
            for kind in order:
                owner = lib_target[kind]
                common = (embedded, keys[owner], owner, size)
                await measure(
                    ("library", kind, "sequential"),
                    library_sequential,
                    *common,
                    args.calls,
                    args.warmup,
                )
                await library_concurrent(*common, warm_conc, args.inflight)
                await measure(
                    ("library", kind, "concurrent"),
                    library_concurrent,
                    *common,
                    args.concurrent_calls,
                    args.inflight,
                )
            for kind in order:
                owner = http_target[kind]
                target = (a.http_port, keys[owner], owner, size)
                await measure(
                    ("HTTP", kind, "sequential"),
                    deferToThread,
                    http_sequential,
                    *target,
                    args.calls,
                    args.warmup,
                )
                await deferToThread(http_concurrent, *target, warm_conc, args.inflight)
                await measure(
                    ("HTTP", kind, "concurrent"),
                    deferToThread,
                    http_concurrent,
                    *target,
                    args.concurrent_calls,
                    args.inflight,
                )
        counters = await deferToThread(call_stats, embedded, nodes)
        profile = None
        if args.profile:
            owner = a.node_id
            profiler = cProfile.Profile()
            profiler.enable()
            await library_sequential(embedded, keys[owner], owner, size, args.calls, 0)
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(args.profile_top)
            stats.sort_stats("cumulative").print_stats(args.profile_top)
            profile = out.getvalue()
        return {
            "ids": {"E": embedded.id, "A": a.node_id, "B": b.node_id},
            "runs": [run.summary() for run in runs.values()],
            "counters": counters,
            "profile": profile,
        }
    finally:
        await embedded.stopService()


def run_in_reactor(work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Run C{work(reactor)} on the global reactor until it ends; its result."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    outcome: list[Any] = []

    def start() -> None:
        d = Deferred.fromCoroutine(work(reactor))
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if not outcome:
        raise KeyboardInterrupt("the reactor stopped before the benchmark ended")
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    result: T = outcome[0]
    return result


# -- the report -----------------------------------------------------------------------


def _find(
    runs: Sequence[dict[str, Any]], path: str, kind: str, mode: str
) -> dict[str, Any]:
    for run in runs:
        if (run["path"], run["kind"], run["mode"]) == (path, kind, mode):
            return run
    raise KeyError((path, kind, mode))


def report(result: dict[str, Any], args: argparse.Namespace) -> tuple[list[str], bool]:
    """The markdown tables and whether the library's goal held."""
    runs = result["runs"]
    lines = [
        f"| call | served by | sequential p50 (ms) | p99 | max | calls/s "
        f"| {args.inflight} in flight: calls/s | p50 | p99 "
        "| CPU us/call here / A / B | new transport connections, seq / conc "
        "| wrong owner |",
        "|---" * 12 + "|",
    ]
    served = {
        ("library", "local"): "E (this process)",
        ("library", "forwarded"): "A (E -> A)",
        ("HTTP", "local"): "A (client -> A)",
        ("HTTP", "forwarded"): "B (client -> A -> B)",
    }
    for path in ("library", "HTTP"):
        for kind in ("local", "forwarded"):
            seq = _find(runs, path, kind, "sequential")
            conc = _find(runs, path, kind, "concurrent")
            cpu = conc["cpu_us_per_call"]
            call = (
                f"`E.call` {kind}" if path == "library" else f"`POST /v1/route` {kind}"
            )
            lines.append(
                f"| {call} | {served[path, kind]} | {seq['p50_ms']:.3f} "
                f"| {seq['p99_ms']:.3f} | {seq['max_ms']:.2f} "
                f"| {seq['calls_per_s']:,.0f} | {conc['calls_per_s']:,.0f} "
                f"| {conc['p50_ms']:.2f} | {conc['p99_ms']:.2f} "
                f"| {cpu['here']:.0f} / {cpu['A']:.0f} / {cpu['B']:.0f} "
                f"| {seq['connections']} / {conc['connections']} "
                f"| {seq['wrong_owner'] + conc['wrong_owner']} |"
            )
    lines += [
        "",
        "| forwarded - local | sequential p99 (ms) | p50 (ms) "
        f"| {args.inflight} in flight p99 (ms) | goal | verdict |",
        "|---|---|---|---|---|---|",
    ]
    ok = True
    for path in ("library", "HTTP"):
        local = _find(runs, path, "local", "sequential")
        fwd = _find(runs, path, "forwarded", "sequential")
        cl = _find(runs, path, "local", "concurrent")
        cf = _find(runs, path, "forwarded", "concurrent")
        added = fwd["p99_ms"] - local["p99_ms"]
        passed = added <= GOAL_MS and fwd["wrong_owner"] == 0
        if path == "library":
            ok = passed
        lines.append(
            f"| {path} | {added:+.3f} | {fwd['p50_ms'] - local['p50_ms']:+.3f} "
            f"| {cf['p99_ms'] - cl['p99_ms']:+.2f} | <= +{GOAL_MS:g} at p99 "
            f"| {'PASS' if passed else 'FAIL'} |"
        )
    return lines, ok


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, start the cluster, measure, print the tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--calls", type=int, default=2000, help="sequential calls (2000)"
    )
    parser.add_argument("--warmup", type=int, default=200, help="warm-up calls (200)")
    parser.add_argument(
        "--concurrent-calls", type=int, default=5000, help="calls in flight runs (5000)"
    )
    parser.add_argument("--inflight", type=int, default=32, help="calls in flight (32)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (2)")
    parser.add_argument("--keys", type=int, default=64, help="keys per owner (64)")
    parser.add_argument(
        "--payload-bytes", type=int, default=100, help="payload characters (100)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="500 / 1500 calls, one round"
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile a forwarded library pass"
    )
    parser.add_argument("--profile-top", type=int, default=25, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="raw results here (- = stdout)")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.warmup, args.concurrent_calls, args.rounds = 500, 100, 1500, 1
    if (
        min(args.calls, args.concurrent_calls, args.inflight, args.rounds, args.keys)
        < 1
    ):
        parser.error("--calls, --concurrent-calls, --inflight, --rounds, --keys >= 1")
    out = sys.stderr if args.json == "-" else sys.stdout
    before = os.getloadavg()
    print(f"load average before: {show_load(before)}; {os.cpu_count()} cores", file=out)
    out.flush()
    started = time.monotonic()
    cluster = f"callbench-{uuid.uuid4().hex[:8]}"
    env = bytecode_env(os.path.join(tempfile.gettempdir(), "twistednode-pycache"))
    nodes: list[ClusterNodeProcess] = []
    etcd = MiniEtcdProcess()
    try:
        etcd.start()
        view = ClusterView()
        nodes = [
            ClusterNodeProcess(
                etcd.url, cluster, view, str(uuid.uuid4()), env=env, follow=False
            )
            for _ in range(2)
        ]
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready(SETTLE_TIMEOUT)

        async def work(reactor: Any) -> dict[str, Any]:
            return await bench(reactor, args, etcd, nodes, cluster)

        result = run_in_reactor(work)
    finally:
        stop_nodes(nodes)
        etcd.stop()
    took = time.monotonic() - started
    after = os.getloadavg()
    lines, ok = report(result, args)
    ids = result["ids"]
    text = [
        "# calls: node.call served here vs forwarded to the owner (loopback)",
        "",
        f"load average before: {show_load(before)}; after: {show_load(after)}; "
        f"{os.cpu_count()} cores; Python {sys.version.split()[0]}; took {took:.0f} s",
        f"nodes: E {ids['E'][:8]} (embedded here), A {ids['A'][:8]}, "
        f"B {ids['B'][:8]} (twistd clusternode); {args.rounds} round(s) of "
        f"{args.calls} sequential and {args.concurrent_calls} concurrent calls per "
        f"row; {args.keys} keys per owner; payload {args.payload_bytes} characters",
        "",
        *lines,
        "",
        "Latencies pooled over the rounds; CPU per call from the "
        f"{args.inflight}-in-flight runs (CPU 'here' includes the benchmark's own "
        "client: the call loop, or the HTTP client thread).",
        "call counters at the end: "
        + "; ".join(
            f"{n} {json.dumps(c, separators=(',', ':'))}"
            for n, c in result["counters"].items()
        ),
    ]
    print("\n".join(text), file=out)
    if result["profile"]:
        print(
            "\n## cProfile, one sequential forwarded library pass (this process)\n",
            file=out,
        )
        print(result["profile"], file=out)
    if args.json:
        document = {
            "settings": {k: v for k, v in vars(args).items()},
            "load_before": before,
            "load_after": after,
            "took_s": took,
            **{k: v for k, v in result.items() if k != "profile"},
        }
        write_json(document, args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
