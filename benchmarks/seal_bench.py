"""Sealing benchmark (issue 12): what the cluster key costs, and what a flood does.

Run from the repository root::

    .venv/bin/python benchmarks/seal_bench.py              # about 8 minutes
    .venv/bin/python benchmarks/seal_bench.py --quick      # about 3 minutes
    .venv/bin/python benchmarks/seal_bench.py --only hellos --rounds 4 --json out.json
    .venv/bin/python benchmarks/seal_bench.py --only flood --flood 200000 --senders 2

Two parts (``--only hellos,flood``), each on real ``twistd -n clusternode``
processes on 127.0.0.1 with the default timers (hello 1 s, check 2 s, node timeout
2 s), on static peers (``--no-etcd``, every node given the others' UDP ports) or
with ``--registry minietcd`` on one minietcd:

1. **hellos**: ``--size`` (10) nodes without a keyring and the same with
   ``--cluster-key-file``, one cluster after the other, ``--rounds`` (2) times, the
   order alternating (plain, sealed, sealed, plain, ...). Each settled cluster is
   sampled over ``--idle`` (30) s: each node's CPU (ns, from /proc schedstat) and its
   ``twistednode_hellos_sent_total`` and ``..._received_total`` from ``GET /metrics``
   (read outside the CPU window). The figure is CPU seconds per hello sent or
   received; the goal is sealed <= 1.10 x plain. Beside it, what ``Sealer.seal`` and
   ``Sealer.open`` alone cost in this process.
2. **flood**: ``--flood`` (1,000,000) bad datagrams sent at one node of a sealed
   cluster of three, in five phases of equal size: exact ``replayed`` copies of
   datagrams captured on lo (the peers' hellos to the target, which it accepted, and
   the target's own; needs root, else only valid datagrams sealed ten minutes ago),
   ``random`` bytes (1-1472), ``forged-header`` (a well-formed header with our key
   id, a random boot id and a current timestamp, then random bytes: the dearest
   refusal, a key derivation and a GCM check), and ``truncated`` and
   ``bit-flipped`` copies of freshly sealed valid datagrams (a tenth of them of the
   captured ones). Senders are plain sockets in ``--senders`` (1) processes that
   build their datagrams in chunks before sending them (so timestamps stay current)
   and keep the target's receive queue (``/proc/net/udp``) below half of its
   buffer, so that what the node refuses can be counted one by one; kernel drops
   are counted too. Per phase: datagrams sent, the rise of ``dropped.auth`` in
   ``GET /status`` (and of any other reason), the kernel's drops, so the datagrams
   accepted (sent - counted - kernel drops: must be 0), the rate the node refused
   them at and its CPU meanwhile, the refusal reasons from the node's log, and what
   ``Sealer.open`` alone takes on the same datagrams. Afterwards: the node is alive
   (same pid, answers), every node lists the same members and master as before, and
   a poll of the three every second during the flood never saw otherwise. It runs
   once per ``--runners`` (twistd,twist): ``twistd`` writes a debug line for each
   dropped datagram, ``twist --log-level=info`` none, which shows what that costs.

The load average is printed before each step: every number is CPU on a shared
machine. ``--quick``: 1 round, 10 s idle, 100,000 datagrams. The exit status is 1
if a goal or a check fails. Every process is stopped on exit (SIGTERM included).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing
import os
import random
import re
import signal
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from attrs import asdict, define, field, frozen

from benchmarks.clusternode_procs import bytecode_env
from benchmarks.procstats import cpu_seconds
from tests.harness.clusternodes import (
    ClusterNodeProcess,
    NodeView,
    agreed_master_of,
    all_see_all,
    wait_for_cluster,
)
from tests.harness.nodediscover import free_udp_ports
from tests.harness.servers import MiniEtcdProcess
from twistednode.trust.keyring import Keyring, key_id, new_key, read_keyring
from twistednode.trust.seal import OVERHEAD, TAG_SIZE, Header, Sealer, SealError

#: Sealing may add this much to the CPU per hello (issue 12).
GOAL_RATIO = 1.10
#: After a cluster agrees on its master, before a sample starts.
SETTLE_S = 3.0
#: How long the flood target's traffic is captured for replays.
CAPTURE_S = 3.0
PHASES = ("replayed", "random", "forged-header", "truncated", "bit-flipped")
#: The largest random datagram (a 1500-byte MTU's UDP payload).
MAX_FUZZ = 1472
#: Datagrams a sender builds at once.
CHUNK = 5000
#: What a queued datagram takes of the receive buffer beyond its payload, at most
#: (the kernel counts the buffer's true size): a sender sends until its estimate
#: of the queue reaches the high mark, then reads /proc/net/udp again (~50 us).
TRUESIZE_EXTRA = 1024
#: A plain hello's size when none was captured (bytes of JSON).
PLAIN_SIZE = 300
_METRIC_SENT = "twistednode_hellos_sent_total"
_METRIC_RECEIVED = "twistednode_hellos_received_total"
_METRIC_AUTH = 'twistednode_datagrams_dropped_total{reason="auth"}'
_REFUSAL = re.compile(
    rb"dropped a datagram from [^\n]*?: not sealed for us \(([\w-]+)\)"
)


def load_1min() -> float:
    """The one-minute load average."""
    return round(os.getloadavg()[0], 2)


def step(text: str) -> float:
    """Print what comes next with the machine's load; return the 1-minute load."""
    one, five, fifteen = os.getloadavg()
    print(
        f"[{time.strftime('%H:%M:%S')}] {text} "
        f"(load average {one:.2f} / {five:.2f} / {fifteen:.2f})",
        flush=True,
    )
    return round(one, 2)


# -- the nodes ----------------------------------------------------------------------


class TwistNode(ClusterNodeProcess):
    """The same node under C{twist --log-level=info}: no line per dropped datagram."""

    def _argv(self) -> list[str]:
        argv = super()._argv()
        at = argv.index("clusternode")
        twist = os.path.join(os.path.dirname(sys.executable), "twist")
        return [twist, "--log-level=info", *argv[at:]]


@frozen
class Setup:
    """Where the clusters run: a registry URL or static peers, and the key file."""

    registry: str | None
    key_file: str


def start_cluster(
    size: int, sealed: bool, setup: Setup, runner: str = "twistd"
) -> list[ClusterNodeProcess]:
    """C{size} nodes on fixed UDP ports, meshed and agreed on a master."""
    ports = free_udp_ports(size)
    cluster = f"seal-{uuid.uuid4().hex[:8]}"
    extra = ["--cluster-key-file", setup.key_file] if sealed else []
    kind = TwistNode if runner == "twist" else ClusterNodeProcess
    nodes = [
        kind(
            etcd=setup.registry,
            peers=[]
            if setup.registry
            else [f"127.0.0.1:{p}" for p in ports if p != port],
            cluster=cluster,
            udp_port=port,
            extra_args=extra,
        )
        for port in ports
    ]
    bound = 30.0 + 3.0 * size
    try:
        for node in nodes:
            node.launch()
        for node in nodes:
            node.wait_ready(bound)
        ids = {n.id for n in nodes}
        wait_for_cluster(
            nodes,
            lambda views: (
                all_see_all(views, ids) and agreed_master_of(views) is not None
            ),
            bound,
            f"{size} nodes meshed with one master",
            interval=0.25,
        )
    except BaseException:
        stop_all(nodes)
        raise
    return nodes


def stop_all(nodes: Sequence[ClusterNodeProcess]) -> None:
    """SIGTERM every running node at once, then wait for each."""
    for node in nodes:
        if node.running:
            try:
                node.signal(signal.SIGTERM)
            except (RuntimeError, ProcessLookupError):
                pass
    for node in nodes:
        node.stop()


def pid_of(node: ClusterNodeProcess) -> int:
    """The node's pid (it runs)."""
    pid = node.pid
    if pid is None:
        raise RuntimeError(f"node {node.id} is not running")
    return pid


def metrics_of(node: ClusterNodeProcess) -> dict[str, float]:
    """The node's C{twistednode_*} samples from C{GET /metrics}."""
    url = f"http://127.0.0.1:{node.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode("utf-8")
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("twistednode_"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


# -- part 1: CPU per hello -----------------------------------------------------------


@frozen
class NodeWindow:
    """One node over one idle window."""

    cpu_s: float
    sent: int
    received: int
    auth_drops: int
    window_s: float

    @property
    def hellos(self) -> int:
        return self.sent + self.received


@frozen
class HelloRun:
    """One cluster, plain or sealed, sampled once."""

    sealed: bool
    round: int
    load: float
    nodes: tuple[NodeWindow, ...]
    registry_cpu_s: float | None

    @property
    def us_per_hello(self) -> float:
        hellos = sum(n.hellos for n in self.nodes)
        return 1e6 * sum(n.cpu_s for n in self.nodes) / max(1, hellos)


def hello_run(
    size: int,
    sealed: bool,
    setup: Setup,
    seconds: float,
    round_: int,
    registry_pid: int | None,
) -> HelloRun:
    """Start a cluster, let it settle, sample CPU and hello counters per node."""
    kind = "sealed" if sealed else "plain"
    load = step(f"hellos, round {round_}: {size} {kind} nodes, {seconds:g} s idle")
    nodes = start_cluster(size, sealed, setup)
    try:
        time.sleep(SETTLE_S)
        before = []
        for node in nodes:
            samples = metrics_of(node)
            before.append((samples, cpu_seconds(pid_of(node)), time.monotonic()))
        registry0 = cpu_seconds(registry_pid) if registry_pid else None
        time.sleep(seconds)
        registry1 = cpu_seconds(registry_pid) if registry_pid else None
        windows = []
        for node, (m0, c0, t0) in zip(nodes, before, strict=True):
            c1, t1 = cpu_seconds(pid_of(node)), time.monotonic()
            m1 = metrics_of(node)
            windows.append(
                NodeWindow(
                    cpu_s=c1 - c0,
                    sent=round(m1[_METRIC_SENT] - m0[_METRIC_SENT]),
                    received=round(m1[_METRIC_RECEIVED] - m0[_METRIC_RECEIVED]),
                    auth_drops=round(m1.get(_METRIC_AUTH, 0) - m0.get(_METRIC_AUTH, 0)),
                    window_s=t1 - t0,
                )
            )
    finally:
        stop_all(nodes)
    registry_cpu = (
        None if registry0 is None or registry1 is None else registry1 - registry0
    )
    run = HelloRun(sealed, round_, load, tuple(windows), registry_cpu)
    print(f"    {kind}: {run.us_per_hello:.1f} us CPU per hello", flush=True)
    return run


def seal_costs(plain_size: int = PLAIN_SIZE, count: int = 20000) -> tuple[float, float]:
    """Microseconds of CPU per C{Sealer.seal} and per C{Sealer.open}, in-process."""
    keyring = Keyring((os.urandom(32),))
    sender, receiver = Sealer(keyring, "bench"), Sealer(keyring, "bench")
    plaintext = os.urandom(plain_size)
    now = time.time()
    start = time.process_time()
    sealed = [sender.seal(now, plaintext) for _ in range(count)]
    seal_us = 1e6 * (time.process_time() - start) / count
    start = time.process_time()
    for datagram in sealed:
        receiver.open(now, datagram)
    open_us = 1e6 * (time.process_time() - start) / count
    return seal_us, open_us


def hello_table(runs: Sequence[HelloRun], size: int) -> tuple[list[str], bool]:
    """The markdown of part 1 and whether the goal holds."""
    plain = [r for r in runs if not r.sealed]
    sealed = [r for r in runs if r.sealed]

    def nodes(of: Sequence[HelloRun]) -> list[NodeWindow]:
        return [n for r in of for n in r.nodes]

    def overall(of: Sequence[HelloRun]) -> float:
        ns = nodes(of)
        return 1e6 * sum(n.cpu_s for n in ns) / max(1, sum(n.hellos for n in ns))

    def per_node(of: Sequence[HelloRun]) -> list[float]:
        return [1e6 * n.cpu_s / max(1, n.hellos) for n in nodes(of)]

    def rate(of: Sequence[HelloRun], get: Callable[[NodeWindow], float]) -> float:
        return statistics.mean(get(n) / n.window_s for n in nodes(of))

    rows: list[tuple[str, float, float, int]] = [
        (
            "CPU per hello sent or received, all nodes (us)",
            overall(plain),
            overall(sealed),
            1,
        ),
        (
            "... per node, median (us)",
            statistics.median(per_node(plain)),
            statistics.median(per_node(sealed)),
            1,
        ),
        ("... per node, max (us)", max(per_node(plain)), max(per_node(sealed)), 1),
        (
            "CPU per node (% of one core), mean",
            rate(plain, lambda n: 100 * n.cpu_s),
            rate(sealed, lambda n: 100 * n.cpu_s),
            3,
        ),
        (
            "hellos sent per node per s",
            rate(plain, lambda n: n.sent),
            rate(sealed, lambda n: n.sent),
            2,
        ),
        (
            "hellos received per node per s",
            rate(plain, lambda n: n.received),
            rate(sealed, lambda n: n.received),
            2,
        ),
    ]
    ratio = overall(sealed) / overall(plain)
    ok = ratio <= GOAL_RATIO
    out = [
        "| metric | plain | sealed | sealed / plain | goal | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for index, (label, a, b, digits) in enumerate(rows):
        goal, verdict = ("", "")
        if index == 0:
            goal, verdict = f"<= {GOAL_RATIO:.2f}", "PASS" if ok else "MISS"
        out.append(
            f"| {label} | {a:.{digits}f} | {b:.{digits}f} | {b / a:.3f} | {goal} | "
            f"{verdict} |"
        )
    drops = [sum(n.auth_drops for n in nodes(x)) for x in (plain, sealed)]
    out.append(f"| auth drops in the windows | {drops[0]} | {drops[1]} |  |  |  |")
    registry = [
        [r.registry_cpu_s for r in x if r.registry_cpu_s is not None]
        for x in (plain, sealed)
    ]
    if all(registry):
        seconds = [sum(r.nodes[0].window_s for r in x) for x in (plain, sealed)]
        cells = [100 * sum(c) / s for c, s in zip(registry, seconds, strict=True)]
        out.append(
            f"| minietcd CPU (% of one core), not counted above | {cells[0]:.2f} | "
            f"{cells[1]:.2f} |  |  |  |"
        )
    seal_us, open_us = seal_costs()
    others = size - 1
    extra = (seal_us + others * open_us) / (2 * others)
    out.append(
        f"| seal layer alone, in-process (us per hello: 1 seal per {others} sent, "
        f"1 open per received) | - | {extra:.2f} |  |  |  |"
    )
    out.append("")
    out.append(
        f"Sealer.seal {seal_us:.1f} us, Sealer.open {open_us:.1f} us in this "
        f"process ({PLAIN_SIZE}-byte hello). Per round, each at its load:"
    )
    out.append("")
    for round_ in sorted({r.round for r in runs}):
        these = [r for r in runs if r.round == round_]
        by = {r.sealed: r for r in these}
        order = ", ".join(
            f"{'sealed' if r.sealed else 'plain'} {r.us_per_hello:.1f} us "
            f"(load {r.load:.2f})"
            for r in these
        )
        ratio_cell = (
            f"{by[True].us_per_hello / by[False].us_per_hello:.3f}"
            if True in by and False in by
            else "-"
        )
        out.append(f"- round {round_}: {order}; sealed / plain {ratio_cell}")
    return out, ok


# -- part 2: the flood ---------------------------------------------------------------


@frozen
class FloodKit:
    """What a sender needs to build its datagrams (it crosses to another process)."""

    key: bytes
    cluster: str
    plain_size: int
    #: Datagrams the target's peers sent it (it accepted them), and its own.
    captured_in: tuple[bytes, ...]
    captured_out: tuple[bytes, ...]
    port: int


def build(kind: str, kit: FloodKit, rng: random.Random, count: int) -> list[bytes]:
    """C{count} bad datagrams of one kind, sealed (where sealed) as of now."""
    now = time.time()
    if kind == "random":
        return [rng.randbytes(rng.randint(1, MAX_FUZZ)) for _ in range(count)]
    keyring = Keyring((kit.key,))
    if kind == "forged-header":
        kid, body, ms = key_id(kit.key), kit.plain_size + TAG_SIZE, round(now * 1000)
        return [
            Header(
                kid,
                rng.randbytes(16),
                rng.randrange(1, 2**63),
                ms + rng.randint(-5000, 5000),
            ).pack()
            + rng.randbytes(body)
            for _ in range(count)
        ]
    if kind == "replayed":
        old = [
            Sealer(keyring, kit.cluster).seal(now - 600, rng.randbytes(kit.plain_size))
            for _ in range(8)
        ]
        pools = [p for p in (kit.captured_in, kit.captured_out, tuple(old)) if p]
        return [rng.choice(rng.choice(pools)) for _ in range(count)]
    sealers = [Sealer(keyring, kit.cluster) for _ in range(8)]
    captured = kit.captured_in + kit.captured_out
    out = []
    for _ in range(count):
        if captured and rng.random() < 0.1:
            base = rng.choice(captured)
        else:
            base = rng.choice(sealers).seal(now, rng.randbytes(kit.plain_size))
        if kind == "truncated":
            out.append(base[: rng.randrange(len(base))])
        elif kind == "bit-flipped":
            bit = rng.randrange(len(base) * 8)
            flipped = bytearray(base)
            flipped[bit >> 3] ^= 1 << (bit & 7)
            out.append(bytes(flipped))
        else:
            raise ValueError(f"no such kind of datagram: {kind}")
    return out


class UdpTable:
    """One local UDP socket's line of /proc/net/udp: receive queue and drops."""

    def __init__(self, port: int) -> None:
        self._fd = os.open("/proc/net/udp", os.O_RDONLY)
        self._local = b": 0100007F:%04X " % port  # "sl: local ", not a remote

    def state(self) -> tuple[int, int]:
        """(bytes waiting in the receive queue, datagrams the kernel dropped)."""
        os.lseek(self._fd, 0, os.SEEK_SET)
        parts = []
        while part := os.read(self._fd, 1 << 16):  # a seq_file: a page at a time
            parts.append(part)
        data = b"".join(parts)
        at = data.find(self._local)
        if at < 0:
            raise OSError(f"no UDP socket{self._local[1:].decode()}in /proc/net/udp")
        # local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        fields = data[at + 1 : data.find(b"\n", at)].split()
        return int(fields[3].split(b":")[1], 16), int(fields[11])

    def close(self) -> None:
        os.close(self._fd)


@frozen
class SendJob:
    """One sender's share of a phase."""

    kind: str
    count: int
    seed: int
    kit: FloodKit
    #: Wait while the receive queue holds more than C{high} bytes, until C{low}.
    high: int
    low: int
    parent: int


def _die_with_parent(parent: int) -> None:
    """In a sender: SIGKILL when the benchmark dies (Linux), or exit now if it has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return
    if hasattr(libc, "prctl"):
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def sender_main(job: SendJob, conn: Connection) -> None:
    """A sender process: build a chunk, say ready, wait for go, send, report."""
    _die_with_parent(job.parent)
    rng = random.Random(job.seed)
    table = UdpTable(job.kit.port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", job.kit.port))
    send = sock.send
    start_cpu = time.process_time()
    chunk = build(job.kind, job.kit, rng, min(CHUNK, job.count))
    build_cpu = time.process_time() - start_cpu
    conn.send("ready")
    conn.recv()
    sent = waits = 0
    error = ""
    try:
        budget = 0
        while True:
            for datagram in chunk:
                cost = len(datagram) + TRUESIZE_EXTRA
                if cost > budget:
                    queued = table.state()[0]
                    if queued > job.high:
                        while queued > job.low:
                            time.sleep(0.0002)
                            waits += 1
                            queued = table.state()[0]
                    budget = job.high - queued
                send(datagram)
                budget -= cost
            sent += len(chunk)
            if sent >= job.count:
                break
            started = time.process_time()
            chunk = build(job.kind, job.kit, rng, min(CHUNK, job.count - sent))
            build_cpu += time.process_time() - started
    except OSError as e:  # the target is gone (ECONNREFUSED) or its socket is
        error = f"{type(e).__name__}: {e}"
    conn.send(
        {
            "sent": sent,
            "cpu_s": time.process_time() - start_cpu,
            "build_cpu_s": build_cpu,
            "waits": waits,
            "error": error,
        }
    )
    sock.close()
    table.close()


def capture(
    target: int, peers: Sequence[int], seconds: float
) -> tuple[tuple[bytes, ...], tuple[bytes, ...]] | None:
    """The datagrams sent to C{target} by C{peers}, and by it to them, on lo.

    Needs root (a packet socket); None without it.
    """
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    except (OSError, AttributeError):
        return None
    received: dict[bytes, None] = {}
    sent: dict[bytes, None] = {}
    wanted = set(peers)
    try:
        sock.bind(("lo", 0))
        sock.settimeout(0.2)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame = sock.recv(65600)
            except TimeoutError:
                continue
            if frame[12:14] != b"\x08\x00" or frame[23] != 17:  # IPv4, UDP
                continue
            udp = frame[14 + (frame[14] & 0x0F) * 4 :]
            source, destination = struct.unpack("!HH", udp[:4])
            if destination == target and source in wanted:
                received[udp[8:]] = None
            elif source == target and destination in wanted:
                sent[udp[8:]] = None
    finally:
        sock.close()
    return tuple(received), tuple(sent)


def seal_layer(
    kind: str, kit: FloodKit, boot: bytes | None, count: int
) -> tuple[float, dict[str, int]]:
    """C{Sealer.open} alone on C{count} datagrams of one kind, in-process.

    The receiver has the target's boot id (when captured) and has accepted what the
    target accepted, so it refuses as the node does. Microseconds per datagram, and
    the reasons.
    """
    receiver = Sealer(Keyring((kit.key,)), kit.cluster)
    if boot is not None:
        receiver = Sealer(Keyring((kit.key,)), kit.cluster, boot=boot)
    now = time.time()
    for datagram in kit.captured_in:
        try:
            receiver.open(now, datagram)
        except SealError:
            pass
    datagrams = build(kind, kit, random.Random(7), count)
    reasons: Counter[str] = Counter()
    start = time.process_time()
    for datagram in datagrams:
        try:
            receiver.open(now, datagram)
            reasons["OPENED"] += 1
        except SealError as e:
            reasons[e.reason] += 1
    return 1e6 * (time.process_time() - start) / count, dict(reasons)


class LogCounter:
    """Counts the node's refusal lines (twistd logs one per dropped datagram)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0

    def read(self) -> dict[str, int]:
        """The refusal reasons logged since the last call."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        counts = Counter(m.group(1).decode() for m in _REFUSAL.finditer(data, 0, end))
        return dict(counts)


@define
class Watch:
    """Polls every node's status once a second; notes any change of view."""

    nodes: Sequence[ClusterNodeProcess]
    lock: threading.Lock
    members: dict[str, frozenset[str]]
    master: str | None
    rounds: int = 0
    unanswered: int = 0
    changes: list[str] = field(factory=list)
    _stop: threading.Event = field(factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.rounds += 1
            for node in self.nodes:
                try:
                    with self.lock:
                        view = node.view()
                except (OSError, ValueError, KeyError):
                    self.unanswered += 1
                    continue
                if view.members != self.members[view.id] or view.master != self.master:
                    self.changes.append(
                        f"{time.strftime('%H:%M:%S')} {view.id[:8]}: "
                        f"{len(view.members)} members, master {str(view.master)[:8]}"
                    )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)


@frozen
class Phase:
    """One kind of datagram sent at the target, and what the node made of it."""

    kind: str
    load: float
    sent: int
    counted: int
    other_drops: dict[str, int]
    kernel_drops: int
    hellos_received: int
    seconds: float
    node_cpu_s: float
    sender_cpu_s: float
    build_cpu_s: float
    waits: int
    reasons: dict[str, int]
    local_us: float
    local_reasons: dict[str, int]
    errors: tuple[str, ...]

    @property
    def accepted(self) -> int:
        return self.sent - self.counted - self.kernel_drops


def dropped_of(node: ClusterNodeProcess, lock: threading.Lock) -> dict[str, int]:
    """The node's C{dropped} counters from C{GET /status}."""
    with lock:
        return {str(k): int(v) for k, v in node.status()["dropped"].items()}


def run_phase(
    kind: str,
    count: int,
    kit: FloodKit,
    target: ClusterNodeProcess,
    senders: int,
    seed: int,
    lock: threading.Lock,
    log: LogCounter,
    local: tuple[float, dict[str, int]],
) -> Phase:
    """Send C{count} datagrams of one kind at the target and count what it did."""
    load = step(f"    {count:,} {kind} datagrams, {senders} sender(s)")
    with open("/proc/sys/net/core/rmem_default", encoding="ascii") as f:
        rcvbuf = int(f.read())
    table = UdpTable(kit.port)
    dropped0 = dropped_of(target, lock)
    received0 = metrics_of(target)[_METRIC_RECEIVED]
    log.read()
    context = multiprocessing.get_context("spawn")
    shares = [
        count // senders + (1 if i < count % senders else 0) for i in range(senders)
    ]
    pipes = []
    processes = []
    try:
        for index, share in enumerate(shares):
            ours, theirs = context.Pipe()
            job = SendJob(
                kind,
                share,
                seed * 1000 + index,
                kit,
                rcvbuf // 2,
                rcvbuf // 8,
                os.getpid(),
            )
            process = context.Process(
                target=sender_main,
                args=(job, theirs),
                name=f"sender-{index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            pipes.append(ours)
            processes.append(process)
        for conn in pipes:
            if not conn.poll(120.0):
                raise RuntimeError("a sender did not get ready in 120 s")
            conn.recv()
        pid = pid_of(target)
        _, kernel0 = table.state()
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        for conn in pipes:
            conn.send("go")
        reports: list[dict[str, Any]] = []
        for conn in pipes:
            if not conn.poll(3600.0):
                raise RuntimeError("a sender did not finish in an hour")
            reports.append(conn.recv())
        deadline = time.monotonic() + 30.0
        while table.state()[0] > 0 and time.monotonic() < deadline:
            time.sleep(0.0005)
        t1 = time.monotonic()
        cpu1 = cpu_seconds(pid) if target.running else cpu0
        _, kernel1 = table.state()
    finally:
        for process in processes:
            process.join(10.0)
            if process.is_alive():
                process.kill()
                process.join()
        for conn in pipes:
            conn.close()
        table.close()
    time.sleep(0.3)  # the last log lines
    dropped1 = dropped_of(target, lock)
    received1 = metrics_of(target)[_METRIC_RECEIVED]
    other = {
        reason: n - dropped0.get(reason, 0)
        for reason, n in dropped1.items()
        if reason != "auth" and n != dropped0.get(reason, 0)
    }
    phase = Phase(
        kind=kind,
        load=load,
        sent=sum(r["sent"] for r in reports),
        counted=dropped1.get("auth", 0) - dropped0.get("auth", 0),
        other_drops=other,
        kernel_drops=kernel1 - kernel0,
        hellos_received=round(received1 - received0),
        seconds=t1 - t0,
        node_cpu_s=cpu1 - cpu0,
        sender_cpu_s=sum(r["cpu_s"] for r in reports),
        build_cpu_s=sum(r["build_cpu_s"] for r in reports),
        waits=sum(r["waits"] for r in reports),
        reasons=log.read(),
        local_us=local[0],
        local_reasons=local[1],
        errors=tuple(r["error"] for r in reports if r["error"]),
    )
    print(
        f"    {phase.sent:,} sent, {phase.counted:,} counted, {phase.kernel_drops} "
        f"kernel drops, {phase.counted / phase.seconds:,.0f}/s, node CPU "
        f"{100 * phase.node_cpu_s / phase.seconds:.0f} %",
        flush=True,
    )
    return phase


@frozen
class Flood:
    """One flood of every phase at one node, and the checks after it."""

    runner: str
    registry: str
    total: int
    senders: int
    captured: tuple[int, int] | None
    plain_size: int
    phases: tuple[Phase, ...]
    alive: bool
    same_views: bool
    views_before: dict[str, list[str]]
    master: str | None
    watch_rounds: int
    watch_unanswered: int
    watch_changes: tuple[str, ...]
    #: Hellos the target received (from its two peers) over the whole flood.
    hellos_received: int
    flood_s: float
    notes: tuple[str, ...]


def views_of(
    nodes: Sequence[ClusterNodeProcess], lock: threading.Lock
) -> list[NodeView]:
    """Every node's view, now."""
    with lock:
        return [n.view() for n in nodes]


def flood(
    setup: Setup, runner: str, total: int, senders: int, seed: int, local_count: int
) -> Flood:
    """A sealed cluster of three; every phase sent at its first node."""
    step(f"flood under {runner}: starting 3 sealed nodes")
    nodes = start_cluster(3, True, setup, runner)
    lock = threading.Lock()
    notes: list[str] = []
    try:
        target, peers = nodes[0], nodes[1:]
        time.sleep(SETTLE_S)
        before = views_of(nodes, lock)
        members = {v.id: v.members for v in before}
        master = agreed_master_of(before)
        pid = pid_of(target)
        cluster = target.status()["cluster"]
        captured = capture(target.udp_port, [p.udp_port for p in peers], CAPTURE_S)
        if captured is None:
            notes.append(
                "no capture (not root): replays are of datagrams sealed 10 min ago"
            )
            captured = ((), ())
        into, out = captured
        plain = (
            int(statistics.median(len(d) for d in into)) - OVERHEAD
            if into
            else PLAIN_SIZE
        )
        key = read_keyring(setup.key_file).send_key
        kit = FloodKit(key, str(cluster), plain, into, out, target.udp_port)
        boot = Header.unpack(out[0]).boot if out else None
        local = {kind: seal_layer(kind, kit, boot, local_count) for kind in PHASES}
        log = LogCounter(os.path.join(target.workdir, "output.log"))
        watch = Watch(nodes, lock, members, master)
        received0, flood0 = metrics_of(target)[_METRIC_RECEIVED], time.monotonic()
        watch.start()
        phases = []
        try:
            for index, kind in enumerate(PHASES):
                count = total // len(PHASES) + (1 if index < total % len(PHASES) else 0)
                phases.append(
                    run_phase(
                        kind,
                        count,
                        kit,
                        target,
                        senders,
                        seed + index,
                        lock,
                        log,
                        local[kind],
                    )
                )
                if not target.running:
                    notes.append(f"the target exited during {kind}")
                    break
        finally:
            watch.stop()
        time.sleep(1.0)
        alive = target.running and target.pid == pid
        try:
            received1 = metrics_of(target)[_METRIC_RECEIVED]
        except OSError:
            received1 = received0
        flood_s = time.monotonic() - flood0
        try:
            after = views_of(nodes, lock)
        except OSError as e:
            after = []
            alive = False
            notes.append(f"no view after the flood: {e}")
        same = (
            bool(after)
            and all(v.members == members[v.id] for v in after)
            and agreed_master_of(after) == master
        )
    finally:
        stop_all(nodes)
    return Flood(
        runner=runner,
        registry="static peers" if setup.registry is None else "minietcd",
        total=total,
        senders=senders,
        captured=(len(into), len(out)) if into or out else None,
        plain_size=plain,
        phases=tuple(phases),
        alive=alive,
        same_views=same,
        views_before={k: sorted(v) for k, v in members.items()},
        master=master,
        watch_rounds=watch.rounds,
        watch_unanswered=watch.unanswered,
        watch_changes=tuple(watch.changes[:20]),
        hellos_received=round(received1 - received0),
        flood_s=flood_s,
        notes=tuple(notes),
    )


def _reasons(reasons: dict[str, int]) -> str:
    if not reasons:
        return "-"
    return ", ".join(
        f"{k} {v:,}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])
    )


def flood_table(result: Flood) -> tuple[list[str], bool]:
    """The markdown of one flood and whether its checks hold."""
    phases = result.phases
    out = [
        "| datagrams | sent | counted (dropped.auth) | kernel drops | accepted | "
        "node refused (/s) | node CPU (% of a core) | node CPU per datagram (us) | "
        "at one full core (/s) | Sealer.open alone (us) | refusals (node's log) | "
        "load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        out.append(
            f"| {p.kind} | {p.sent:,} | {p.counted:,} | {p.kernel_drops:,} | "
            f"{p.accepted:,} | {p.counted / p.seconds:,.0f} | "
            f"{100 * p.node_cpu_s / p.seconds:.0f} | "
            f"{1e6 * p.node_cpu_s / max(1, p.counted):.1f} | "
            f"{p.counted / max(p.node_cpu_s, 1e-9):,.0f} | {p.local_us:.1f} | "
            f"{_reasons(p.reasons)} | {p.load:.2f} |"
        )
    sent = sum(p.sent for p in phases)
    counted = sum(p.counted for p in phases)
    kernel = sum(p.kernel_drops for p in phases)
    seconds = sum(p.seconds for p in phases)
    cpu = sum(p.node_cpu_s for p in phases)
    reasons: Counter[str] = Counter()
    for p in phases:
        reasons.update(p.reasons)
    accepted = sum(p.accepted for p in phases)
    out.append(
        f"| **all** | {sent:,} | {counted:,} | {kernel:,} | {accepted:,} | "
        f"{counted / max(seconds, 1e-9):,.0f} | {100 * cpu / max(seconds, 1e-9):.0f} | "
        f"{1e6 * cpu / max(1, counted):.1f} | {counted / max(cpu, 1e-9):,.0f} |  | "
        f"{_reasons(dict(reasons))} |  |"
    )
    others: Counter[str] = Counter()
    for p in phases:
        others.update(p.other_drops)
    errors = [e for p in phases for e in p.errors]
    checks = [
        (
            f"zero accepted ({sent:,} sent = {counted:,} counted + {kernel:,} "
            f"kernel drops{' + ' + str(accepted) if accepted else ''})",
            accepted == 0 and sent == result.total,
        ),
        (f"no other drop reason rose ({_reasons(dict(others))})", not others),
        ("the target is alive (same pid, answers /status)", result.alive),
        ("every node lists the same members and master as before", result.same_views),
        (
            f"polled every second during the flood: {result.watch_rounds} rounds, "
            f"{len(result.watch_changes)} changed views, "
            f"{result.watch_unanswered} unanswered",
            not result.watch_changes,
        ),
        (
            "senders finished without error"
            + (": " + "; ".join(errors) if errors else ""),
            not errors,
        ),
    ]
    out.append("")
    for label, ok in checks:
        out.append(f"- {'PASS' if ok else 'FAIL'}: {label}")
    sender_cpu = sum(p.sender_cpu_s for p in phases)
    build_cpu = sum(p.build_cpu_s for p in phases)
    out.append(
        f"- legit hellos the target received during the flood: "
        f"{result.hellos_received} in {result.flood_s:.0f} s "
        f"(2 peers at 1/s: ~{2 * result.flood_s:.0f})"
    )
    out.append(
        f"- senders: {result.senders} process(es), {sender_cpu:.1f} s CPU "
        f"({build_cpu:.1f} s building), {sum(p.waits for p in phases):,} waits "
        "for the queue"
    )
    if result.captured is not None:
        out.append(
            f"- captured on lo: {result.captured[0]} datagrams to the target, "
            f"{result.captured[1]} from it; a sealed hello is "
            f"{result.plain_size + OVERHEAD} bytes"
        )
    for p in phases:
        out.append(f"- Sealer.open alone on {p.kind}: {_reasons(p.local_reasons)}")
    for change in result.watch_changes:
        out.append(f"- view change: {change}")
    for note in result.notes:
        out.append(f"- note: {note}")
    return out, all(ok for _, ok in checks)


# -- main -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the parts, print the tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", default="hellos,flood", help="hellos, flood or both")
    parser.add_argument("--quick", action="store_true", help="1 round, 10 s, 100,000")
    parser.add_argument("--size", type=int, default=10, help="nodes for the hellos")
    parser.add_argument(
        "--rounds", type=int, default=None, help="plain+sealed pairs (2)"
    )
    parser.add_argument("--idle", type=float, default=None, help="seconds sampled (30)")
    parser.add_argument("--flood", type=int, default=None, help="datagrams (1,000,000)")
    parser.add_argument("--runners", default="twistd,twist", help="flood under these")
    parser.add_argument("--senders", type=int, default=1, help="sender processes")
    parser.add_argument(
        "--registry",
        choices=("static", "minietcd"),
        default="static",
        help="static peers (--no-etcd) or one minietcd",
    )
    parser.add_argument("--local", type=int, default=20000, help="Sealer.open sample")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=None, help="write raw results here")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 2)
    idle = args.idle if args.idle is not None else (10.0 if args.quick else 30.0)
    total = (
        args.flood if args.flood is not None else (100_000 if args.quick else 1_000_000)
    )
    runners = [r for r in args.runners.split(",") if r]
    if not parts <= {"hellos", "flood"} or not set(runners) <= {"twistd", "twist"}:
        parser.error("--only takes hellos,flood; --runners takes twistd,twist")
    # A SIGTERM unwinds like an exception: every finally and atexit hook runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.update(
        bytecode_env(os.path.join(tempfile.gettempdir(), "twistednode-pycache"))
    )
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    scratch = tempfile.mkdtemp(prefix="seal-bench-")
    key_file = os.path.join(scratch, "cluster.key")
    with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(new_key() + "\n")
    started = time.monotonic()
    before = step(
        f"seal benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    )
    etcd = MiniEtcdProcess().start() if args.registry == "minietcd" else None
    report: list[str] = []
    raw: dict[str, Any] = {}
    ok = True
    try:
        setup = Setup(etcd.url if etcd else None, key_file)
        where = "minietcd" if etcd else "static peers (--no-etcd)"
        if "hellos" in parts:
            runs = []
            for round_ in range(1, rounds + 1):
                order = (False, True) if round_ % 2 else (True, False)
                for sealed in order:
                    runs.append(
                        hello_run(
                            args.size,
                            sealed,
                            setup,
                            idle,
                            round_,
                            etcd.pid if etcd else None,
                        )
                    )
            table, passed = hello_table(runs, args.size)
            ok &= passed
            report += [
                f"## CPU per hello, keyring off and on: {args.size} nodes, {where}, "
                f"default timers, {idle:g} s idle x {rounds} round(s) each",
                "",
                *table,
                "",
            ]
            raw["hellos"] = [asdict(r) for r in runs]
        if "flood" in parts:
            raw["flood"] = []
            for runner in runners:
                result = flood(
                    setup, runner, total, args.senders, args.seed, args.local
                )
                table, passed = flood_table(result)
                ok &= passed
                report += [
                    f"## Flood: {total:,} bad datagrams at one node of 3, sealed, "
                    f"{where}, under {runner}",
                    "",
                    *table,
                    "",
                ]
                raw["flood"].append(asdict(result))
    finally:
        if etcd is not None:
            etcd.stop()
        try:
            os.unlink(key_file)
            os.rmdir(scratch)
        except OSError:
            pass
    after = load_1min()
    print()
    print(
        f"load average (1 min) before: {before:.2f}, after: {after:.2f}; "
        f"{os.cpu_count()} cores; took {time.monotonic() - started:.0f} s"
    )
    print()
    print("\n".join(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(raw, f, indent=1, default=str)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
