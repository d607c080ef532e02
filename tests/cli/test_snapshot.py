"""Tests for twistednode.cli.snapshot: the cluster from two listings."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.cli.helpers import IDS, directory_listing, members_listing, record
from twistednode.cli.snapshot import cluster_directory, members_directory, snapshot_of
from twistednode.election.lease import Holder
from twistednode.registry.backend import Entry, Listing


class SnapshotTests(SynchronousTestCase):
    """snapshot_of reads the records as the nodes do, and the master key."""

    def test_members_in_join_order_and_master(self) -> None:
        """Members come in created-index order; the master key gives id and epoch."""
        members = members_listing((record(0), 12), (record(1), 7), index=40)
        found, _view = snapshot_of("demo", members, directory_listing(IDS[0], 30, 41))
        self.assertEqual([m.record.id for m in found.members], [IDS[1], IDS[0]])
        self.assertEqual([m.created_index for m in found.members], [7, 12])
        self.assertEqual(found.master, Holder(IDS[0], 30))
        self.assertEqual(found.index, 40)
        self.assertEqual(found.master_key, "/twistednode/demo/master")

    def test_client_is_not_eligible(self) -> None:
        """A client node's record says it may not become master."""
        found, _ = snapshot_of(
            "demo",
            members_listing((record(0, client=True), 3)),
            directory_listing(None),
        )
        (only,) = found.members
        self.assertFalse(only.eligible)
        self.assertIsNone(found.master)

    def test_invalid_value_is_kept_aside(self) -> None:
        """A value that is not a record is reported with the reason, not shown."""
        members = Listing((Entry(IDS[2], "{not json", 5, 5),), 9)
        found, _ = snapshot_of("demo", members, directory_listing(None))
        self.assertEqual(found.members, ())
        ((name, why),) = found.rejected
        self.assertEqual(name, IDS[2])
        self.assertTrue(why)

    def test_directories(self) -> None:
        """The cluster's directory holds the members directory."""
        self.assertEqual(cluster_directory("c"), "/twistednode/c")
        self.assertEqual(members_directory("c"), "/twistednode/c/members")
