"""ClusterNode with a keyring, on one in-memory clock and UDP network: sealed
membership, and a live key rotation with no removal and no lost channel message."""

from __future__ import annotations

import base64
import os
from typing import Any

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.harness.fakes import MemoryUDPReactor
from tests.test_node import IDS
from twistednode.discovery.membership import MembershipEvent, Removed
from twistednode.discovery.settings import make_settings
from twistednode.node import ClusterNode
from twistednode.trust.keyring import Keyring, KeyringError, key_id

OLD = os.urandom(32)
NEW = os.urandom(32)


def write_keys(path: str, *keys: bytes) -> None:
    with open(path + ".tmp", "w") as f:
        f.write("".join(base64.b64encode(k).decode() + "\n" for k in keys))
    os.replace(path + ".tmp", path)  # as an operator's editor or mv would


class KeyedClusterTests(SynchronousTestCase):
    """Three static-peer nodes, each with its own keyring file."""

    def setUp(self) -> None:
        self.reactor = MemoryUDPReactor()
        self.paths = [self.mktemp() for _ in range(3)]
        for path in self.paths:
            write_keys(path, OLD)
        self.nodes = [self.keyed(i, path) for i, path in enumerate(self.paths)]
        self.removed: list[str] = []
        self.got: dict[str, list[int]] = {n.id: [] for n in self.nodes}
        for node in self.nodes:
            node.on("removed", self.on_removed)
            node.subscribe("ticks", self.handler(node))
            node.startService()

    def keyed(self, i: int, path: str, **overrides: Any) -> ClusterNode:
        ports = [41001, 41002, 41003]
        return ClusterNode(
            reactor=self.reactor,
            settings=make_settings(epoch_ms=0, weight=float(10 - i)),
            static_peers=tuple(("127.0.0.1", p) for p in ports if p != ports[i]),
            udp_port=ports[i],
            udp_interface="127.0.0.1",
            node_id=IDS[i],
            pid=IDS[i],
            host_name=f"host{i}",
            cluster="prod",
            cluster_key_file=path,
            **overrides,
        )

    def on_removed(self, event: MembershipEvent) -> None:
        assert isinstance(event, Removed)
        self.removed.append(event.member.id)

    def handler(self, node: ClusterNode) -> Any:
        def handle(payload: object, envelope: object, source: object) -> None:
            assert isinstance(payload, int)
            self.got[node.id].append(payload)

        return handle

    def tearDown(self) -> None:
        for node in self.nodes:
            if node.running:
                node.stopService()

    def test_keyed_nodes_form_a_cluster(self) -> None:
        """Sealed hellos: every node sees the others and one master is elected."""
        self.reactor.run_for(2.5)
        for node in self.nodes:
            self.assertEqual(len(node.members), 2)
        self.assertEqual([n.id for n in self.nodes if n.is_master], [IDS[0]])
        self.assertEqual(
            self.nodes[0].status_document()["keyring"], [key_id(OLD).hex()]
        )

    def test_node_with_another_key_is_not_heard(self) -> None:
        """A node whose keyring shares no key is never listed; its hellos count as
        dropped.auth."""
        stranger_path = self.mktemp()
        write_keys(stranger_path, NEW)
        stranger = ClusterNode(
            reactor=self.reactor,
            settings=make_settings(epoch_ms=0, weight=100.0),
            static_peers=(("127.0.0.1", 41001),),
            udp_port=41009,
            udp_interface="127.0.0.1",
            node_id=IDS[3],
            pid=IDS[3],
            cluster="prod",
            keyring=Keyring((NEW,)),
        )
        stranger.startService()
        self.addCleanup(stranger.stopService)
        self.reactor.run_for(3)
        self.assertNotIn(IDS[3], [m.id for m in self.nodes[0].members])
        self.assertGreater(self.nodes[0].status_document()["dropped"]["auth"], 0)
        self.assertEqual([n.id for n in self.nodes if n.is_master], [IDS[0]])

    def test_live_rotation_loses_no_member_and_no_message(self) -> None:
        """Add the new key everywhere, make it first everywhere, remove the old one,
        one node at a time (file changes and reloads), a channel message from every
        node every 100 ms: zero removals, every message delivered."""
        self.reactor.run_for(2.5)
        sent = 0
        steps = [(OLD, NEW), (NEW, OLD), (NEW,)]
        schedule = [(step, i) for step in steps for i in range(3)]
        for tick in range(150):
            if tick % 15 == 5 and schedule:
                keys, i = schedule.pop(0)
                write_keys(self.paths[i], *keys)
                if i == 1:
                    self.nodes[i].reload_keyring()  # what SIGHUP does
                # the others notice the file's change at their next poll
            for node in self.nodes:
                node.publish("ticks", sent + 1)
            sent += 1
            self.reactor.run_for(0.1)
        self.reactor.run_for(1.0)
        self.assertEqual(schedule, [])
        self.assertEqual(self.removed, [])
        for node in self.nodes:
            self.assertEqual(node.keyring, Keyring((NEW,)))
            self.assertEqual(sorted(self.got[node.id]), sorted(2 * list(range(1, 151))))
            self.assertNotIn("auth", node.status_document()["dropped"])

    def test_removing_the_old_key_too_early_cuts_the_node_off(self) -> None:
        """The order matters: a node that drops the old key while others still seal
        with it stops hearing them (the README's warning)."""
        self.reactor.run_for(2.5)
        write_keys(self.paths[2], NEW)
        self.nodes[2].reload_keyring()
        self.reactor.run_for(3.0)
        self.assertEqual(self.nodes[2].members, ())

    def test_broken_file_keeps_the_node_in_the_cluster(self) -> None:
        """A keyring file replaced by garbage is ignored; the node stays keyed."""
        self.reactor.run_for(2.5)
        with open(self.paths[1], "w") as f:
            f.write("half-written\n")
        self.reactor.run_for(3.0)
        self.assertEqual(self.nodes[1].keyring, Keyring((OLD,)))
        self.assertEqual(len(self.nodes[1].members), 2)
        self.assertEqual(self.removed, [])


class KeyringArgumentTests(SynchronousTestCase):
    """What ClusterNode refuses about keys."""

    def make(self, **kwargs: Any) -> ClusterNode:
        return ClusterNode(
            reactor=MemoryUDPReactor(),
            settings=make_settings(epoch_ms=1, **kwargs.pop("settings", {})),
            static_peers=(("127.0.0.1", 1),),
            **kwargs,
        )

    def test_unreadable_key_file_is_a_keyring_error(self) -> None:
        """A missing file fails when the node is made, not at the first datagram."""
        self.assertRaises(KeyringError, self.make, cluster_key_file=self.mktemp())

    def test_keyring_and_legacy_key_are_exclusive(self) -> None:
        """The legacy cipher and sealing are not stacked."""
        self.assertRaises(
            ValueError,
            self.make,
            keyring=Keyring((OLD,)),
            settings={"key": "secret"},
        )

    def test_set_keyring_needs_a_keyed_node(self) -> None:
        """A keyless node cannot start sealing halfway (its peers would drop it)."""
        node = self.make()
        self.assertRaises(ValueError, node.set_keyring, Keyring((OLD,)))

    def test_legacy_key_warns_that_it_is_not_security(self) -> None:
        """A node made with node-discover's key says, once, what it is not."""
        with capturedLogs() as logs:
            self.make(settings={"key": "secret"})
        warned = [e for e in logs if e.get("legacy_key")]
        self.assertEqual(len(warned), 1)
        self.assertEqual(warned[0]["log_level"], LogLevel.warn)
        text = formatEvent(warned[0])
        self.assertIn("not security", text)
        self.assertIn("Node.js 22", text)
