"""Cluster nodes as real processes: C{twistd -n clusternode} on 127.0.0.1.

L{ClusterNodeProcess} runs one node with the C{twistd} next to the running Python,
a free HTTP port for its status API and, by default, UDP port 0 on 127.0.0.1. It
inherits the process handling of L{tests.harness.servers}: bounded start (polling
C{GET /status}), SIGTERM then SIGKILL on stop, PDEATHSIG so that a node dies with the
test process, and an C{atexit} backstop. The node id is chosen here (C{--node-id}), so
it is known before the node starts.

Observing a cluster from outside:

  - L{NodeView} is what one node says: whether it claims mastership, which members
    it sees and which of them claim mastership. L{ClusterNodeProcess.view} makes one
    from C{/status}; other kinds of node (node-discover peers) can make their own.
  - L{agreed_master} / L{agreed_master_of}: the id every node takes as the only
    master, or None.
  - L{wait_for_cluster} polls until a predicate over the views holds (bounded) and
    feeds every sample to a L{MasterTimeline}, which reports any moment at which two
    nodes provably both held mastership (L{MasterTimeline.overlaps}).

Sampling is not atomic: each status is answered at some unknown instant between the
request and the response. The timeline therefore only flags overlaps that the samples
prove (see L{MasterTimeline}).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Self

from attrs import define, field, frozen

from tests.harness.servers import (
    STOP_TIMEOUT,
    ManagedProcess,
    ServerStartError,
    free_port,
    twistd_path,
)

JSON = Any
Status = dict[str, JSON]

#: How long a status request may take before it counts as unanswered.
REQUEST_TIMEOUT = 2.0
#: Pause between two sampling rounds of L{wait_for_cluster}.
POLL_INTERVAL = 0.01


@frozen
class Timers:
    """Discovery intervals in seconds, for both kinds of node of one cluster.

    Every member of a cluster must run with the same intervals (wire spec section 5).
    """

    hello_interval: float
    check_interval: float
    node_timeout: float
    master_timeout: float

    def args(self) -> list[str]:
        """The C{twistd clusternode} options."""
        return [
            "--hello-interval",
            repr(self.hello_interval),
            "--check-interval",
            repr(self.check_interval),
            "--node-timeout",
            repr(self.node_timeout),
            "--master-timeout",
            repr(self.master_timeout),
        ]

    def node_discover(self) -> dict[str, Any]:
        """The same intervals as L{tests.harness.nodediscover.NodeDiscoverPeer.create}
        takes."""
        return {
            "hello_interval": round(self.hello_interval * 1000),
            "check_interval": round(self.check_interval * 1000),
            "node_timeout": round(self.node_timeout * 1000),
            "master_timeout": round(self.master_timeout * 1000),
        }


#: node-discover's defaults (and ours).
DEFAULT_TIMERS = Timers(1.0, 2.0, 2.0, 2.0)
#: tests.harness.nodediscover.FAST_TIMERS, for tests whose point is not the timing.
FAST_TIMERS = Timers(0.2, 0.4, 0.8, 0.8)


class _StatusClient:
    """A keep-alive HTTP connection to one node, reconnecting when it breaks."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self._connection: http.client.HTTPConnection | None = None

    def get(self, path: str, timeout: float = REQUEST_TIMEOUT) -> tuple[int, bytes]:
        """GET C{path}; retry once on a fresh connection; raise OSError if both fail."""
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(
                    self.host, self.port, timeout=timeout
                )
            try:
                self._connection.request("GET", path)
                response = self._connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if attempt == 2:
                    raise OSError(f"GET {path} on port {self.port}: {e!r}") from e
                continue
            if response.will_close:
                self.close()
            return response.status, body
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection (the next get opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@frozen
class NodeView:
    """What one node says about the cluster at one moment.

    @ivar id: the node's own id.
    @ivar is_master: whether it says it is master itself.
    @ivar members: the ids of the other nodes it sees.
    @ivar claimants: the ids it sees claiming mastership, itself included if master.
    @ivar master: the master it names (a clusternode's C{master} field), if it names
        one; None for kinds of node that do not.
    @ivar sent: C{time.monotonic()} when the question was asked.
    @ivar received: C{time.monotonic()} when the answer came.
    @ivar sources: how it learned each member ("registry", "static", "learned").
    @ivar uptime: seconds since the node started, by its own clock, if it says.
    """

    id: str
    is_master: bool
    members: frozenset[str]
    claimants: frozenset[str]
    master: str | None
    sent: float
    received: float
    sources: Mapping[str, str] = field(factory=dict, eq=False)
    uptime: float | None = field(default=None, eq=False)


def view_of_status(status: Status, sent: float, received: float) -> NodeView:
    """The L{NodeView} of one clusternode C{/status} document."""
    me = status["self"]
    members = status["members"]
    claimants = {m["id"] for m in members if m["isMaster"]}
    if me["isMaster"]:
        claimants.add(me["id"])
    return NodeView(
        id=me["id"],
        is_master=bool(me["isMaster"]),
        members=frozenset(m["id"] for m in members),
        claimants=frozenset(claimants),
        master=status["master"],
        sent=sent,
        received=received,
        sources={m["id"]: m["source"] for m in members},
        uptime=float(status["now"]) - float(me["startedAt"]),
    )


def agreed_master_of(views: Iterable[NodeView]) -> str | None:
    """The id every view takes as the only master, or None.

    Agreement: every node sees exactly the same single claimant, exactly one node
    says it is master itself and it is that claimant, and every node that names a
    master names it.
    """
    views = list(views)
    if not views:
        return None
    claimants = {v.claimants for v in views}
    if len(claimants) != 1:
        return None
    (only,) = claimants
    if len(only) != 1:
        return None
    (master,) = only
    self_claims = [v.id for v in views if v.is_master]
    if self_claims != [master]:
        return None
    if any(v.master is not None and v.master != master for v in views):
        return None
    return master


def all_see_all(views: Iterable[NodeView], ids: Iterable[str]) -> bool:
    """Whether every view sees every id of C{ids} but its own."""
    wanted = set(ids)
    return all(wanted - {v.id} <= v.members for v in views)


class ClusterNodeProcess(ManagedProcess):
    """C{twistd -n --pidfile= clusternode ...} on 127.0.0.1 (or C{host}).

    @param etcd: the registry URL(s); None runs with C{--no-etcd} (needs C{peers}).
    @param peers: C{HOST:PORT} static peers (C{--peer}, repeatable).
    @param udp_port: the UDP port, 0 (the default) for any free one.
    @param timers: the discovery intervals; None leaves the node's defaults.
    @param extra_args: more C{clusternode} options, e.g. C{["--client"]}.
    @param host: the address its UDP socket and status API bind to (and the test
        reaches it at): another than 127.0.0.1 in a network namespace.
    @param prefix: an argv prefix to run it with, e.g. C{ip netns exec NAME}.
    @param reach: where the test reaches its status API, if not at C{host} (a node
        behind NAT, through a forwarded port).
    """

    label = "clusternode"

    def __init__(
        self,
        *,
        etcd: str | Sequence[str] | None = None,
        peers: Sequence[str] = (),
        cluster: str | None = None,
        udp_port: int = 0,
        http_port: int | None = None,
        node_id: str | None = None,
        weight: float | None = None,
        legacy_key: str | None = None,
        timers: Timers | None = None,
        ttl: int | None = None,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
        reach: str | None = None,
    ) -> None:
        super().__init__()
        if etcd is None and not peers:
            raise ValueError("a node without etcd needs static peers")
        self.etcd = [etcd] if isinstance(etcd, str) else list(etcd or ())
        self.peers = list(peers)
        self.cluster = cluster
        self.requested_udp_port = udp_port
        self.http_port = http_port if http_port is not None else free_port()
        self.node_id = node_id if node_id is not None else str(uuid.uuid4())
        self.weight = weight
        self.legacy_key = legacy_key
        self.timers = timers
        self.ttl = ttl
        self.extra_args = list(extra_args)
        self.host = host
        self.prefix = list(prefix)
        self.reach = reach or host
        self._client = _StatusClient(self.http_port, self.reach)
        self._udp_port: int | None = udp_port or None
        self._last_output = ""
        self.launched_at: float | None = None
        self.ready_at: float | None = None

    def _argv(self) -> list[str]:
        argv = [
            *self.prefix,
            twistd_path(),
            "-n",
            "--pidfile=",
            "clusternode",
            "--node-id",
            self.node_id,
            "--udp-port",
            str(self.requested_udp_port),
            "--udp-interface",
            self.host,
            "--http",
            f"tcp:{self.http_port}:interface={self.host}",
        ]
        if self.etcd:
            argv += ["--etcd", ",".join(self.etcd)]
        else:
            argv.append("--no-etcd")
        for peer in self.peers:
            argv += ["--peer", peer]
        if self.cluster is not None:
            argv += ["--cluster", self.cluster]
        if self.weight is not None:
            argv += ["--weight", repr(float(self.weight))]
        if self.legacy_key is not None:
            argv += ["--legacy-key", self.legacy_key]
        if self.timers is not None:
            argv += self.timers.args()
        if self.ttl is not None:
            argv += ["--ttl", str(self.ttl)]
        return argv + self.extra_args

    def _ready_url(self) -> str:
        return f"http://{self.reach}:{self.http_port}/status"

    # -- lifecycle -----------------------------------------------------------------

    def launch(self) -> None:
        """Start the process without waiting for it to answer."""
        self.launched_at = time.monotonic()
        super().launch()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until C{/status} answers; learn the bound UDP port."""
        super().wait_ready(timeout)
        self.ready_at = time.monotonic()
        port = self.status()["self"]["port"]
        if not isinstance(port, int):
            raise ServerStartError(f"node {self.node_id} reports UDP port {port!r}")
        self._udp_port = port

    def stop(self) -> None:
        """SIGTERM (a clean stop: leave hellos, goodbye, record deleted), wait.

        SIGKILL after a grace period; the scratch dir goes, the output is kept.
        """
        self._client.close()
        self.terminate()
        self._last_output = self.output()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the node (a crash: no goodbye, its record expires by TTL)."""
        self._client.close()
        super().kill()

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send C{sig} without waiting (measure what the others do meanwhile)."""
        pid = self.pid
        if pid is None or not self.running:
            raise RuntimeError(f"node {self.node_id} is not running")
        os.kill(pid, sig)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Wait for the process to exit (after L{signal}); return its exit code."""
        process = self._process
        if process is None:
            return None
        code = process.wait(timeout)
        self.terminate()  # unregister from the backstop (it has exited)
        return code

    def output(self) -> str:
        """Everything the node wrote so far (kept after L{stop})."""
        return super().output() or self._last_output

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    # -- what it says ----------------------------------------------------------------

    @property
    def id(self) -> str:
        """The node id (given with C{--node-id})."""
        return self.node_id

    @property
    def udp_port(self) -> int:
        """The bound UDP port (known once the node answered)."""
        if self._udp_port is None:
            raise RuntimeError(f"node {self.node_id} has not reported its UDP port")
        return self._udp_port

    @property
    def endpoint(self) -> str:
        """C{127.0.0.1:<udp port>}, as a static peer or unicast entry."""
        return f"127.0.0.1:{self.udp_port}"

    def status(self, timeout: float = REQUEST_TIMEOUT) -> Status:
        """C{GET /status} as JSON; raises OSError if it does not answer with 200."""
        code, body = self._client.get("/status", timeout)
        if code != 200:
            raise OSError(f"node {self.node_id}: /status answered {code}: {body!r}")
        document: Status = json.loads(body)
        return document

    def view(self) -> NodeView:
        """One L{NodeView} from C{/status}, with the request's timing."""
        sent = time.monotonic()
        status = self.status()
        return view_of_status(status, sent, time.monotonic())

    def describe(self, lines: int = 30) -> str:
        """The state and the last lines of output, for assertion messages."""
        tail = self.output().splitlines()[-lines:]
        state = "running" if self.running else "not running"
        return "\n".join(
            [f"clusternode {self.node_id} ({state}, pid {self.pid}):"]
            + ["  " + line[:300] for line in tail]
        )


def start_nodes(
    count: int, timeout: float = 30.0, **options: Any
) -> list[ClusterNodeProcess]:
    """Launch C{count} nodes with the same options at once; wait until all answer.

    If any fails to start, every one is stopped and the error is raised.
    """
    nodes = [ClusterNodeProcess(**options) for _ in range(count)]
    try:
        for node in nodes:
            node.launch()
        for node in nodes:
            node.wait_ready(timeout)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def stop_nodes(nodes: Iterable[ClusterNodeProcess]) -> None:
    """Stop every node that is still running (for addCleanup)."""
    for node in nodes:
        node.stop()


# -- observing a cluster ------------------------------------------------------------


@define
class MasterTimeline:
    """Every mastership sample taken during a test, and the overlaps they prove.

    A node is I{known master} from the answer of a sample claiming it to the request
    of its next sample, if that one claims it too: between two consecutive claiming
    samples we assume it did not flap. Other sources (node-discover events) add
    intervals directly with L{add_interval}. Two masters at once are proven when two
    known-master intervals of different nodes intersect, or when a sample of one node
    claiming mastership was taken entirely inside a known-master interval of
    another. Samples far apart prove nothing, so no overlap is flagged by accident.
    """

    _samples: dict[str, list[tuple[float, float, bool]]] = field(factory=dict)
    _intervals: list[tuple[str, float, float]] = field(factory=list)

    def add(self, view: NodeView) -> None:
        """Record one node's answer."""
        self._samples.setdefault(view.id, []).append(
            (view.sent, view.received, view.is_master)
        )

    def add_interval(self, node_id: str, start: float, end: float) -> None:
        """Record that C{node_id} was certainly master from C{start} to C{end}."""
        if start < end:
            self._intervals.append((node_id, start, end))

    def known_intervals(self) -> list[tuple[str, float, float]]:
        """Every interval in which a node was certainly master."""
        found = list(self._intervals)
        for node_id, samples in self._samples.items():
            previous: tuple[float, float, bool] | None = None
            for sample in samples:
                if previous is not None and previous[2] and sample[2]:
                    if previous[1] < sample[0]:
                        found.append((node_id, previous[1], sample[0]))
                previous = sample
        return found

    def overlaps(self) -> list[str]:
        """Descriptions of every proven moment with two masters (empty if none)."""
        intervals = self.known_intervals()
        problems: list[str] = []
        for i, (a, a_start, a_end) in enumerate(intervals):
            for b, b_start, b_end in intervals[i + 1 :]:
                if a != b and max(a_start, b_start) < min(a_end, b_end):
                    problems.append(
                        f"{a} master [{a_start:.3f}, {a_end:.3f}] and {b} master "
                        f"[{b_start:.3f}, {b_end:.3f}]"
                    )
            for b, samples in self._samples.items():
                if b == a:
                    continue
                for sent, received, claims in samples:
                    if claims and a_start <= sent and received <= a_end:
                        problems.append(
                            f"{a} master [{a_start:.3f}, {a_end:.3f}] while {b} "
                            f"claimed it in [{sent:.3f}, {received:.3f}]"
                        )
        return problems

    @property
    def sample_count(self) -> int:
        """How many answers were recorded."""
        return sum(len(s) for s in self._samples.values())


ViewSource = Callable[[], NodeView]


@define
class ClusterWait:
    """The result of L{wait_for_cluster}: the last views and when they held."""

    views: list[NodeView]
    #: C{time.monotonic()} when the last answer of the satisfying round came.
    at: float
    rounds: int


def sample_views(
    sources: Sequence[ViewSource], timeline: MasterTimeline | None = None
) -> tuple[list[NodeView], list[str]]:
    """Ask every source once; return the views and the errors of those that failed."""
    views: list[NodeView] = []
    errors: list[str] = []
    for source in sources:
        try:
            view = source()
        except (OSError, ValueError, KeyError, AssertionError) as e:
            errors.append(str(e))
            continue
        views.append(view)
        if timeline is not None:
            timeline.add(view)
    return views, errors


def wait_for_cluster(
    nodes: Sequence[ClusterNodeProcess | ViewSource],
    predicate: Callable[[list[NodeView]], bool],
    timeout: float,
    description: str = "the cluster",
    *,
    timeline: MasterTimeline | None = None,
    interval: float = POLL_INTERVAL,
) -> ClusterWait:
    """Poll every node until C{predicate(views)} holds in a round where all answer.

    C{nodes} are clusternode processes or any callables returning a L{NodeView}.
    Raises AssertionError after C{timeout} seconds with the last views and errors.
    """
    sources: list[ViewSource] = [
        n.view if isinstance(n, ClusterNodeProcess) else n for n in nodes
    ]
    deadline = time.monotonic() + timeout
    rounds = 0
    while True:
        views, errors = sample_views(sources, timeline)
        rounds += 1
        if not errors and predicate(views):
            return ClusterWait(views, time.monotonic(), rounds)
        if time.monotonic() > deadline:
            shown = "\n".join(f"  {v}" for v in views)
            failed = "\n".join(f"  {e}" for e in errors)
            logs = "\n".join(
                n.describe(15) for n in nodes if isinstance(n, ClusterNodeProcess)
            )
            raise AssertionError(
                f"timed out after {timeout:.1f} s waiting for {description}\n"
                f"last views:\n{shown}\nerrors:\n{failed}\n{logs}"
            )
        time.sleep(interval)


def wait_for_agreed_master(
    nodes: Sequence[ClusterNodeProcess],
    timeout: float,
    description: str = "nodes that see each other and agree on a master",
) -> str:
    """Wait until every node sees all the others and all name one master; its id."""
    ids = {n.id for n in nodes}
    wait = wait_for_cluster(
        nodes,
        lambda views: all_see_all(views, ids) and agreed_master_of(views) is not None,
        timeout,
        description,
    )
    master = agreed_master_of(wait.views)
    assert master is not None
    return master


def agreed_master(
    nodes: Sequence[ClusterNodeProcess], timeline: MasterTimeline | None = None
) -> str | None:
    """The master all running nodes agree on (one of them says so itself), or None."""
    running = [n for n in nodes if n.running]
    views, errors = sample_views([n.view for n in running], timeline)
    if errors:
        return None
    return agreed_master_of(views)
