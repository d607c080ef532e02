"""Cluster nodes as real processes on 127.0.0.1, against minietcd and real etcd 3.4.

Each test starts C{twistd -n clusternode} processes (tests/harness/clusternodes.py)
that find
each other through the registry, and watches them from outside through C{/status}:
convergence, one master agreed by all, a record deleted by hand, a late joiner,
fail-over after a clean stop and after a crash, a registry restart. Every status
sample goes to a L{MasterTimeline}, and every test ends by checking that no two nodes
were ever provably master at the same moment.

The same scenarios run against minietcd (v2), real etcd through the v3 API (what
C{--etcd-api auto} picks there) and real etcd through its v2 API; the registry
restart runs against minietcd (which comes back empty) and real etcd v3 (which comes
back with its data, leases possibly expired). Scenarios that share a cluster are
chained in one test, because starting the processes costs more than the checks.

The nodes run node-discover's default intervals (hello 1 s, check 2 s, timeouts 2 s):
the fail-over bounds below are stated in terms of them. Measured times are printed.
"""

from __future__ import annotations

import base64
import json
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.trial.unittest import SynchronousTestCase

from tests.harness.clusternodes import (
    DEFAULT_TIMERS,
    ClusterNodeProcess,
    ClusterWait,
    MasterTimeline,
    NodeView,
    agreed_master_of,
    all_see_all,
    start_nodes,
    stop_nodes,
    wait_for_cluster,
)
from tests.harness.servers import (
    MiniEtcdProcess,
    RealEtcd,
    ServerStartError,
    shared_minietcd,
    shared_real_etcd,
)

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object

TIMERS = DEFAULT_TIMERS
#: Bound for things that take a few hundred milliseconds on an idle machine.
SETTLE = 15.0
#: Head-room on top of the designed fail-over bounds, for a loaded CI machine.
HEADROOM = 1.0
#: The master key's TTL the nodes run with (the default --master-ttl).
MASTER_TTL = 2.0


def report(what: str, seconds: float) -> None:
    """Print one measured time (the report collects these lines)."""
    print(f"\n    [timing] {what}: {seconds * 1000:.0f} ms", flush=True)


def heaviest(views: list[NodeView], weights: dict[str, float]) -> str:
    """The id our election rules make master: highest weight, then smallest id."""
    return min((v.id for v in views), key=lambda i: (-weights[i], i))


def registered(views: list[NodeView], ids: set[str]) -> bool:
    """Every view sees every other id, learned from the registry."""
    return all_see_all(views, ids) and all(
        v.sources.get(other) == "registry" for v in views for other in ids - {v.id}
    )


def v3_call(url: str, path: str, key: str) -> Any:
    """POST C{{"key": key}} to etcd's v3 JSON gateway; return the decoded answer."""
    data = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    request = urllib.request.Request(
        url + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=2) as r:
        return json.load(r)


def all_registered(ids: set[str]) -> Callable[[list[NodeView]], bool]:
    """The predicate L{registered} for C{ids}."""
    return lambda views: registered(views, ids)


class _Scenarios(_Base):
    """The scenarios, run against the registry the concrete class provides."""

    url: str
    #: The C{--etcd-api} option the nodes get (None: the default, "auto").
    etcd_api: str | None = None
    #: The API the nodes must report using in C{/status}.
    expected_api = "v2"

    def registry_url(self) -> str:
        """Start (or share) the registry for one test; return its URL."""
        raise NotImplementedError

    def setUp(self) -> None:
        self.url = self.registry_url()
        self.cluster = f"it-{uuid.uuid4().hex[:12]}"
        self.timeline = MasterTimeline()
        self.addCleanup(self.assert_never_two_masters)

    def assert_never_two_masters(self) -> None:
        """No sample proves two masters at one moment (checked after every test)."""
        overlaps = self.timeline.overlaps()
        self.assertEqual(
            overlaps,
            [],
            f"{len(overlaps)} proven overlaps in a timeline of "
            f"{self.timeline.sample_count} samples",
        )

    # -- helpers ----------------------------------------------------------------------

    def node_options(self) -> dict[str, Any]:
        extra = [] if self.etcd_api is None else ["--etcd-api", self.etcd_api]
        return {
            "etcd": self.url,
            "cluster": self.cluster,
            "timers": TIMERS,
            "extra_args": extra,
        }

    def start(self, count: int) -> list[ClusterNodeProcess]:
        nodes = start_nodes(count, **self.node_options())
        self.addCleanup(stop_nodes, nodes)
        return nodes

    def weights(self, nodes: list[ClusterNodeProcess]) -> dict[str, float]:
        return {n.id: float(n.status()["self"]["weight"]) for n in nodes}

    def converged(self, nodes: list[ClusterNodeProcess]) -> ClusterWait:
        """Wait until all see all through the registry and agree on one master."""
        ids = {n.id for n in nodes}
        return wait_for_cluster(
            nodes,
            lambda vs: registered(vs, ids) and agreed_master_of(vs) is not None,
            SETTLE,
            "a converged cluster with one agreed master",
            timeline=self.timeline,
        )

    def key(self, node_id: str) -> str:
        return f"/twistednode/{self.cluster}/members/{node_id}"

    def created_index(self, node_id: str) -> int | None:
        """The createdIndex (v3: create_revision) of a node's record, or None."""
        if self.expected_api == "v3":
            body = v3_call(self.url, "/v3/kv/range", self.key(node_id))
            kvs = body.get("kvs", [])
            return int(kvs[0]["create_revision"]) if kvs else None
        try:
            with urllib.request.urlopen(
                f"{self.url}/v2/keys{self.key(node_id)}", timeout=2
            ) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 404:
                return None
            raise
        index = body["node"]["createdIndex"]
        assert isinstance(index, int)
        return index

    def delete_record(self, node_id: str) -> None:
        """Delete a node's record by hand, as an operator would."""
        if self.expected_api == "v3":
            body = v3_call(self.url, "/v3/kv/deleterange", self.key(node_id))
            self.assertEqual(body.get("deleted"), "1", body)
            return
        request = urllib.request.Request(
            f"{self.url}/v2/keys{self.key(node_id)}", method="DELETE"
        )
        with urllib.request.urlopen(request, timeout=2) as r:
            r.read()

    # -- the scenarios ----------------------------------------------------------------

    def rewrite_deleted_record(
        self, nodes: list[ClusterNodeProcess], master: str
    ) -> None:
        """Delete the master's record by hand: its node writes it again, nothing moves.

        The others see the deletion of a live, eligible member, which must not
        remove it (it may be a lease expiry); the master stays master.
        """
        ids = {n.id for n in nodes}
        old_index = self.created_index(master)
        assert old_index is not None
        started = time.monotonic()
        self.delete_record(master)
        wait_for_cluster(
            nodes,
            lambda vs: (
                (self.created_index(master) or 0) > old_index
                and agreed_master_of(vs) == master
                and all_see_all(vs, ids)
            ),
            SETTLE,
            "the record created again, the same master meanwhile",
            timeline=self.timeline,
        )
        report("record deleted -> created again", time.monotonic() - started)
        done = self.converged(nodes)
        self.assertEqual(agreed_master_of(done.views), master)
        (deleted,) = [n for n in nodes if n.id == master]
        counters = deleted.status()["registry"]["counters"]
        self.assertGreaterEqual(counters["recreations"], 1)

    def test_nodes_converge_elect_and_rewrite_a_deleted_record(self) -> None:
        """Three nodes find each other, elect the heaviest early, survive a deletion."""
        # The early election (membership.py) needs a second node registered inside
        # the master's early window (before a check_interval after its bind). On a
        # machine so loaded that the nodes start further apart than that, the
        # scenario is set up again, a few times at most.
        for _attempt in range(3):
            self.cluster = f"it-{uuid.uuid4().hex[:12]}"
            nodes = self.start(3)
            ids = {n.id for n in nodes}
            first_launch = min(n.launched_at or 0.0 for n in nodes)
            mesh = wait_for_cluster(
                nodes,
                all_registered(ids),
                SETTLE,
                "every node seeing the other two",
                timeline=self.timeline,
            )
            done = self.converged(nodes)
            master = agreed_master_of(done.views)
            assert master is not None
            (view,) = [v for v in done.views if v.id == master]
            assert view.uptime is not None
            master_started = view.sent - view.uptime  # at or before its startedAt
            second_ready = sorted(n.ready_at or 0.0 for n in nodes)[1]
            if second_ready < master_started + TIMERS.check_interval - 0.7:
                break
            stop_nodes(nodes)
        else:
            self.fail("the nodes never started within 1.3 s of each other")
        slowest = max((n.ready_at or 0.0) for n in nodes)
        report("spawn -> every node answers /status", slowest - first_launch)
        report("spawn -> full mesh", mesh.at - first_launch)
        report("spawn -> one agreed master", done.at - first_launch)
        # The lease goes to the first candidate that sees the vacancy (weights
        # only order candidates racing for it), so any node may lead at cold start.
        self.assertIn(master, {n.id for n in nodes})
        # Early: promoted before node-discover's first check, a check_interval
        # after the bind (which comes after startedAt).
        report("master's uptime when first seen agreed", view.uptime)
        self.assertLess(view.uptime, TIMERS.check_interval)
        for node in nodes:
            self.assertEqual(node.status()["registry"]["api"], self.expected_api)
        self.rewrite_deleted_record(nodes, master)

    def join(self, nodes: list[ClusterNodeProcess]) -> list[ClusterNodeProcess]:
        """Start one more node; check every node sees it soon after it registered."""
        master = agreed_master_of(self.converged(nodes).views)
        late = ClusterNodeProcess(**self.node_options())
        self.addCleanup(late.stop)
        late.launch()
        everyone = [*nodes, late]
        ids = {n.id for n in everyone}
        deadline = time.monotonic() + SETTLE
        while self.created_index(late.id) is None:
            self.assertTrue(late.running, late.describe())
            self.assertLess(time.monotonic(), deadline, late.describe())
            time.sleep(0.002)
        registered_at = time.monotonic()
        done = wait_for_cluster(
            everyone,
            lambda vs: registered(vs, ids),
            SETTLE,
            "all four seeing each other",
            timeline=self.timeline,
        )
        report("new node registered -> seen by all", done.at - registered_at)
        report("new node spawned -> seen by all", done.at - (late.launched_at or 0))
        # At once: the registry makes every node greet it, not at the next hello.
        self.assertLess(done.at - registered_at, TIMERS.hello_interval)
        # No preemption: the master stays (the newcomer is the youngest anyway).
        self.assertEqual(agreed_master_of(self.converged(everyone).views), master)
        return everyone

    def replace_master(
        self,
        nodes: list[ClusterNodeProcess],
        end: Callable[[ClusterNodeProcess], None],
        how: str,
        label: str,
    ) -> tuple[ClusterNodeProcess, list[ClusterNodeProcess], float]:
        """End the agreed master with C{end}; wait until the survivors agree on the
        heaviest of them; report the time as C{label}. The ended node, the
        survivors, and how long it took."""
        old = agreed_master_of(self.converged(nodes).views)
        (ended,) = [n for n in nodes if n.id == old]
        survivors = [n for n in nodes if n is not ended]
        weights = self.weights(survivors)
        started = time.monotonic()
        end(ended)
        after = wait_for_cluster(
            survivors,
            lambda vs: agreed_master_of(vs) not in (None, old),
            SETTLE,
            f"a new agreed master after a {how}",
            timeline=self.timeline,
        )
        elapsed = after.at - started
        report(label, elapsed)
        self.assertEqual(agreed_master_of(after.views), heaviest(after.views, weights))
        return ended, survivors, elapsed

    def clean_stop(self, nodes: list[ClusterNodeProcess]) -> list[ClusterNodeProcess]:
        """SIGTERM the master; the survivors must agree on the next within 1 s."""
        stopping, survivors, elapsed = self.replace_master(
            nodes,
            lambda node: node.signal(signal.SIGTERM),
            "clean stop",
            "SIGTERM of master -> new master agreed",
        )
        old = stopping.id
        self.assertLess(elapsed, 1.0)
        # twistd re-raises the signal that stopped it, after a clean shutdown.
        self.assertIn(stopping.wait_exit(), (0, -signal.SIGTERM))
        self.assertIn("Server Shut Down", stopping.output())
        wait_for_cluster(
            survivors,
            lambda vs: all(old not in v.members for v in vs),
            SETTLE,
            "the stopped master gone from every survivor",
            timeline=self.timeline,
        )
        self.assertIsNone(self.created_index(stopping.id))
        return survivors

    def crash(self, nodes: list[ClusterNodeProcess]) -> list[ClusterNodeProcess]:
        """SIGKILL the master; a new one must be agreed within the master timeout."""
        crashing, survivors, elapsed = self.replace_master(
            nodes,
            lambda node: node.kill(),
            "crash",
            "SIGKILL of master -> new master agreed",
        )
        self.assertLessEqual(elapsed, TIMERS.master_timeout + HEADROOM)
        # Its record stays until the TTL: a crash says no goodbye.
        self.assertIsNotNone(self.created_index(crashing.id))
        return survivors

    def test_paused_master_never_overlaps_its_successor(self) -> None:
        """SIGSTOP the master for 1.5 x its lease: another node takes over only
        after the term is over, and the resumed node never claims mastership
        beside it (the timeline, sampled every round, proves no overlap)."""
        nodes = self.start(3)
        old = agreed_master_of(self.converged(nodes).views)
        (paused,) = [n for n in nodes if n.id == old]
        others = [n for n in nodes if n is not paused]
        paused.signal(signal.SIGSTOP)
        try:
            stopped = time.monotonic()
            wait_for_cluster(
                others,
                lambda vs: any(v.is_master for v in vs),
                SETTLE,
                "a new master while the old one is paused",
                timeline=self.timeline,
            )
            report("SIGSTOP of master -> new master", time.monotonic() - stopped)
            while time.monotonic() < stopped + 1.5 * MASTER_TTL:
                wait_for_cluster(
                    others, lambda vs: True, SETTLE, timeline=self.timeline
                )
        finally:
            paused.signal(signal.SIGCONT)
        after = wait_for_cluster(
            nodes,
            lambda vs: agreed_master_of(vs) not in (None, old),
            SETTLE,
            "one master agreed after the pause",
            timeline=self.timeline,
        )
        self.assertEqual(len(after.views), 3)

    def test_join_then_clean_stop_then_crash_of_master(self) -> None:
        """A joiner is seen at once; then a stopped and a crashed master fail over."""
        nodes = self.start(3)
        nodes = self.join(nodes)
        nodes = self.clean_stop(nodes)
        self.assertEqual(len(self.crash(nodes)), 2)


class _RestartScenario(_Scenarios):
    """The registry stopped and started again under a running cluster."""

    def test_registry_restart_keeps_cluster_and_nodes_register_again(self) -> None:
        """Registry down: the members stay, and the master steps down within its
        lease (nobody may lead unseen by the registry); back: all nodes register
        again and one master is agreed."""
        nodes = self.start(3)
        ids = {n.id for n in nodes}
        self.converged(nodes)

        def members_stay(views: list[NodeView]) -> bool:
            self.assertTrue(all_see_all(views, ids), views)
            return True

        def unreachable(views: list[NodeView]) -> bool:
            members_stay(views)
            return all(n.status()["registry"]["state"] == "unreachable" for n in nodes)

        def leaderless(views: list[NodeView]) -> bool:
            members_stay(views)
            return not any(v.is_master for v in views)

        self.stop_registry()
        stopped = time.monotonic()
        wait_for_cluster(
            nodes, unreachable, SETTLE, "every node noticing", timeline=self.timeline
        )
        wait_for_cluster(
            nodes,
            leaderless,
            MASTER_TTL + HEADROOM,
            "no master",
            timeline=self.timeline,
        )
        self.assertLessEqual(time.monotonic() - stopped, MASTER_TTL + HEADROOM)
        # Keep watching for longer than a master timeout without the registry.
        until = time.monotonic() + TIMERS.master_timeout + 0.5
        while time.monotonic() < until:
            wait_for_cluster(nodes, leaderless, SETTLE, timeline=self.timeline)
        started = time.monotonic()
        self.start_registry()

        def back(views: list[NodeView]) -> bool:
            members_stay(views)
            return (
                registered(views, ids)
                and all(self.created_index(i) is not None for i in ids)
                and agreed_master_of(views) is not None
            )

        wait_for_cluster(
            nodes,
            back,
            30.0,
            "every node registered again, one master",
            timeline=self.timeline,
        )
        report(
            "registry back -> every node registered again, one master",
            time.monotonic() - started,
        )

    def stop_registry(self) -> None:
        """Stop the registry of this test (keeping its port)."""
        raise NotImplementedError

    def start_registry(self) -> None:
        """Start the registry again on the same port."""
        raise NotImplementedError


class MiniEtcdClusterTests(_RestartScenario, SynchronousTestCase):
    """The scenarios against minietcd (v2, a twistd process of our own)."""

    def registry_url(self) -> str:
        if self._testMethodName.startswith("test_registry_restart"):
            self.etcd = MiniEtcdProcess().start()
            self.addCleanup(self.etcd.stop)
            return self.etcd.url
        return shared_minietcd().url

    def stop_registry(self) -> None:
        self.etcd.terminate()

    def start_registry(self) -> None:
        """A new minietcd on the same port: empty, so every record must come back."""
        self.etcd = MiniEtcdProcess(port=self.etcd.port).start()
        self.addCleanup(self.etcd.stop)


class RealEtcdV3ClusterTests(_RestartScenario, SynchronousTestCase):
    """The scenarios against real etcd 3.4, which the nodes use through v3 (auto)."""

    expected_api = "v3"

    def registry_url(self) -> str:
        if self._testMethodName.startswith("test_registry_restart"):
            self.etcd = RealEtcd().start()
            self.addCleanup(self.etcd.stop)
            return self.etcd.url
        return shared_real_etcd().url

    def stop_registry(self) -> None:
        self.etcd.terminate()

    def start_registry(self) -> None:
        """The same member again, with its data dir: leases may have expired."""
        self.etcd.start()


class RealEtcdV2ClusterTests(_Scenarios, SynchronousTestCase):
    """The scenarios against real etcd 3.4 through its v2 API (C{--etcd-api v2})."""

    etcd_api = "v2"

    def registry_url(self) -> str:
        return shared_real_etcd().url


def _view(
    node: str, sent: float, master: bool, claimants: tuple[str, ...] = ()
) -> NodeView:
    return NodeView(
        id=node,
        is_master=master,
        members=frozenset(),
        claimants=frozenset(claimants or ((node,) if master else ())),
        master=None,
        sent=sent,
        received=sent + 0.005,
    )


class MasterTimelineTests(SynchronousTestCase):
    """The fixture's overlap detection flags what samples prove, and only that."""

    def test_interleaved_claims_are_an_overlap(self) -> None:
        """B claiming mastership between two claims of A proves two masters."""
        timeline = MasterTimeline()
        for view in (_view("a", 0.0, True), _view("b", 0.01, True)):
            timeline.add(view)
        timeline.add(_view("a", 0.02, True))
        self.assertEqual(len(timeline.overlaps()), 1)
        self.assertIn("b claimed it", timeline.overlaps()[0])

    def test_handover_is_not_an_overlap(self) -> None:
        """A's last claim before B's first claim proves nothing wrong."""
        timeline = MasterTimeline()
        for view in (
            _view("a", 0.0, True),
            _view("a", 0.01, True),
            _view("b", 0.02, False),
            _view("a", 0.03, False),
            _view("b", 0.04, True),
            _view("b", 0.05, True),
        ):
            timeline.add(view)
        self.assertEqual(timeline.overlaps(), [])

    def test_lone_claims_prove_nothing(self) -> None:
        """Single claims of two nodes, with no claim around them, are not flagged."""
        timeline = MasterTimeline()
        timeline.add(_view("a", 0.0, True))
        timeline.add(_view("b", 0.01, True))
        timeline.add(_view("a", 0.02, False))
        self.assertEqual(timeline.overlaps(), [])

    def test_external_intervals_overlap(self) -> None:
        """Intervals from events overlap each other or a claiming sample."""
        timeline = MasterTimeline()
        timeline.add_interval("x", 1.0, 2.0)
        timeline.add_interval("y", 1.5, 3.0)
        timeline.add(_view("a", 2.5, True))
        self.assertEqual(len(timeline.overlaps()), 2)

    def test_agreed_master_needs_one_claimant_everywhere(self) -> None:
        """Agreement: one claimant in every view, and it alone says it is master."""
        a = _view("a", 0.0, True)
        b = _view("b", 0.0, False, ("a",))
        self.assertEqual(agreed_master_of([a, b]), "a")
        self.assertIsNone(agreed_master_of([a, _view("b", 0.0, False)]))
        self.assertIsNone(agreed_master_of([a, _view("b", 0.0, True, ("a", "b"))]))
        self.assertIsNone(agreed_master_of([_view("b", 0.0, False, ("a",))]))
        self.assertIsNone(agreed_master_of([]))


class ClusterNodeProcessTests(SynchronousTestCase):
    """The process fixture itself."""

    def test_bad_option_fails_start_with_output(self) -> None:
        """A node that refuses its options fails the start and shows why."""
        node = ClusterNodeProcess(etcd="http://127.0.0.1:1", extra_args=["--ttl=1"])
        self.addCleanup(node.stop)
        with self.assertRaises(ServerStartError) as caught:
            node.start()
        self.assertIn("--ttl must be at least 2 seconds", str(caught.exception))
        self.assertFalse(node.running)
