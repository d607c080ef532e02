"""Tests for twistednode.cli.follow: what the watch reports."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.cli.helpers import IDS, directory_listing, members_listing, record
from twistednode.cli.follow import (
    Changed,
    Follower,
    Joined,
    Left,
    MasterChanged,
    Watching,
)
from twistednode.election.lease import Holder
from twistednode.registry.backend import Change


class FollowerTests(SynchronousTestCase):
    """A first listing, then changes and re-listings, become events."""

    def setUp(self) -> None:
        self.follower = Follower("demo")
        (event,) = self.follower.listed(
            members_listing((record(0), 5), (record(1), 6)), directory_listing(IDS[0])
        )
        assert isinstance(event, Watching)
        self.first = event

    def test_first_listing_is_the_snapshot(self) -> None:
        """The first listing is one Watching event with every member."""
        self.assertEqual(len(self.first.snapshot.members), 2)
        self.assertEqual(self.first.snapshot.master, Holder(IDS[0], 30))

    def test_join(self) -> None:
        """A record put below members/ is a join."""
        change = Change("put", f"members/{IDS[2]}", record(2).to_json(), 60, 60)
        self.assertEqual(self.follower.changed(change), [Joined(record(2))])

    def test_rewrite_is_a_change(self) -> None:
        """A known member rewriting its record is a change, not a join."""
        moved = record(1, port=42000)
        change = Change("put", f"members/{IDS[1]}", moved.to_json(), 6, 61)
        self.assertEqual(self.follower.changed(change), [Changed(moved)])

    def test_leave_says_why_and_where(self) -> None:
        """A deleted or expired record is a leave with the last known record."""
        expired = Change("expired", f"members/{IDS[1]}", None, 6, 62)
        self.assertEqual(
            self.follower.changed(expired), [Left(IDS[1], "expired", record(1))]
        )

    def test_master_changes(self) -> None:
        """The master key expiring, then a new holder, are two master events."""
        gone = self.follower.changed(Change("expired", "master", None, 30, 70))
        self.assertEqual(gone, [MasterChanged(None)])
        new = self.follower.changed(Change("put", "master", IDS[1], 71, 71))
        self.assertEqual(new, [MasterChanged(Holder(IDS[1], 71))])

    def test_renewal_is_not_a_change(self) -> None:
        """A put of the same holder (a v2 refresh) reports nothing."""
        self.assertEqual(
            self.follower.changed(Change("put", "master", IDS[0], 30, 72)), []
        )

    def test_relisting_reports_only_differences(self) -> None:
        """After a gap, a re-listing gives the joins, leaves and master missed."""
        events = self.follower.listed(
            members_listing((record(0), 5), (record(2), 9), index=80),
            directory_listing(IDS[2], 77, 80),
        )
        self.assertEqual(
            events,
            [
                Left(IDS[1], "vanished", record(1)),
                Joined(record(2)),
                MasterChanged(Holder(IDS[2], 77)),
            ],
        )

    def test_directory_deleted(self) -> None:
        """Deleting the cluster's directory removes every member and the master."""
        events = self.follower.changed(Change("deleted", "", None, 1, 90))
        self.assertEqual(
            events,
            [
                Left(IDS[0], "deleted", record(0)),
                Left(IDS[1], "deleted", record(1)),
                MasterChanged(None),
            ],
        )

    def test_members_directory_deleted(self) -> None:
        """Deleting the members directory removes every member, not the master."""
        events = self.follower.changed(Change("deleted", "members", None, 1, 91))
        self.assertEqual(
            [type(e) for e in events], [Left, Left], "the master key is elsewhere"
        )

    def test_other_keys_are_ignored(self) -> None:
        """Keys of the cluster's directory that are neither are not reported."""
        self.assertEqual(
            self.follower.changed(Change("put", "config/x", "1", 95, 95)), []
        )
