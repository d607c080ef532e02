"""Tests for twistednode.registry.view: the members directory as one node knows it."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.registry.test_service import NOT_UUID, OWN, A, B, entry, make_id, rec
from twistednode.registry.backend import Change, Entry, Listing
from twistednode.registry.view import (
    Member,
    MemberView,
    PeerAdded,
    PeerChanged,
    PeerEvent,
    PeerRemoved,
    diff,
)


class DiffTests(SynchronousTestCase):
    """diff turns two views into peer events."""

    def test_diff(self) -> None:
        """diff reports removals, additions (by createdIndex) and changed records."""
        old = {A: Member(rec(A), 5), B: Member(rec(B), 6)}
        c = make_id(4)
        new = {
            B: Member(rec(B, 4001), 6),
            c: Member(rec(c), 9),
            OWN: Member(rec(OWN), 2),
        }
        self.assertEqual(
            diff(old, new, OWN),
            (
                PeerRemoved(A, "vanished"),
                PeerChanged(rec(B, 4001)),
                PeerAdded(rec(c), 9),
            ),
        )

    def test_own_never_reported(self) -> None:
        """Our own record appearing, changing or leaving is never a peer event."""
        self.assertEqual(diff({}, {OWN: Member(rec(OWN), 1)}, OWN), ())
        self.assertEqual(diff({OWN: Member(rec(OWN), 1)}, {}, OWN), ())

    def test_unchanged_is_silent(self) -> None:
        """An identical record (even re-created with a new index) is no event."""
        self.assertEqual(diff({A: Member(rec(A), 5)}, {A: Member(rec(A), 8)}, OWN), ())


class MemberViewTests(SynchronousTestCase):
    """Listings and changes update the view and say what happened to peers."""

    def setUp(self) -> None:
        self.view = MemberView(OWN)

    def test_listing(self) -> None:
        """A listing adds valid peers, keeps ours out of the peers, sets the index."""
        update = self.view.apply_listing(
            Listing((entry(OWN, 3), entry(A, 4), entry(B, 5)), 9)
        )
        self.assertEqual(update.events, (PeerAdded(rec(A), 4), PeerAdded(rec(B), 5)))
        self.assertEqual(self.view.index, 9)
        self.assertEqual(self.view.own_index, 3)
        self.assertEqual(self.view.created_indexes(), {OWN: 3, A: 4, B: 5})
        self.assertEqual(set(self.view.peers()), {A, B})

    def test_relisting_diffs(self) -> None:
        """A second listing reports only what changed, removals as "vanished"."""
        self.view.apply_listing(Listing((entry(A, 4), entry(B, 5)), 9))
        update = self.view.apply_listing(Listing((entry(B, 5, port=4001),), 20))
        self.assertEqual(
            update.events, (PeerRemoved(A, "vanished"), PeerChanged(rec(B, 4001)))
        )

    def test_bad_values_ignored(self) -> None:
        """Invalid values, directories and id mismatches are rejected, not peers."""
        bad = (
            Entry(A, "{oops", 4, 4),
            Entry(B, None, 5, 5),
            Entry(make_id(9), rec(A).to_json(), 6, 6),
            Entry("not-a-uuid", NOT_UUID, 7, 7),
        )
        update = self.view.apply_listing(Listing((*bad, entry(make_id(5), 8)), 9))
        self.assertEqual(update.events, (PeerAdded(rec(make_id(5)), 8),))
        reasons = dict(update.rejected)
        self.assertIn("not JSON", reasons[A])
        self.assertIn("directory", reasons[B])
        self.assertIn("does not match its key", reasons[make_id(9)])
        self.assertIn("not a UUID", reasons["not-a-uuid"])

    def test_changes(self) -> None:
        """put adds or changes, delete and expire remove with their own reason."""
        self.view.apply_listing(Listing((entry(A, 4),), 9))
        events: list[PeerEvent] = []
        for change in (
            Change("put", B, rec(B).to_json(), 10, 10),
            Change("put", A, rec(A, 4001).to_json(), 4, 11),
            Change("deleted", A, None, 4, 12),
            Change("expired", B, None, 10, 13),
            Change("deleted", A, None, 4, 14),
        ):
            events.extend(self.view.apply_change(change).events)
        self.assertEqual(
            events,
            [
                PeerAdded(rec(B), 10),
                PeerChanged(rec(A, 4001)),
                PeerRemoved(A, "deleted"),
                PeerRemoved(B, "expired"),
            ],
        )
        self.assertEqual(self.view.index, 14)
        self.assertEqual(self.view.members, {})

    def test_change_to_bad_value_removes(self) -> None:
        """A peer whose record is overwritten by junk leaves the view ("vanished")."""
        self.view.apply_listing(Listing((entry(A, 4),), 9))
        update = self.view.apply_change(Change("put", A, "junk", 4, 10))
        self.assertEqual(update.events, (PeerRemoved(A, "vanished"),))
        self.assertEqual(update.rejected[0][0], A)
        self.assertEqual(self.view.peers(), {})

    def test_directory_removed(self) -> None:
        """The members directory deleted or expired removes every peer at once."""
        self.view.apply_listing(Listing((entry(OWN, 3), entry(A, 4), entry(B, 5)), 9))
        update = self.view.apply_change(Change("deleted", "", None, 2, 10))
        self.assertEqual(
            update.events, (PeerRemoved(A, "deleted"), PeerRemoved(B, "deleted"))
        )
        self.assertIsNone(self.view.own_index)

    def test_own_record_changes(self) -> None:
        """Our own record's changes move own_index but make no peer events."""
        update = self.view.apply_change(Change("put", OWN, rec(OWN).to_json(), 7, 7))
        self.assertEqual((update.events, self.view.own_index), ((), 7))
        update = self.view.apply_change(Change("expired", OWN, None, 7, 8))
        self.assertEqual((update.events, self.view.own_index), ((), None))

    def test_own_record_in_a_full_view_makes_room(self) -> None:
        """Our own record, written when the view already holds max_members peers
        (we listed before we wrote it), is kept: the newest peer leaves, as the
        next listing (ours first, then the oldest) would leave it out."""
        view = MemberView(OWN, max_members=2)
        view.apply_listing(Listing((entry(A, 4), entry(B, 5)), 9))
        update = view.apply_change(Change("put", OWN, rec(OWN).to_json(), 10, 10))
        self.assertEqual(update.events, (PeerRemoved(B, "vanished"),))
        self.assertEqual([name for name, _ in update.rejected], [B])
        self.assertEqual(view.own_index, 10)
        self.assertEqual(set(view.peers()), {A})
        relisted = view.apply_listing(
            Listing((entry(A, 4), entry(B, 5), entry(OWN, 10)), 11)
        )
        self.assertEqual(relisted.events, ())

    def test_nested_and_directory_puts_ignored(self) -> None:
        """A key nested below a member and a put on the directory change nothing."""
        self.view.apply_listing(Listing((entry(A, 4),), 9))
        self.assertEqual(
            self.view.apply_change(Change("deleted", A + "/x", None, 10, 10)).events, ()
        )
        self.assertEqual(
            self.view.apply_change(Change("put", "", None, 2, 11)).events, ()
        )
        self.assertEqual(set(self.view.peers()), {A})
        self.assertEqual(self.view.index, 11)
