"""ClusterNode wiring, on one in-memory clock and UDP network (no sockets)."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.harness.fakes import MemoryUDPReactor
from twistednode.discovery.membership import MembershipEvent
from twistednode.discovery.settings import make_settings
from twistednode.node import ClusterNode
from twistednode.registry.record import MemberRecord

IDS = [
    "00000000-0000-4000-8000-00000000000a",
    "00000000-0000-4000-8000-00000000000b",
    "00000000-0000-4000-8000-00000000000c",
    "00000000-0000-4000-8000-00000000000d",
]
PORTS = [41001, 41002, 41003, 41004]


def static_cluster(
    reactor: MemoryUDPReactor, count: int, **overrides: Any
) -> list[ClusterNode]:
    """C{count} nodes on static peers; the first is the heaviest."""
    nodes = []
    for i in range(count):
        peers = tuple(("127.0.0.1", PORTS[j]) for j in range(count) if j != i)
        settings = make_settings(epoch_ms=0, weight=float(10 - i))
        node = ClusterNode(
            reactor=reactor,
            settings=settings,
            static_peers=peers,
            udp_port=PORTS[i],
            udp_interface="127.0.0.1",
            node_id=IDS[i],
            pid=IDS[i],
            host_name=f"host{i}",
            **overrides,
        )
        nodes.append(node)
    return nodes


def masters(nodes: list[ClusterNode]) -> list[str]:
    return [n.id for n in nodes if n.running and n.is_master]


class StaticClusterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryUDPReactor()
        self.nodes = static_cluster(self.reactor, 3)
        for node in self.nodes:
            node.startService()

    def tearDown(self) -> None:
        for node in self.nodes:
            if node.running:
                node.stopService()

    def test_static_peers_form_full_mesh(self) -> None:
        """Every node hears both others within one hello round."""
        self.reactor.run_for(0.1)
        for node in self.nodes:
            self.assertEqual(len(node.members), 2)

    def test_static_cluster_elects_heaviest_after_check_interval(self) -> None:
        """With static peers the first election waits node-discover's checkInterval."""
        self.reactor.run_for(1.9)
        self.assertEqual(masters(self.nodes), [])
        self.reactor.run_for(0.3)
        self.assertEqual(masters(self.nodes), [IDS[0]])
        for node in self.nodes:
            self.assertEqual(node.master, IDS[0])

    def test_clean_stop_of_master_elects_new_master_at_once(self) -> None:
        """A stopped master's goodbye makes the next heaviest master within 100 ms."""
        self.reactor.run_for(3)
        self.nodes[0].stopService()
        self.reactor.run_for(0.1)
        self.assertEqual(masters(self.nodes), [IDS[1]])
        self.assertEqual(self.nodes[2].master, IDS[1])
        self.assertNotIn(IDS[0], [m.id for m in self.nodes[2].members])

    def test_silent_master_replaced_after_master_timeout(self) -> None:
        """A master that goes silent is replaced within nodeTimeout + 0.25 s."""
        self.reactor.run_for(3)
        transport = self.nodes[0]._hello.transport
        assert transport is not None
        transport.stopListening()  # a crash: no goodbye
        self.reactor.run_for(2.0 + 0.25)
        self.assertEqual(masters(self.nodes[1:]), [IDS[1]])

    def test_observers_see_added_promotion_and_removed(self) -> None:
        """on() observers receive the membership events by name, until removed."""
        seen: list[str] = []

        def record(event: MembershipEvent) -> None:
            seen.append(type(event).__name__)

        stop = self.nodes[1].on("added", record)
        self.nodes[1].on("master", record)
        self.nodes[0].on("promotion", record)
        self.reactor.run_for(2.2)
        self.assertEqual(seen.count("Added"), 2)
        self.assertIn("MasterSeen", seen)
        self.assertIn("Promotion", seen)
        stop()
        stop()  # removing twice is harmless, like unsubscribing twice
        self.assertRaises(ValueError, self.nodes[0].on, "bogus", record)  # type: ignore[arg-type]

    def test_channels_reach_every_peer(self) -> None:
        """publish() reaches the subscribers of that channel on the other nodes."""
        got: list[tuple[str, object]] = []

        def subscriber(node: ClusterNode) -> None:
            def handler(payload: object, envelope: object, source: object) -> None:
                got.append((node.id, payload))

            node.subscribe("jobs", handler)

        for node in self.nodes[1:]:
            subscriber(node)
        self.reactor.run_for(0.1)
        self.nodes[0].publish("jobs", {"id": 42})
        self.reactor.run_for(0.1)
        self.assertEqual(sorted(got), [(IDS[1], {"id": 42}), (IDS[2], {"id": 42})])

    def test_advertisement_reaches_peers(self) -> None:
        """set_advertisement() is carried to peers with the next hello."""
        self.reactor.run_for(0.1)
        self.nodes[2].set_advertisement({"svc": "api"})
        self.reactor.run_for(0.1)
        (seen,) = [m for m in self.nodes[0].members if m.id == IDS[2]]
        self.assertEqual(seen.advertisement, {"svc": "api"})

    def test_status_document_shape(self) -> None:
        """The status document names self, master and the other members."""
        self.reactor.run_for(2.5)
        doc = self.nodes[1].status_document()
        json.dumps(doc, allow_nan=False)
        self.assertEqual(doc["self"]["id"], IDS[1])
        self.assertEqual(doc["self"]["port"], PORTS[1])
        self.assertFalse(doc["self"]["isMaster"])
        self.assertEqual(doc["master"], IDS[0])
        self.assertEqual(
            sorted(m["id"] for m in doc["members"]), sorted([IDS[0], IDS[2]])
        )
        for member in doc["members"]:
            self.assertEqual(member["source"], "static")
            self.assertLess(member["lastSeen"], 1.1)
        self.assertEqual(doc["registry"]["state"], "disabled")


class RegistryWiringTests(SynchronousTestCase):
    """What the registry tells a node becomes destinations, hellos and elections."""

    def setUp(self) -> None:
        self.reactor = MemoryUDPReactor()
        self.nodes = []
        for i in range(2):
            node = ClusterNode(
                reactor=self.reactor,
                settings=make_settings(epoch_ms=0, weight=float(10 - i)),
                udp_port=PORTS[i],
                udp_interface="127.0.0.1",
                node_id=IDS[i],
                pid=IDS[i],
            )
            node.startService()
            self.nodes.append(node)

    def tearDown(self) -> None:
        for node in self.nodes:
            if node.running:
                node.stopService()

    def record(self, i: int) -> MemberRecord:
        return MemberRecord(
            id=IDS[i],
            address="127.0.0.1",
            port=PORTS[i],
            host_name=f"host{i}",
            weight=float(10 - i),
            advertisement=None,
            started_at=1.0,
        )

    def announce(self) -> None:
        """Both nodes registered (a: index 4, b: index 5) and each saw the other."""
        members = {IDS[0]: 4, IDS[1]: 5}
        for i, node in enumerate(self.nodes):
            other = 1 - i
            node.peer_added(self.record(other), members[IDS[other]])
            node.view_changed(members, 5, members[IDS[i]])

    def test_announced_peer_gets_hello_at_once(self) -> None:
        """A peer the registry announces is greeted at once, not at the next hello."""
        self.reactor.run_for(0.01)
        self.nodes[0].peer_added(self.record(1), 5)
        self.reactor.advance(0.002)
        (seen,) = self.nodes[1].members
        self.assertEqual(seen.id, IDS[0])

    def test_registry_cluster_elects_before_check_interval(self) -> None:
        """Registry-only nodes that acknowledged each other elect well under 2 s."""
        self.announce()
        self.reactor.run_for(1.0)
        self.assertEqual(masters(self.nodes), [IDS[0]])
        self.assertEqual(self.nodes[1].master, IDS[0])

    def test_registry_deletion_after_leave_removes_at_once(self) -> None:
        """A peer whose record is deleted after its leave hellos is dropped at once."""
        self.announce()
        self.reactor.run_for(1.5)
        self.nodes[1].stopService()
        self.reactor.advance(0.002)
        self.nodes[0].peer_removed(IDS[1], "deleted")
        self.assertEqual(self.nodes[0].members, ())
        self.assertEqual(self.nodes[0].status_document()["members"], [])
