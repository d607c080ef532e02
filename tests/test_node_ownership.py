"""ClusterNode's key ownership: the member set it spreads keys over, from the
registry's view, and the ownership event."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.harness.fakes import MemoryUDPReactor
from tests.test_node import IDS, PORTS
from twistednode.discovery.settings import make_settings
from twistednode.node import ClusterNode
from twistednode.registry.record import MemberRecord
from twistednode.routing.ownership import OwnershipChanged


def record(i: int, **fields: Any) -> MemberRecord:
    return MemberRecord(
        id=IDS[i],
        address="127.0.0.1",
        port=PORTS[i],
        host_name=f"host{i}",
        weight=1.0,
        advertisement=None,
        started_at=1.0,
        **fields,
    )


class RegistryOwnershipTests(SynchronousTestCase):
    """A registry node (its etcd never answers here: the test plays the registry)."""

    def setUp(self) -> None:
        self.reactor = MemoryUDPReactor()
        self.node = ClusterNode(
            reactor=self.reactor,
            settings=make_settings(epoch_ms=0, weight=1.0),
            etcd_urls=("http://127.0.0.1:1",),
            udp_port=PORTS[0],
            udp_interface="127.0.0.1",
            node_id=IDS[0],
            pid=IDS[0],
            transport=None,
        )
        self.changes: list[OwnershipChanged] = []
        self.node.on("ownership", self.changes.append)
        self.node.startService()
        self.addCleanup(self.node.stopService)

    def test_own_record_in_the_view_makes_this_node_an_owner(self) -> None:
        """The view listing our record is enough, before the write's answer came
        back (the registry has not confirmed our index yet)."""
        assert self.node.registry is not None
        self.assertIsNone(self.node.registry.own_index)
        self.node.peer_added(record(1), 4)
        self.node.view_changed({IDS[0]: 3, IDS[1]: 4}, 4, 3)
        self.assertEqual(self.node.ownership.ids, (IDS[0], IDS[1]))
        self.assertEqual(self.node.ownership.version, 4)
        self.assertEqual(self.changes[-1].owners, (IDS[0], IDS[1]))

    def test_without_our_record_only_peers_own_keys(self) -> None:
        """Until the view lists us (or after a registry restarted empty), keys go
        to the listed peers only; client records own nothing."""
        self.node.peer_added(record(1), 4)
        self.node.peer_added(record(2, client=True), 5)
        self.node.view_changed({IDS[1]: 4, IDS[2]: 5}, 5, None)
        self.assertEqual(self.node.ownership.ids, (IDS[1],))
        self.assertFalse(self.node.owns("doc-1"))
        self.assertEqual(self.node.owner("doc-1"), IDS[1])

    def test_capacity_comes_from_the_records(self) -> None:
        self.node.peer_added(record(1, capacity=3.0), 4)
        self.node.view_changed({IDS[0]: 3, IDS[1]: 4}, 4, 3)
        capacities = {c.id: c.capacity for c in self.node.ownership.candidates}
        self.assertEqual(capacities, {IDS[0]: 1.0, IDS[1]: 3.0})
