"""Election benchmark: the leased master against node-discover's election, in one run.

Run from the repository root (needs ``node``, ``npm ci --prefix tests/harness/nodejs``
and root, for the iptables rules of the UDP partition)::

    .venv/bin/python benchmarks/election_bench.py           # about 20 minutes
    .venv/bin/python benchmarks/election_bench.py --quick   # about 6 minutes
    .venv/bin/python benchmarks/election_bench.py --sizes 3 --rounds 5 --json out.json

For each size N (3 and 5) three kinds of cluster run one after the other (the order
alternates between sizes), each on a fresh minietcd of its own:

  - ``lease``: N ``twistd -n clusternode --election lease`` (the master holds the
    registry key /twistednode/<cluster>/master, ``--master-ttl``, default 2 s);
  - ``nd-mode``: N of our nodes with ``--election node-discover`` (node-discover's
    hello rules, membership still from the registry);
  - ``node-discover``: N node-discover 1.2.1 peers (the anchor), each with a static
    unicast list of every port of the session, as they have no registry.

All run with the default timers (hello 1 s, check 2 s, node timeout 2 s). Every node is
polled every ``--poll`` seconds (20 ms) by a thread of its own: our nodes by
``GET /status``, node-discover peers by the ``members`` command of
``tests/harness/nodejs/peer.js``. Each answer is a L{NodeView} stamped with the
monotonic time the question was sent and the answer received. In each session:

  1. spawn N processes back to back -> one master agreed: every node names the same
     master (our ``master`` field; a peer's single master in its table) and exactly
     that node says it is master itself;
  2. registry requests per second per node, over ``--idle-window`` seconds of the
     settled cluster: the delta of minietcd's ``minietcd_http_requests_total`` (every
     answered request, watches included) divided by the window and N. The
     election's own share is lease minus nd-mode, which differ only in it;
  3. ``--rounds`` times: SIGKILL of the agreed master at a random phase of the check
     timer -> the survivors agree on a new master; then a replacement joins (a
     peer reuses the victim's port) and the cluster settles again;
  4. the same with SIGTERM (a clean stop: our nodes resign the key);
  5. a UDP partition of ``--partition`` seconds: iptables drops every UDP datagram to
     or from the master's port on lo (in a chain of this process, deleted in a
     ``finally`` and at exit); then healed -> one master agreed by all;
  6. a registry outage of ``--outage`` seconds: minietcd SIGSTOPped, a late joiner
     started a quarter of the way in, SIGCONT -> one master agreed by all. The anchor
     has no registry to lose; it gets the same late joiner during the same time.

Two masters: two nodes that each answered isMaster in two consecutive polls whose
intervals (answer of the first to question of the second) overlap; the table gives
the seconds of such overlap (a sweep over the intervals), and also counts
single polls of one node claiming mastership entirely inside another's interval.
No master: the time in which every node (alive or not) provably did not claim, from
two consecutive non-claiming polls. Samples far apart prove nothing either way.

Every agreement time is the answer of the first poll round that shows it, so it is an
upper bound by up to one poll interval plus the poll's own time, the same for all
kinds. Output: one markdown table per size with the three kinds, the ratios to the
anchor, and PASS/MISS for the goals of issue 11 (on the lease column): zero seconds
with two masters in every fault, SIGKILL failover median no worse than
node-discover's and max <= master TTL + 0.5 s, SIGTERM failover <= 100 ms, spawn to
master <= 0.5 x node-discover's. The load average is printed before and after: every
number is a latency on a shared CPU. Our nodes start from cached bytecode, as an
installed package does (see L{benchmarks.cluster_bench}).

If the benchmark is SIGKILLed, its iptables chain (C{TNELECT<pid>}) stays behind:
C{iptables -D INPUT -i lo -j TNELECT<pid>; iptables -F TNELECT<pid>; iptables -X
TNELECT<pid>} removes it.
"""

from __future__ import annotations

import argparse
import atexit
import bisect
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from attrs import define, field

from benchmarks.cluster_bench import warm_up
from benchmarks.clusternode_procs import bytecode_env
from tests.harness.clusternodes import (
    ClusterNodeProcess,
    MasterTimeline,
    NodeView,
    all_see_all,
    view_of_status,
)
from tests.harness.nodediscover import (
    NodeDiscoverPeer,
    free_udp_ports,
    require_node_discover,
)
from tests.harness.servers import MiniEtcdProcess

#: node-discover's default check interval, which also bounds the random kill phase.
CHECK_S = 2.0
#: The lease mode's master TTL unless --master-ttl says otherwise.
MASTER_TTL_S = 2
#: After an agreement: how long to wait before the next fault (and keep counting).
SETTLE_S = 0.5
#: How long a status question may take.
POLL_TIMEOUT_S = 2.0
#: The kinds of cluster, in the order of the columns.
KINDS = ("lease", "nd-mode", "node-discover")
ANCHOR = "node-discover"

Views = Mapping[str, NodeView]
Condition = Callable[[Views], bool]


def wait_bound(size: int) -> float:
    """Bound for any one wait: N processes start Python and Twisted on 2 cores."""
    return 30.0 + 2.0 * size


def load() -> float:
    """The one-minute load average."""
    return round(os.getloadavg()[0], 2)


# -- the nodes ----------------------------------------------------------------------


class Member:
    """One node of a session, of whichever kind, as the benchmark drives it."""

    spawned_at: float = 0.0
    exited_at: float | None = None

    @property
    def id(self) -> str:
        """The node id the views use."""
        raise NotImplementedError

    def start(self) -> None:
        """Spawn the process; returns at once."""
        raise NotImplementedError

    def wait_started(self, timeout: float) -> None:
        """Block until the node's id is known."""

    def pollable(self) -> bool:
        """Whether a poll can be answered now."""
        raise NotImplementedError

    def view(self) -> NodeView:
        """What the node says now (only ever called from its poll thread)."""
        raise NotImplementedError

    @property
    def udp_port(self) -> int:
        """The port its hellos come from and go to."""
        raise NotImplementedError

    def crash(self) -> float:
        """SIGKILL and reap; when the signal went (monotonic)."""
        raise NotImplementedError

    def terminate(self) -> float:
        """SIGTERM without waiting; when the signal went (monotonic)."""
        raise NotImplementedError

    def reap(self, timeout: float) -> None:
        """Wait for the process to exit (after L{terminate})."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the process if it runs and clean up after it."""
        raise NotImplementedError

    def describe(self) -> str:
        """State and recent output, for an error message."""
        raise NotImplementedError


class OurNode(Member):
    """A C{twistd -n clusternode} (L{tests.harness.clusternodes.ClusterNodeProcess})."""

    def __init__(self, process: ClusterNodeProcess) -> None:
        self.process = process
        self._port: int | None = None

    @property
    def id(self) -> str:
        return self.process.node_id

    def start(self) -> None:
        self.process.launch()
        assert self.process.launched_at is not None
        self.spawned_at = self.process.launched_at

    def pollable(self) -> bool:
        return self.process.running

    def view(self) -> NodeView:
        sent = time.monotonic()
        status = self.process.status(POLL_TIMEOUT_S)
        received = time.monotonic()
        port = status["self"]["port"]
        if isinstance(port, int):
            self._port = port
        return view_of_status(status, sent, received)

    @property
    def udp_port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"node {self.id} has not reported its UDP port")
        return self._port

    def crash(self) -> float:
        sent = time.monotonic()
        self.process.kill()
        self.exited_at = time.monotonic()
        return sent

    def terminate(self) -> float:
        sent = time.monotonic()
        self.process.signal(signal.SIGTERM)
        return sent

    def reap(self, timeout: float) -> None:
        self.process.wait_exit(timeout)
        self.exited_at = time.monotonic()

    def stop(self) -> None:
        self.process.stop()
        if self.exited_at is None:
            self.exited_at = time.monotonic()

    def describe(self) -> str:
        return self.process.describe(15)


@define(eq=False)
class PolledPeer(NodeDiscoverPeer):
    """A node-discover peer whose table can be asked for many times a second.

    C{send_command} waits for its reply by scanning every event since the start; at
    50 questions a second that grows without bound, so this waits from a mark.
    """

    def table(self, timeout: float) -> Mapping[str, Any]:
        """The reply to C{members}: C{iid}, C{isMaster} and C{nodes}."""
        with self._cond:
            self._seq += 1
            seq = self._seq
        since = self.mark()
        self._write({"cmd": "members", "seq": seq})
        reply = self.wait_for(
            lambda e: e.kind == "reply" and e.get("seq") == seq,
            timeout,
            "members",
            since=since,
        )
        return reply.fields


class PeerNode(Member):
    """A node-discover 1.2.1 peer (L{tests.harness.nodediscover.NodeDiscoverPeer})."""

    def __init__(self, port: int, unicast: Sequence[str]) -> None:
        peer = PolledPeer.create(port, unicast=list(unicast))
        assert isinstance(peer, PolledPeer)
        self.peer = peer
        self._started = False

    @property
    def id(self) -> str:
        return self.peer.iid

    def start(self) -> None:
        self.peer.start()
        assert self.peer.spawned_at_ms is not None
        self.spawned_at = self.peer.spawned_at_ms / 1000.0

    def wait_started(self, timeout: float) -> None:
        self.peer.wait_started(timeout)

    def pollable(self) -> bool:
        if not self._started:
            self._started = bool(self.peer.events("started"))
        return self._started and self.peer.returncode is None

    def view(self) -> NodeView:
        sent = time.monotonic()
        table = self.peer.table(POLL_TIMEOUT_S)
        received = time.monotonic()
        me = str(table["iid"])
        nodes = table["nodes"]
        claimants = {str(n["id"]) for n in nodes if n.get("isMaster")}
        if table["isMaster"]:
            claimants.add(me)
        return NodeView(
            id=me,
            is_master=bool(table["isMaster"]),
            members=frozenset(str(n["id"]) for n in nodes),
            claimants=frozenset(claimants),
            master=next(iter(claimants)) if len(claimants) == 1 else None,
            sent=sent,
            received=received,
        )

    @property
    def udp_port(self) -> int:
        return self.peer.port

    def crash(self) -> float:
        sent = time.monotonic()
        self.peer.kill()
        self.exited_at = time.monotonic()
        return sent

    def terminate(self) -> float:
        pid = self.peer.pid
        if pid is None or self.peer.returncode is not None:
            raise RuntimeError(f"peer on port {self.udp_port} is not running")
        sent = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        return sent

    def reap(self, timeout: float) -> None:
        self.peer.stop(timeout)
        self.exited_at = time.monotonic()

    def stop(self) -> None:
        self.peer.stop()
        if self.exited_at is None:
            self.exited_at = time.monotonic()

    def describe(self) -> str:
        return self.peer.describe()


# -- observing ----------------------------------------------------------------------


def named_master(views: Iterable[NodeView]) -> str | None:
    """The master every view names, if exactly that node says it is master."""
    views = list(views)
    named = {v.master for v in views}
    if len(named) != 1:
        return None
    (master,) = named
    if master is None or [v.id for v in views if v.is_master] != [master]:
        return None
    return master


def agreed(views: Views) -> bool:
    """Condition: one master agreed."""
    return named_master(views.values()) is not None


def settled(views: Views) -> bool:
    """Condition: one master agreed and every node sees every other one."""
    return agreed(views) and all_see_all(views.values(), views.keys())


@define(eq=False)
class Poller:
    """A thread per node asking it every C{interval} seconds; every answer kept."""

    interval: float
    _samples: list[NodeView] = field(factory=list)
    _lock: threading.Lock = field(factory=threading.Lock)
    _threads: dict[int, tuple[threading.Thread, threading.Event]] = field(factory=dict)

    def follow(self, member: Member) -> None:
        """Start polling C{member} (polls that fail are not recorded)."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(member, stop), name="poll", daemon=True
        )
        self._threads[id(member)] = (thread, stop)
        thread.start()

    def _run(self, member: Member, stop: threading.Event) -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            if member.pollable():
                try:
                    view = member.view()
                except (OSError, AssertionError, RuntimeError, ValueError, KeyError):
                    pass
                else:
                    with self._lock:
                        self._samples.append(view)
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:
                next_at, delay = time.monotonic(), 0.0
            stop.wait(delay)

    def unfollow(self, member: Member) -> None:
        """Stop polling C{member}."""
        found = self._threads.pop(id(member), None)
        if found is not None:
            found[1].set()
            found[0].join(POLL_TIMEOUT_S + 5.0)

    def close(self) -> None:
        """Stop every poll thread."""
        for _, stop in self._threads.values():
            stop.set()
        for thread, _ in self._threads.values():
            thread.join(POLL_TIMEOUT_S + 5.0)
        self._threads.clear()

    def mark(self) -> int:
        """How many samples so far: where a later search may start."""
        with self._lock:
            return len(self._samples)

    def samples(self, since: int = 0) -> list[NodeView]:
        """A copy of the samples from index C{since}."""
        with self._lock:
            return self._samples[since:]

    def first_time(
        self, ids: Sequence[str], condition: Condition, since: int, after: float
    ) -> tuple[float, dict[str, NodeView]] | None:
        """When C{condition} first held over the views of C{ids} asked after C{after}.

        Replays the samples in the order of their answers, each replacing its node's
        previous one; the time is the answer that made the condition true.
        """
        wanted = set(ids)
        ordered = sorted(
            (v for v in self.samples(since) if v.id in wanted and v.sent >= after),
            key=lambda v: v.received,
        )
        latest: dict[str, NodeView] = {}
        for view in ordered:
            latest[view.id] = view
            if len(latest) == len(wanted) and condition(latest):
                return view.received, dict(latest)
        return None

    def wait(
        self,
        ids: Sequence[str],
        condition: Condition,
        since: int,
        after: float,
        timeout: float,
        description: str,
    ) -> tuple[float, dict[str, NodeView]]:
        """Block until L{first_time} finds a time; TimeoutError after C{timeout}."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.first_time(ids, condition, since, after)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                latest: dict[str, NodeView] = {}
                for view in self.samples(since):
                    if view.id in ids:
                        latest[view.id] = view
                shown = "\n".join(
                    f"  {v.id[:8]} master={v.is_master} names={v.master} "
                    f"members={len(v.members)}"
                    for v in latest.values()
                )
                raise TimeoutError(
                    f"timed out after {timeout:.0f} s waiting for {description}; "
                    f"{len(latest)}/{len(ids)} nodes answered, last views:\n{shown}"
                )
            time.sleep(self.interval / 2)


@define
class TwoMasters:
    """Proven two-master time in a window."""

    #: Seconds in which two nodes' known-master intervals overlap.
    seconds: float = 0.0
    #: Polls of one node claiming mastership entirely inside another's interval.
    samples: int = 0

    def add(self, other: TwoMasters) -> None:
        """Accumulate another window."""
        self.seconds += other.seconds
        self.samples += other.samples

    @property
    def none(self) -> bool:
        """Whether nothing proves two masters."""
        return self.seconds == 0 and self.samples == 0


def _clip(start: float, end: float, a: float, b: float) -> tuple[float, float] | None:
    a, b = max(a, start), min(b, end)
    return (a, b) if a < b else None


def two_masters(samples: Sequence[NodeView], start: float, end: float) -> TwoMasters:
    """The two-master time that C{samples} prove within [C{start}, C{end}]."""
    timeline = MasterTimeline()
    for view in sorted(samples, key=lambda v: v.sent):
        timeline.add(view)
    by_node: dict[str, list[tuple[float, float]]] = {}
    events: list[tuple[float, int, str]] = []
    for node, a, b in timeline.known_intervals():
        by_node.setdefault(node, []).append((a, b))
        clipped = _clip(start, end, a, b)
        if clipped is not None:
            events += [(clipped[0], 1, node), (clipped[1], -1, node)]
    events.sort(key=lambda e: (e[0], e[1]))
    active: dict[str, int] = {}
    seconds = 0.0
    previous = start
    for at, delta, node in events:
        if len(active) >= 2:
            seconds += at - previous
        active[node] = active.get(node, 0) + delta
        if active[node] == 0:
            del active[node]
        previous = at
    inside = 0
    for intervals in by_node.values():
        intervals.sort()
    for view in samples:
        if not view.is_master or not (start <= view.sent and view.received <= end):
            continue
        for node, intervals in by_node.items():
            if node == view.id:
                continue
            i = bisect.bisect_right(intervals, (view.sent, float("inf"))) - 1
            if i >= 0 and view.received <= intervals[i][1]:
                inside += 1
                break
    return TwoMasters(seconds, inside)


def no_master_seconds(
    samples: Sequence[NodeView],
    members: Sequence[Member],
    start: float,
    end: float,
) -> float:
    """Seconds in [C{start}, C{end}] in which no node of C{members} can be master.

    A node provably did not claim between two consecutive polls that both said it
    is not master, before its spawn and after its exit; elsewhere it may have.
    """
    per_node: dict[str, list[NodeView]] = {}
    for view in sorted(samples, key=lambda v: v.sent):
        per_node.setdefault(view.id, []).append(view)
    events: list[tuple[float, int]] = []
    for member in members:
        try:
            node_id = member.id
        except AssertionError:
            continue
        not_master: list[tuple[float, float]] = [(-1e18, member.spawned_at)]
        if member.exited_at is not None:
            not_master.append((member.exited_at, 1e18))
        views = per_node.get(node_id, [])
        for first, second in zip(views, views[1:], strict=False):
            if not first.is_master and not second.is_master:
                not_master.append((first.received, second.sent))
        merged: list[tuple[float, float]] = []
        for a, b in sorted(not_master):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        for a, b in merged:
            clipped = _clip(start, end, a, b)
            if clipped is not None:
                events += [(clipped[0], 1), (clipped[1], -1)]
    events.sort()
    covering = 0
    seconds = 0.0
    previous = start
    for at, delta in events:
        if covering == len(members):
            seconds += at - previous
        covering += delta
        previous = at
    return seconds


# -- faults -------------------------------------------------------------------------


class UdpPartition:
    """iptables rules dropping UDP to and from one port on lo, in a chain of our own.

    The chain is hooked into INPUT only: looped-back datagrams pass INPUT on their
    way in, and a DROP there does not fail the sender's C{sendto} (one in OUTPUT
    would, with EPERM). L{heal} deletes everything; it also runs at exit.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.chain = f"TNELECT{os.getpid()}"
        self._made = False

    @staticmethod
    def _iptables(*args: str, check: bool = True) -> None:
        subprocess.run(
            ["iptables", "-w", *args],
            check=check,
            stdout=subprocess.DEVNULL,
            stderr=None if check else subprocess.DEVNULL,
        )

    def cut(self) -> None:
        """Create the chain and its rules; from now on the port is cut off."""
        atexit.register(self.heal)
        self._made = True
        self._iptables("-N", self.chain)
        self._iptables(
            "-A", self.chain, "-p", "udp", "--dport", str(self.port), "-j", "DROP"
        )
        self._iptables(
            "-A", self.chain, "-p", "udp", "--sport", str(self.port), "-j", "DROP"
        )
        self._iptables("-I", "INPUT", "-i", "lo", "-j", self.chain)

    def heal(self) -> None:
        """Delete the hook, the rules and the chain (each if it exists)."""
        if not self._made:
            return
        self._made = False
        self._iptables("-D", "INPUT", "-i", "lo", "-j", self.chain, check=False)
        self._iptables("-F", self.chain, check=False)
        self._iptables("-X", self.chain, check=False)
        atexit.unregister(self.heal)


def registry_requests(url: str) -> float:
    """Every request minietcd answered so far (C{minietcd_http_requests_total})."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode("utf-8")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("minietcd_http_requests_total{")
    )


# -- one session --------------------------------------------------------------------


@define
class Settings:
    """What a session does, from the command line."""

    rounds: int
    partition: float
    outage: float
    idle_window: float
    poll: float
    master_ttl: int


@define(eq=False)
class Session:
    """One kind of cluster of one size through every measurement."""

    kind: str
    size: int
    settings: Settings
    rng: random.Random
    registry: MiniEtcdProcess | None = None
    poller: Poller = field(init=False)
    live: list[Member] = field(factory=list)
    everyone: list[Member] = field(factory=list)
    ports: list[int] = field(factory=list)
    result: dict[str, Any] = field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self.poller = Poller(self.settings.poll)

    @property
    def wait_s(self) -> float:
        return wait_bound(self.size)

    def ids(self, members: Iterable[Member] | None = None) -> list[str]:
        return [m.id for m in (self.live if members is None else members)]

    def new_member(self, port: int | None = None) -> Member:
        """A member of this session's kind (not started)."""
        if self.kind == ANCHOR:
            unicast = [f"127.0.0.1:{p}" for p in self.ports]
            assert port is not None
            return PeerNode(port, unicast)
        assert self.registry is not None
        args = ["--election", "lease" if self.kind == "lease" else "node-discover"]
        if self.kind == "lease":
            args += ["--master-ttl", str(self.settings.master_ttl)]
        return OurNode(
            ClusterNodeProcess(
                etcd=self.registry.url,
                cluster="election-bench",
                node_id=str(uuid.uuid4()),
                extra_args=args,
            )
        )

    def launch(self, member: Member) -> None:
        self.everyone.append(member)
        member.start()
        self.poller.follow(member)

    def master(self) -> Member:
        """The agreed master of a settled cluster (waits for it)."""
        since = self.poller.mark()
        _, views = self.poller.wait(
            self.ids(),
            settled,
            since,
            time.monotonic(),
            self.wait_s,
            "a settled cluster",
        )
        master_id = named_master(views.values())
        return next(m for m in self.live if m.id == master_id)

    def run(self) -> dict[str, Any]:
        """Every measurement; a failure ends the session (the rest stays empty)."""
        self.result = {"load_before": load(), "errors": []}
        step = "start"
        try:
            if self.kind == ANCHOR:
                require_node_discover()
                # Every port the session may bind, so the unicast list is fixed.
                self.ports = free_udp_ports(self.size + 1)
            else:
                self.registry = MiniEtcdProcess().start()
            step = "spawn"
            self.spawn()
            step = "requests"
            self.requests()
            step = "SIGKILL rounds"
            self.failovers("kill", self.settings.rounds)
            step = "SIGTERM rounds"
            self.failovers("term", self.settings.rounds)
            step = "partition"
            self.partition()
            step = "outage"
            self.outage()
        except (TimeoutError, AssertionError, RuntimeError, OSError) as e:
            logs = "\n".join(m.describe() for m in self.live)
            error = f"{step}: {type(e).__name__}: {e}\n{logs}"[:6000]
            self.result["errors"].append(error)
            print(f"# {self.kind} N={self.size} failed in {error}", file=sys.stderr)
        finally:
            self.poller.close()
            for member in self.everyone:
                member.stop()
            if self.registry is not None:
                self.registry.resume()
                self.registry.stop()
        self.result["load_after"] = load()
        return self.result

    def spawn(self) -> None:
        """Spawn N back to back; time to one master agreed."""
        members = [
            self.new_member(self.ports[i] if self.ports else None)
            for i in range(self.size)
        ]
        for member in members:
            self.launch(member)
        self.live = members
        for member in members:
            member.wait_started(self.wait_s)
        t0 = min(m.spawned_at for m in members)
        at, _ = self.poller.wait(
            self.ids(), agreed, 0, t0, self.wait_s, "one master after the spawn"
        )
        self.result["spawn_to_master"] = at - t0
        self.master()
        two = two_masters(self.poller.samples(), t0, at + SETTLE_S)
        self.result["spawn_two_masters"] = [two.seconds, two.samples]
        print(f"# {self.kind} N={self.size}: spawn {at - t0:.3f} s", file=sys.stderr)

    def requests(self) -> None:
        """Registry requests per second per node over an idle window."""
        if self.registry is None:
            self.result["requests_per_node_s"] = 0.0
            return
        self.master()
        before = registry_requests(self.registry.url)
        started = time.monotonic()
        time.sleep(self.settings.idle_window)
        after = registry_requests(self.registry.url)
        elapsed = time.monotonic() - started
        # The first scrape is counted by the second.
        rate = (after - before - 1) / elapsed / self.size
        self.result["requests_per_node_s"] = rate

    def failovers(self, how: str, rounds: int) -> None:
        """SIGKILL or SIGTERM of the agreed master, C{rounds} times; each replaced."""
        times: list[float] = []
        total = TwoMasters()
        for _ in range(rounds):
            self.master()
            time.sleep(SETTLE_S + self.rng.uniform(0, CHECK_S))
            victim = self.master()
            survivors = [m for m in self.live if m is not victim]
            since = self.poller.mark()
            sent = victim.crash() if how == "kill" else victim.terminate()
            at, _ = self.poller.wait(
                self.ids(survivors),
                agreed,
                since,
                sent,
                self.wait_s,
                f"a new master after SIG{how.upper()}",
            )
            times.append(at - sent)
            if how == "term":
                victim.reap(self.wait_s)
            time.sleep(SETTLE_S)
            self.poller.unfollow(victim)
            total.add(two_masters(self.poller.samples(since), sent, at + SETTLE_S))
            self.live = survivors
            replacement = self.new_member(victim.udp_port if self.ports else None)
            self.launch(replacement)
            replacement.wait_started(self.wait_s)
            self.live.append(replacement)
            print(
                f"# {self.kind} N={self.size}: SIG{how.upper()} -> {at - sent:.3f} s",
                file=sys.stderr,
            )
        self.result[f"{how}_to_master"] = times
        self.result[f"{how}_two_masters"] = [total.seconds, total.samples]

    def partition(self) -> None:
        """UDP to and from the master's port dropped for a while, then healed."""
        master = self.master()
        time.sleep(SETTLE_S)
        master = self.master()
        port = master.udp_port
        since = self.poller.mark()
        cut = UdpPartition(port)
        started = time.monotonic()
        try:
            cut.cut()
            time.sleep(self.settings.partition)
        finally:
            cut.heal()
        healed = time.monotonic()
        cut_off = {
            v.id
            for v in self.poller.samples(since)
            if v.id != master.id
            and started <= v.sent
            and v.received <= healed
            and master.id not in v.members
        }
        at, views = self.poller.wait(
            self.ids(), settled, since, healed, self.wait_s, "one master after healing"
        )
        end = at + SETTLE_S
        time.sleep(SETTLE_S)
        samples = self.poller.samples(since)
        two = two_masters(samples, started, end)
        self.result["partition"] = {
            "two_masters": [two.seconds, two.samples],
            "no_master_s": no_master_seconds(samples, self.live, started, end),
            "heal_to_master": at - healed,
            "same_master": named_master(views.values()) == master.id,
            "cut_off": f"{len(cut_off)}/{len(self.live) - 1}",
        }
        print(
            f"# {self.kind} N={self.size}: partition two masters {two.seconds:.3f} s",
            file=sys.stderr,
        )

    def outage(self) -> None:
        """The registry SIGSTOPped (none for the anchor), a late joiner meanwhile."""
        self.master()
        time.sleep(SETTLE_S)
        since = self.poller.mark()
        started = time.monotonic()
        registry = self.registry
        try:
            if registry is not None:
                registry.pause()
            time.sleep(self.settings.outage / 4)
            joiner = self.new_member(self.ports[-1] if self.ports else None)
            self.launch(joiner)
            joiner.wait_started(self.wait_s)
            self.live.append(joiner)
            time.sleep(max(0.0, started + self.settings.outage - time.monotonic()))
        finally:
            if registry is not None:
                registry.resume()
        resumed = time.monotonic()
        at, _ = self.poller.wait(
            self.ids(),
            settled,
            since,
            resumed,
            self.wait_s,
            "one master after the registry came back",
        )
        end = at + SETTLE_S
        time.sleep(SETTLE_S)
        samples = self.poller.samples(since)
        two = two_masters(samples, started, end)
        self.result["outage"] = {
            "two_masters": [two.seconds, two.samples],
            "no_master_s": no_master_seconds(samples, self.live, started, end),
            "back_to_master": at - resumed,
        }
        print(
            f"# {self.kind} N={self.size}: outage two masters {two.seconds:.3f} s",
            file=sys.stderr,
        )


# -- report -------------------------------------------------------------------------


def _get(result: Mapping[str, Any], path: str) -> Any:
    value: Any = result
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


Verdict = Callable[[float, float | None, Any], bool]


@define
class Row:
    """One line of a size's table: a number of each kind, from its results.

    C{unit}: "ms" (seconds shown as ms), "ms-median"/"ms-max" (of a list), "two"
    (C{[seconds, samples]} of two masters), "s" (seconds), "rate".
    """

    label: str
    path: str
    unit: str
    goal: str = ""
    #: The lease column's verdict given (lease, anchor, lease's raw value).
    verdict: Verdict | None = None
    #: Whether the anchor measured the same thing (a ratio means something).
    comparable: bool = True

    def value(self, result: Mapping[str, Any]) -> float | None:
        """The number compared and divided (seconds, or the rate)."""
        found = _get(result, self.path)
        if found is None or self.unit == "text":
            return None
        if self.unit == "ms-median":
            return statistics.median(found) if found else None
        if self.unit == "ms-max":
            return max(found) if found else None
        if self.unit == "two":
            return float(found[0])
        return float(found)

    def show(self, result: Mapping[str, Any]) -> str:
        """The cell."""
        if self.unit == "text":
            return str(_get(result, self.path) or "-")
        value = self.value(result)
        if value is None:
            return "-"
        if self.unit.startswith("ms"):
            return f"{value * 1000:.0f}"
        if self.unit == "two":
            samples = _get(result, self.path)[1]
            return f"{value:.2f}" + (f" (+{samples:.0f})" if samples else "")
        return f"{value:.2f}"

    @property
    def has_ratio(self) -> bool:
        """Whether a ratio to the anchor means something."""
        return self.comparable and self.unit.startswith("ms")


def _no_two_masters(ours: float, anchor: float | None, raw: Any) -> bool:
    return ours == 0 and raw is not None and raw[1] == 0


def rows(settings: Settings) -> list[Row]:
    """The table's rows."""
    ttl = settings.master_ttl + 0.5
    return [
        Row(
            "spawn -> one master agreed (ms)",
            "spawn_to_master",
            "ms",
            "<= 0.5 x n-d",
            lambda ours, nd, _: nd is not None and ours <= 0.5 * nd,
        ),
        Row(
            "SIGKILL master -> new master, median (ms)",
            "kill_to_master",
            "ms-median",
            "<= n-d",
            lambda ours, nd, _: nd is not None and ours <= nd,
        ),
        Row(
            "SIGKILL master -> new master, max (ms)",
            "kill_to_master",
            "ms-max",
            f"<= {ttl * 1000:.0f}",
            lambda ours, _, __: ours <= ttl,
        ),
        Row("SIGTERM master -> new master, median (ms)", "term_to_master", "ms-median"),
        Row(
            "SIGTERM master -> new master, max (ms)",
            "term_to_master",
            "ms-max",
            "<= 100",
            lambda ours, _, __: ours <= 0.1,
        ),
        Row("two masters (s): spawn", "spawn_two_masters", "two", "0", _no_two_masters),
        Row(
            "two masters (s): SIGKILL rounds",
            "kill_two_masters",
            "two",
            "0",
            _no_two_masters,
        ),
        Row(
            "two masters (s): SIGTERM rounds",
            "term_two_masters",
            "two",
            "0",
            _no_two_masters,
        ),
        Row(
            f"two masters (s): UDP partition {settings.partition:g} s",
            "partition.two_masters",
            "two",
            "0",
            _no_two_masters,
        ),
        Row("no master (s): UDP partition", "partition.no_master_s", "s"),
        Row("partition: nodes that lost the master", "partition.cut_off", "text"),
        Row("partition healed -> one master (ms)", "partition.heal_to_master", "ms"),
        Row(
            f"two masters (s): registry outage {settings.outage:g} s + late joiner",
            "outage.two_masters",
            "two",
            "0",
            _no_two_masters,
        ),
        Row("no master (s): registry outage", "outage.no_master_s", "s"),
        Row(
            "registry back -> one master (ms)",
            "outage.back_to_master",
            "ms",
            comparable=False,
        ),
        Row("registry requests /s per node", "requests_per_node_s", "rate"),
    ]


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or not theirs:
        return "-"
    return f"{ours / theirs:.2f}"


def size_table(
    results: Mapping[str, Mapping[str, Any]], settings: Settings
) -> tuple[str, list[tuple[str, bool]]]:
    """The markdown table of one size and the lease mode's goal verdicts."""
    lines = [
        "| metric | lease | nd-mode | node-discover 1.2.1 | lease / n-d "
        "| nd-mode / n-d | goal (lease) | lease |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts: list[tuple[str, bool]] = []
    empty: dict[str, Any] = {}
    of = {k: results.get(k, empty) for k in KINDS}
    for row in rows(settings):
        values = {k: row.value(of[k]) for k in KINDS}
        cells = [row.show(of[k]) for k in KINDS]
        ratios = [
            _ratio(values[k], values[ANCHOR]) if row.has_ratio else "-"
            for k in ("lease", "nd-mode")
        ]
        verdict = ""
        if row.verdict is not None:
            ours = values["lease"]
            raw = _get(of["lease"], row.path)
            ok = ours is not None and row.verdict(ours, values[ANCHOR], raw)
            verdict = "PASS" if ok else "MISS"
            verdicts.append((row.label, ok))
        lines.append(
            f"| {row.label} | {' | '.join(cells)} | {' | '.join(ratios)} "
            f"| {row.goal} | {verdict} |"
        )
    lease_rate = _get(of["lease"], "requests_per_node_s")
    nd_rate = _get(of["nd-mode"], "requests_per_node_s")
    election = (
        "-" if lease_rate is None or nd_rate is None else f"{lease_rate - nd_rate:.2f}"
    )
    lines.append(
        f"| ... of which the election (lease - nd-mode) | {election} | 0 | 0 "
        "| - | - |  |  |"
    )
    errors = [str(len(of[k]["errors"])) if k in results else "-" for k in KINDS]
    lines.append(f"| sessions' errors | {' | '.join(errors)} | - | - |  |  |")
    return "\n".join(lines), verdicts


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run every kind per size, print the tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="3,5", help="comma-separated node counts")
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="SIGKILL and SIGTERM rounds (10; --quick: 3)",
    )
    parser.add_argument(
        "--partition",
        type=float,
        default=None,
        help="UDP partition seconds (10; --quick: 5)",
    )
    parser.add_argument(
        "--outage",
        type=float,
        default=None,
        help="registry outage seconds (30; --quick: 12)",
    )
    parser.add_argument(
        "--idle-window",
        type=float,
        default=None,
        help="seconds counted for the registry rate (10; --quick: 5)",
    )
    parser.add_argument("--poll", type=float, default=0.02, help="poll interval, s")
    parser.add_argument(
        "--master-ttl", type=int, default=MASTER_TTL_S, help="lease mode --master-ttl"
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds, shorter faults"
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help="which kinds to run")
    parser.add_argument("--seed", type=int, default=None, help="kill-phase seed")
    parser.add_argument("--json", default=None, help="write raw results here")
    args = parser.parse_args(argv)
    quick = args.quick

    def pick(value: float | None, full: float, fast: float) -> float:
        return value if value is not None else (fast if quick else full)

    settings = Settings(
        rounds=int(pick(args.rounds, 10, 3)),
        partition=pick(args.partition, 10.0, 5.0),
        outage=pick(args.outage, 30.0, 12.0),
        idle_window=pick(args.idle_window, 10.0, 5.0),
        poll=args.poll,
        master_ttl=args.master_ttl,
    )
    if os.geteuid() != 0:
        parser.error("the UDP partition needs root (iptables)")
    # A SIGTERM unwinds like an exception, so every finally (iptables rules, a
    # SIGSTOPped registry, the processes) and atexit hook still runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = [k for k in KINDS if k in args.kinds.split(",")]
    rng = random.Random(args.seed)
    before = load()
    print(f"# load average before: {before}", file=sys.stderr)
    # Start-up from cached bytecode, as an installed package has it.
    os.environ.update(
        bytecode_env(os.path.join(tempfile.gettempdir(), "twistednode-pycache"))
    )
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    with MiniEtcdProcess() as etcd:
        warm_up(etcd, None)
    results: dict[int, dict[str, dict[str, Any]]] = {}
    for index, size in enumerate(sizes):
        results[size] = {}
        order = kinds if index % 2 == 0 else kinds[::-1]
        for kind in order:
            session = Session(kind, size, settings, rng)
            results[size][kind] = session.run()
    after = load()
    out = [
        "# election benchmark: lease vs node-discover mode vs node-discover 1.2.1",
        "",
        f"load average before: {before}, after: {after} ({os.cpu_count()} cores); "
        f"rounds {settings.rounds}, partition {settings.partition:g} s, "
        f"outage {settings.outage:g} s, poll {settings.poll * 1000:.0f} ms, "
        f"master TTL {settings.master_ttl:g} s",
    ]
    verdicts: dict[int, list[tuple[str, bool]]] = {}
    for size in sizes:
        table, verdicts[size] = size_table(results[size], settings)
        loads = ", ".join(f"{k} {results[size][k]['load_before']:.2f}" for k in kinds)
        out += ["", f"## N = {size} (load at session start: {loads})", "", table]
    out += [
        "",
        "Times are upper bounds (the first poll answer showing the agreement). "
        "Two masters: seconds of overlapping proven mastership, (+k) single polls "
        "inside another's. The anchor has no registry: its outage row is the late "
        "joiner alone.",
        "",
        "## goals (lease mode)",
        "",
    ]
    for size in sizes:
        for label, ok in verdicts[size]:
            out.append(f"- N={size} {label}: {'PASS' if ok else 'MISS'}")
    print("\n".join(out))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"settings": str(settings), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
