"""Election properties over arbitrary interleavings (hypothesis +
tests/harness/simulation.py).

Each example simulates 2-5 nodes with a registry (or static peers, i.e. plain
node-discover rules), a network that delays, duplicates (hence reorders) and, where
stated, loses datagrams, watch events delivered late but in order, ticks at arbitrary
times, crashes, clean leaves and lease expiries. "Master" means a live node's own
C{is_master}.
"""

from __future__ import annotations

import random

from attrs import evolve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.harness.simulation import Network, NodeSpec, SimNode, Simulation
from twistednode.discovery.settings import Settings, make_settings

SETTINGS = make_settings(epoch_ms=1732629600000)
EXAMPLES = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
CHAOS_UNTIL = 8.0
END = 13.0

# Equal weights are common on purpose: the tie-break must pick exactly one.
weights = st.sampled_from([-0.1, -0.2, -0.2, -0.3, -0.4])
small = st.floats(0.0, 0.05)
bounded = st.floats(0.0, 0.3)


@st.composite
def node_spec(
    draw: st.DrawFn,
    *,
    late: bool = True,
    faults: bool = True,
    clients: bool = True,
) -> NodeSpec:
    """A node that starts together with others or later, and may fail or leave."""
    start = draw(st.sampled_from([0.0, 0.0, 0.01, 0.04]))
    if late and draw(st.booleans()):
        start = draw(st.floats(0.0, 6.0))
    spec = NodeSpec(
        start=start,
        weight=draw(weights),
        client=clients and draw(st.integers(0, 9)) == 0,
        register_delay=draw(st.floats(0.0, 0.2)),
        list_delay=draw(st.floats(0.0, 0.2)),
        record_ttl=draw(st.floats(0.05, 6.0)),
    )
    if faults:
        fault = draw(st.sampled_from(["none", "none", "kill", "leave"]))
        when = draw(st.floats(start, CHAOS_UNTIL))
        if fault == "kill":
            spec.kill_at = when
        elif fault == "leave":
            spec.leave_at = when
    return spec


def masters(sim: Simulation) -> list[SimNode]:
    return [n for n in sim.alive() if n.membership.is_master]


def rank(node: SimNode) -> tuple[float, str]:
    """Higher is heavier: weight, then the smaller iid (the tie-break)."""
    iid = node.membership.iid
    return (node.spec.weight, "".join(chr(0x10FFFF - ord(c)) for c in iid))


class SettledMixin(SynchronousTestCase):
    """Assertions on a finished simulation."""

    def assertSettled(self, sim: Simulation) -> None:
        """Exactly one master among live nodes (if any is eligible), agreed by all."""
        self.assertEqual(sim.violations, [])
        eligible = [n for n in sim.alive() if not n.spec.client]
        found = masters(sim)
        self.assertEqual(len(found), 1 if eligible else 0, sim.nodes)
        if found:
            leader = found[0].membership.iid
            for node in sim.alive():
                self.assertEqual(node.membership.master, leader, node.name)


class ElectionPropertyTests(SettledMixin):
    """Never two masters; eventually exactly one; early when it can be."""

    @given(
        specs=st.lists(node_spec(), min_size=2, max_size=5),
        hello_delay=bounded,
        watch_delay=bounded,
        duplicate=st.floats(0.0, 0.3),
        seed=st.integers(0, 2**32),
    )
    @EXAMPLES
    def test_registry_cluster(
        self,
        specs: list[NodeSpec],
        hello_delay: float,
        watch_delay: float,
        duplicate: float,
        seed: int,
    ) -> None:
        """Chaotic registry cluster: never two masters, one agreed once all hear."""
        # Delays <= 0.3 s, duplicates, crashes, leaves: never two masters at once.
        network = Network((0.0, hello_delay), (0.0, watch_delay), duplicate=duplicate)
        sim = Simulation(SETTINGS, specs, network, random.Random(seed))
        sim.run(CHAOS_UNTIL)
        sim.stabilize(CHAOS_UNTIL)
        sim.run(END)
        self.assertSettled(sim)

    @given(
        survivors=st.lists(node_spec(late=False, faults=False), min_size=1, max_size=3),
        joiner=node_spec(late=False, faults=False, clients=False),
        killed_at=st.floats(1.0, 4.0),
        ttl=st.floats(0.05, 1.0),
        join_after=st.floats(1.0, 2.6),
        seed=st.integers(0, 2**32),
    )
    @EXAMPLES
    def test_failover_while_joining(
        self,
        survivors: list[NodeSpec],
        joiner: NodeSpec,
        killed_at: float,
        ttl: float,
        join_after: float,
        seed: int,
    ) -> None:
        """A node joining during a failover never makes a second master."""
        # The race that a view-based acknowledgement gets wrong.
        first = NodeSpec(start=0.0, weight=0.0, kill_at=killed_at, record_ttl=ttl)
        joiner.start = killed_at + join_after
        network = Network((0.0, 0.5), (0.0, 0.5), duplicate=0.2)
        sim = Simulation(
            SETTINGS, [first, *survivors, joiner], network, random.Random(seed)
        )
        sim.run(killed_at + 6.0)
        self.assertSettled(sim)

    @given(
        specs=st.lists(node_spec(), min_size=2, max_size=5),
        hello_delay=st.sampled_from([0.1, 1.0, 5.0]),
        watch_delay=st.sampled_from([0.1, 1.0, 5.0]),
        loss=st.floats(0.0, 0.5),
        duplicate=st.floats(0.0, 0.3),
        early_delay=st.floats(0.0, 1.0),
        seed=st.integers(0, 2**32),
    )
    @EXAMPLES
    def test_early_rule_alone_is_safe(
        self,
        specs: list[NodeSpec],
        hello_delay: float,
        watch_delay: float,
        loss: float,
        duplicate: float,
        early_delay: float,
        seed: int,
    ) -> None:
        """The early rule alone never makes two masters, whatever the network."""
        # node-discover timing is out of reach (huge checkInterval); any delays,
        # losses and duplicates.
        huge = Settings(
            hello_interval=1.0,
            check_interval=1000.0,
            node_timeout=1000.0,
            master_timeout=1000.0,
            masters_required=1,
            weight=0.0,
            early_delay=early_delay,
        )
        network = Network(
            (0.0, hello_delay), (0.0, watch_delay), loss=loss, duplicate=duplicate
        )
        sim = Simulation(huge, specs, network, random.Random(seed))
        sim.run(10.0)
        self.assertEqual(sim.violations, [])
        for node in sim.nodes:
            self.assertEqual(
                [r for _t, r in node.promotions], ["early"] * len(node.promotions)
            )

    @given(
        specs=st.lists(node_spec(late=False, faults=False), min_size=2, max_size=5),
        delay=small,
        seed=st.integers(0, 2**32),
    )
    @EXAMPLES
    def test_cold_start_is_early_and_heaviest(
        self, specs: list[NodeSpec], delay: float, seed: int
    ) -> None:
        """A prompt cold start: one early promotion, by the heaviest eligible."""
        # Started together with prompt delivery; well before checkInterval.
        for spec in specs:
            spec.register_delay = min(spec.register_delay, 0.05)
            spec.list_delay = min(spec.list_delay, 0.05)
        network = Network((0.0, delay), (0.0, delay))
        sim = Simulation(SETTINGS, specs, network, random.Random(seed))
        sim.run(6.0)
        self.assertSettled(sim)
        eligible = [n for n in sim.nodes if not n.spec.client]
        if not eligible:
            return
        heaviest = max(eligible, key=rank)
        self.assertEqual(masters(sim), [heaviest])
        promotions = [(n, p) for n in sim.nodes for p in n.promotions]
        self.assertEqual(len(promotions), 1)
        (when, reason) = promotions[0][1]
        self.assertEqual(reason, "early")
        start = heaviest.spec.start
        self.assertGreaterEqual(when, start + SETTINGS.early_delay)
        self.assertLess(when, start + SETTINGS.early_delay + 0.2)
        self.assertLess(when, start + SETTINGS.check_interval / 2)

    @given(
        weights=st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=5, unique=True),
        starts=st.lists(st.floats(0.0, 0.3), min_size=5, max_size=5),
        not_eligible=st.lists(st.booleans(), min_size=5, max_size=5),
        delay=st.floats(0.0, 0.5),
        duplicate=st.floats(0.0, 0.3),
        seed=st.integers(0, 2**32),
    )
    @EXAMPLES
    def test_node_discover_rules_elect_heaviest(
        self,
        weights: list[float],
        starts: list[float],
        not_eligible: list[bool],
        delay: float,
        duplicate: float,
        seed: int,
    ) -> None:
        """node-discover rules: never two masters; then one, the heaviest eligible."""
        # Static peers, distinct weights, any interleaving of hellos and ticks;
        # exactly one master once all have heard all.
        specs = [
            NodeSpec(start=start, weight=weight, client=client)
            for weight, start, client in zip(
                weights, starts, not_eligible, strict=False
            )
        ]
        network = Network((0.0, delay), duplicate=duplicate, registry=False)
        sim = Simulation(SETTINGS, specs, network, random.Random(seed))
        sim.run(8.0)
        self.assertSettled(sim)
        eligible = [n for n in sim.nodes if not n.spec.client]
        if eligible:
            self.assertEqual(masters(sim), [max(eligible, key=rank)])

    @given(
        specs=st.lists(node_spec(faults=False), min_size=2, max_size=5),
        registry=st.booleans(),
        delay=st.floats(0.0, 3.0),
        loss=st.floats(0.0, 0.6),
        seed=st.integers(0, 2**32),
    )
    @EXAMPLES
    def test_converges_after_losses(
        self,
        specs: list[NodeSpec],
        registry: bool,
        delay: float,
        loss: float,
        seed: int,
    ) -> None:
        """After losses and long delays, one master is agreed again."""
        # They may split the cluster and make two masters, as in node-discover.
        network = Network(
            (0.0, delay), (0.0, delay), loss=loss, duplicate=0.1, registry=registry
        )
        sim = Simulation(SETTINGS, specs, network, random.Random(seed))
        sim.run(CHAOS_UNTIL)
        sim.violations.clear()
        sim.stabilize(CHAOS_UNTIL)
        settled = (
            CHAOS_UNTIL + delay + SETTINGS.master_timeout + 2 * SETTINGS.hello_interval
        )
        sim.run(settled)
        sim.violations.clear()
        sim.run(settled + 3.0)
        self.assertSettled(sim)

    @given(
        specs=st.lists(node_spec(late=False, faults=False), min_size=2, max_size=5),
        expiring=st.integers(0, 4),
        expire_at=st.floats(3.0, 6.0),
        seed=st.integers(0, 2**32),
    )
    @EXAMPLES
    def test_lease_expiry_of_live_node(
        self,
        specs: list[NodeSpec],
        expiring: int,
        expire_at: float,
        seed: int,
    ) -> None:
        """A live node whose record expires is kept, so nobody else promotes."""
        # A lost lease: its peers do not remove it while it may still be master.
        specs[expiring % len(specs)].expire_at = expire_at
        network = Network((0.0, 0.3), (0.0, 0.3), duplicate=0.2)
        sim = Simulation(SETTINGS, specs, network, random.Random(seed))
        sim.run(12.0)
        self.assertSettled(sim)


class SimulationSanityTests(SettledMixin):
    """The harness can see what it is meant to catch."""

    def test_detects_two_masters(self) -> None:
        """Two isolated nodes (all datagrams lost) both become master: recorded."""
        specs = [NodeSpec(start=0.0, weight=-0.1), NodeSpec(start=0.0, weight=-0.2)]
        network = Network(loss=1.0, registry=False)
        sim = Simulation(SETTINGS, specs, network, random.Random(1))
        sim.run(3.0)
        self.assertTrue(sim.violations)

    def test_failover_timing(self) -> None:
        """A crashed master is replaced within masterTimeout + a check + a delay."""
        # The bound: masterTimeout + one check step (+ one message delay).
        specs = [
            NodeSpec(start=0.0, weight=0.0, kill_at=3.05, record_ttl=10.0),
            NodeSpec(start=0.0, weight=-0.1),
            NodeSpec(start=0.0, weight=-0.2),
        ]
        network = Network((0.0, 0.01), (0.0, 0.01), jitter_ticks=False)
        sim = Simulation(evolve(SETTINGS), specs, network, random.Random(2))
        sim.run(10.0)
        self.assertSettled(sim)
        (when, reason) = sim.nodes[1].promotions[0]
        self.assertEqual(reason, "check")
        self.assertLess(when - 3.05, SETTINGS.node_timeout + 0.25)

    def test_clean_stop_timing(self) -> None:
        """A master that leaves cleanly is replaced within one message delay."""
        specs = [
            NodeSpec(start=0.0, weight=0.0, leave_at=3.05),
            NodeSpec(start=0.0, weight=-0.1),
        ]
        network = Network((0.0, 0.01), (0.0, 0.01))
        sim = Simulation(SETTINGS, specs, network, random.Random(3))
        sim.run(6.0)
        self.assertSettled(sim)
        (when, _reason) = sim.nodes[1].promotions[0]
        self.assertLess(when - 3.05, 0.02)
