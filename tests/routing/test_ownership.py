"""Rendezvous ownership: one answer for one member set, and minimal movement."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twistednode.routing.ownership import (
    Candidate,
    OwnershipChanged,
    OwnershipView,
    key_bytes,
    score,
)

ids = st.uuids().map(str)
members = st.lists(ids, min_size=1, max_size=12, unique=True)
keys = st.one_of(st.text(max_size=40), st.binary(max_size=40))


class HashTests(SynchronousTestCase):
    def test_the_score_is_the_documented_blake2b_formula(self) -> None:
        """The score is capacity / -ln(u), u from BLAKE2b-64 of key, 0, id: a
        value any implementation can compute, fixed here so it never drifts."""
        digest = hashlib.blake2b(b"doc-1\x00node-a", digest_size=8).digest()
        u = (int.from_bytes(digest, "big") + 0.5) / 2**64
        self.assertEqual(score(b"doc-1", "node-a"), 1 / -math.log(u))
        self.assertEqual(score(b"doc-1", "node-a", 3.0), 3 / -math.log(u))
        self.assertEqual(
            OwnershipView.of(1, ["node-a", "node-b", "node-c"]).owners("doc-1", 3),
            ("node-c", "node-a", "node-b"),
        )

    def test_str_keys_hash_as_their_utf8_bytes(self) -> None:
        """'zürich' and its UTF-8 bytes are one key; other types are refused."""
        view = OwnershipView.of(1, [str(uuid.uuid4()) for _ in range(5)])
        self.assertEqual(view.owner("zürich"), view.owner("zürich".encode()))
        self.assertEqual(key_bytes("é"), b"\xc3\xa9")
        self.assertRaises(TypeError, view.owner, 7)

    def test_an_empty_view_has_no_owner(self) -> None:
        view = OwnershipView.of(3, [])
        self.assertIsNone(view.owner("k"))
        self.assertEqual(view.owners("k", 2), ())

    def test_capacity_must_be_positive_and_finite(self) -> None:
        for bad in (0.0, -1.0, math.inf, math.nan):
            self.assertRaises(ValueError, Candidate, "a", bad)


class PropertyTests(SynchronousTestCase):
    @given(members, keys, st.randoms())
    def test_every_order_of_one_member_set_names_one_owner(
        self, ids_: list[str], key: str | bytes, random: object
    ) -> None:
        """Nodes list their members in any order; the owner is the same."""
        shuffled = list(ids_)
        random.shuffle(shuffled)  # type: ignore[attr-defined]
        self.assertEqual(
            OwnershipView.of(1, ids_).owner(key),
            OwnershipView.of(1, shuffled).owner(key),
        )

    @given(members, ids, st.lists(keys, min_size=1, max_size=30))
    def test_a_join_moves_keys_only_to_the_newcomer(
        self, ids_: list[str], newcomer: str, some: list[str | bytes]
    ) -> None:
        """After a join every key keeps its owner or now belongs to the newcomer."""
        if newcomer in ids_:
            return
        before = OwnershipView.of(1, ids_)
        after = OwnershipView.of(2, [*ids_, newcomer])
        for key in some:
            self.assertIn(after.owner(key), (before.owner(key), newcomer))

    @given(members.filter(lambda m: len(m) > 1), st.lists(keys, max_size=30))
    def test_a_leave_moves_only_the_leavers_keys(
        self, ids_: list[str], some: list[str | bytes]
    ) -> None:
        """After a leave only keys the leaver owned change owner."""
        before = OwnershipView.of(1, ids_)
        after = OwnershipView.of(2, ids_[1:])
        for key in some:
            if before.owner(key) != ids_[0]:
                self.assertEqual(after.owner(key), before.owner(key))

    @given(members, keys, st.integers(min_value=0, max_value=14))
    def test_owners_are_distinct_owner_first(
        self, ids_: list[str], key: str | bytes, n: int
    ) -> None:
        view = OwnershipView.of(1, ids_)
        replicas = view.owners(key, n)
        self.assertEqual(len(replicas), min(n, len(ids_)))
        self.assertEqual(len(set(replicas)), len(replicas))
        if replicas:
            self.assertEqual(replicas[0], view.owner(key))
            self.assertTrue(view.owns(replicas[0], key))

    @settings(max_examples=20, deadline=None)
    @given(st.lists(ids, min_size=3, max_size=3, unique=True))
    def test_capacity_gives_a_proportional_share(self, ids_: list[str]) -> None:
        """A node of capacity 2 owns about twice the keys of its capacity-1 peers."""
        view = OwnershipView.of(
            1, [Candidate(ids_[0], 2.0), Candidate(ids_[1]), Candidate(ids_[2])]
        )
        counts = Counter(view.owner(f"k{i}") for i in range(4000))
        self.assertLess(abs(counts[ids_[0]] / 4000 - 0.5), 0.05)


class SpreadTests(SynchronousTestCase):
    def test_ten_equal_nodes_share_keys_evenly_and_a_join_moves_a_share(self) -> None:
        """10 nodes: the busiest holds at most 1.25x the mean; an 11th takes
        about 1/11 of the keys."""
        nodes = [str(uuid.UUID(int=i + 1)) for i in range(10)]
        ten = OwnershipView.of(1, nodes)
        owners = {f"doc-{i}": ten.owner(f"doc-{i}") for i in range(20_000)}
        counts = Counter(owners.values())
        self.assertLessEqual(max(counts.values()), 1.25 * 20_000 / 10)
        eleven = OwnershipView.of(2, [*nodes, str(uuid.UUID(int=99))])
        moved = sum(1 for k, o in owners.items() if eleven.owner(k) != o)
        self.assertLessEqual(moved / 20_000, 1.15 / 11)


class ChangeTests(SynchronousTestCase):
    def test_the_event_names_who_joined_and_who_left(self) -> None:
        change = OwnershipChanged.between(
            OwnershipView.of(4, ["a", "b"]), OwnershipView.of(9, ["b", "c"])
        )
        self.assertEqual(change, OwnershipChanged(9, ("b", "c"), ("c",), ("a",)))
