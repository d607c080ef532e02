"""minietcd's pure v2 store: index arithmetic, operations, TTLs, history, watchers."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from minietcd.store import (
    MIN_EXPIRE_NS,
    NS,
    NodeView,
    Store,
    StoreStats,
    clean_key,
    expiration_for,
    ttl_at,
)
from tests.harness.etcdtesting import NOW, error_of


class CleanKeyTests(SynchronousTestCase):
    """Keys are cleaned as Go's path.Clean(path.Join("/", key))."""

    def test_clean(self) -> None:
        """Empty, dot, dot-dot and doubled parts go; a trailing slash goes."""
        self.assertEqual(clean_key(""), "/")
        self.assertEqual(clean_key("/"), "/")
        self.assertEqual(clean_key("a/b/"), "/a/b")
        self.assertEqual(clean_key("//a/./b/../c"), "/a/c")
        self.assertEqual(clean_key("/../.."), "/")
        self.assertEqual(clean_key("/a b/é"), "/a b/é")


class IndexTests(SynchronousTestCase):
    """One global index: starts at 3, +1 per successful mutation."""

    def test_fresh_store_starts_at_three(self) -> None:
        """A fresh store is at index 3 and its first write gets index 4."""
        store = Store()
        self.assertEqual(store.index, 3)
        event = store.set("/a", "1", NOW)
        self.assertEqual(store.index, 4)
        self.assertEqual(
            event.node, NodeView("/a", "1", modified_index=4, created_index=4)
        )
        self.assertEqual(event.etcd_index, 4)
        self.assertTrue(event.created)

    def test_set_replaces_update_keeps_created_index(self) -> None:
        """set gives a new createdIndex; update and compareAndSwap keep it."""
        store = Store()
        store.set("/a", "1", NOW)
        second = store.set("/a", "2", NOW)
        self.assertEqual(
            (second.node.created_index, second.node.modified_index), (5, 5)
        )
        self.assertFalse(second.created)
        assert second.prev_node is not None
        self.assertEqual(second.prev_node.value, "1")
        update = store.update("/a", "3", NOW)
        self.assertEqual(
            (update.node.created_index, update.node.modified_index), (5, 6)
        )
        swap = store.compare_and_swap("/a", "4", NOW, prev_value="3")
        self.assertEqual((swap.node.created_index, swap.node.modified_index), (5, 7))

    def test_intermediate_dirs_get_the_write_index(self) -> None:
        """Directories created on the way get the index of the write that made them."""
        store = Store()
        store.set("/x/y/z", "v", NOW)
        listing = store.get("/x", NOW, recursive=True).node
        self.assertEqual((listing.created_index, listing.modified_index), (4, 4))
        assert listing.nodes is not None
        self.assertEqual(listing.nodes[0].created_index, 4)

    def test_reads_and_failures_leave_the_index(self) -> None:
        """Reads and failed writes do not advance the index."""
        store = Store()
        store.set("/a", "1", NOW)
        store.get("/a", NOW)
        error_of(self, store.create, "/a", "2", NOW)
        error_of(self, store.update, "/missing", "2", NOW)
        error_of(self, store.compare_and_swap, "/a", "2", NOW, prev_value="nope")
        error_of(self, store.delete, "/", NOW)
        self.assertEqual(store.index, 4)

    def test_every_mutation_advances_by_one(self) -> None:
        """Each kind of mutation, refresh and expiry included, takes one index."""
        store = Store()
        store.set("/a", "1", NOW, ttl=10)  # 4
        store.create("/b", "1", NOW)  # 5
        store.update("/b", "2", NOW)  # 6
        store.compare_and_swap("/b", "3", NOW, prev_index=6)  # 7
        store.set("/a", "", NOW, ttl=20, refresh=True)  # 8
        store.compare_and_delete("/b", NOW, prev_value="3")  # 9
        store.create("/q", "", NOW, unique=True)  # 10
        store.delete("/q", NOW, recursive=True)  # 11
        store.expire(NOW + 21)  # 12
        self.assertEqual(store.index, 12)


class ReadTests(SynchronousTestCase):
    """GET semantics: errors, listings, hidden nodes, sorting, the root."""

    def setUp(self) -> None:
        self.store = Store()
        for key in ("/d/b", "/d/a", "/d/_hidden", "/d/sub/x", "/f"):
            self.store.set(key, "v", NOW)

    def test_missing_key_cause_is_first_missing_component(self) -> None:
        """A missing key is 100 with the first missing path component as cause."""
        error = error_of(self, self.store.get, "/nodir/a/b", NOW)
        self.assertEqual((error.code, error.cause, error.index), (100, "/nodir", 8))
        self.assertEqual((error.status, error.message), (404, "Key not found"))

    def test_walking_through_a_file(self) -> None:
        """Walking through a file is 104 with the file's key as cause."""
        error = error_of(self, self.store.get, "/f/x/y", NOW)
        self.assertEqual((error.code, error.cause, error.status), (104, "/f", 400))

    def test_directory_lists_one_level_without_hidden(self) -> None:
        """A dir lists its visible children; child dirs come without their nodes."""
        node = self.store.get("/d", NOW, sorted=True).node
        self.assertTrue(node.dir)
        assert node.nodes is not None
        self.assertEqual([n.key for n in node.nodes], ["/d/a", "/d/b", "/d/sub"])
        self.assertIsNone(node.nodes[2].nodes)

    def test_recursive_and_sorted(self) -> None:
        """recursive=true lists the whole subtree, sorted at every level."""
        self.store.set("/d/sub/a", "v", NOW)
        node = self.store.get("/d", NOW, recursive=True, sorted=True).node
        assert node.nodes is not None
        sub = node.nodes[2]
        assert sub.nodes is not None
        self.assertEqual([n.key for n in sub.nodes], ["/d/sub/a", "/d/sub/x"])

    def test_sorted_is_byte_order(self) -> None:
        """Sorting compares keys as bytes (upper case before lower, ASCII first)."""
        store = Store()
        for name in ("b", "B", "é", "a", "_x", "10", "9"):
            store.set("/s/" + name, "", NOW)
        node = store.get("/s", NOW, sorted=True).node
        assert node.nodes is not None
        self.assertEqual(
            [n.key for n in node.nodes],
            ["/s/10", "/s/9", "/s/B", "/s/a", "/s/b", "/s/é"],
        )

    def test_hidden_key_readable_directly(self) -> None:
        """A hidden key is left out of listings but can be read by its key."""
        self.assertEqual(self.store.get("/d/_hidden", NOW).node.value, "v")
        root = self.store.get("/", NOW, recursive=True).node
        self.assertNotIn("_hidden", repr(root))

    def test_empty_directory_has_no_nodes(self) -> None:
        """An empty dir has no nodes list (rendered without a "nodes" field)."""
        self.store.set("/empty", "", NOW, dir=True)
        self.assertFalse(self.store.get("/empty", NOW).node.nodes)

    def test_recursive_on_file_is_plain_get(self) -> None:
        """recursive=true on a file reads the file."""
        self.assertEqual(self.store.get("/f", NOW, recursive=True).node.value, "v")

    def test_root_has_no_key_or_indices(self) -> None:
        """The root renders as a dir without key, createdIndex or modifiedIndex."""
        node = self.store.get("/", NOW).node
        self.assertEqual((node.key, node.dir, node.created_index), ("", True, 0))
        self.assertEqual(self.store.get("/", NOW).etcd_index, self.store.index)

    def test_deep_tree_does_not_recurse(self) -> None:
        """Trees deeper than Python's recursion limit are listed and deleted."""
        key = "/deep" * 3000
        self.store.set(key, "v", NOW)
        node = self.store.get("/deep", NOW, recursive=True).node
        depth = 0
        while node.nodes:
            node = node.nodes[0]
            depth += 1
        self.assertEqual((depth, node.value), (2999, "v"))
        self.store.delete("/deep", NOW, recursive=True)


class WriteTests(SynchronousTestCase):
    """PUT/POST/DELETE semantics and their error causes."""

    def setUp(self) -> None:
        self.store = Store()
        self.store.set("/dir/child", "c", NOW)
        self.store.set("/file", "f", NOW)

    def test_set_onto_a_directory(self) -> None:
        """set on a dir is 102 Not a file, even with dir=true."""
        for flag in (False, True):
            error = error_of(self, self.store.set, "/dir", "x", NOW, dir=flag)
            self.assertEqual(
                (error.code, error.cause, error.status), (102, "/dir", 403)
            )

    def test_file_replaced_by_directory(self) -> None:
        """set dir=true replaces a file by a dir, with the file as prevNode."""
        event = self.store.set("/file", "", NOW, dir=True)
        self.assertTrue(event.node.dir)
        self.assertIsNone(event.node.value)
        assert event.prev_node is not None
        self.assertEqual(event.prev_node.value, "f")

    def test_create_existing_is_105(self) -> None:
        """create of an existing key is 412/105 with the key as cause."""
        error = error_of(self, self.store.create, "/file", "x", NOW)
        self.assertEqual((error.code, error.cause, error.status), (105, "/file", 412))

    def test_in_order_keys(self) -> None:
        """A unique create names the node by the new index, zero-padded to 20."""
        event = self.store.create("/queue", "job", NOW, unique=True)
        self.assertEqual(event.node.key, "/queue/00000000000000000006")
        self.assertEqual(event.action, "create")
        second = self.store.create("/queue", "", NOW, unique=True, dir=True)
        self.assertEqual(second.node.key, "/queue/00000000000000000007")
        self.assertTrue(second.node.dir)

    def test_in_order_under_a_file(self) -> None:
        """A unique create under a file is 104 and counts a failed set too."""
        before = self.store.stats.sets_fail
        error = error_of(self, self.store.create, "/file", "", NOW, unique=True)
        self.assertEqual((error.code, error.cause), (104, "/file"))
        self.assertEqual(self.store.stats.sets_fail, before + 1)
        self.assertEqual(self.store.stats.create_fail, 1)

    def test_in_order_under_the_root(self) -> None:
        """A unique create on the root makes a key below it."""
        event = self.store.create("/", "", NOW, unique=True)
        self.assertEqual(event.node.key, "/00000000000000000006")

    def test_root_is_read_only(self) -> None:
        """Writes on the root are 107 with cause "/"."""
        calls = [
            lambda: self.store.set("/", "x", NOW),
            lambda: self.store.create("/", "x", NOW),
            lambda: self.store.update("/", "x", NOW),
            lambda: self.store.compare_and_swap("/", "x", NOW, prev_value="y"),
            lambda: self.store.delete("/", NOW, recursive=True),
        ]
        for call in calls:
            error = error_of(self, call)
            self.assertEqual((error.code, error.cause, error.index), (107, "/", 5))

    def test_update(self) -> None:
        """update needs the key; on a dir only the TTL may change."""
        error = error_of(self, self.store.update, "/missing", "x", NOW)
        self.assertEqual(error.code, 100)
        error = error_of(self, self.store.update, "/dir", "x", NOW)
        self.assertEqual((error.code, error.cause), (102, "/dir"))
        event = self.store.update("/dir", "", NOW, ttl=30)
        self.assertEqual(
            (event.node.dir, event.node.ttl, event.node.modified_index), (True, 30, 6)
        )
        self.assertEqual(event.node.value, None)

    def test_update_of_dir_keeps_stored_modified_index(self) -> None:
        """Quirk kept: a dir's stored modifiedIndex is not bumped by update."""
        self.store.update("/dir", "", NOW, ttl=30)
        self.assertEqual(self.store.get("/dir", NOW).node.modified_index, 4)

    def test_compare_and_swap_causes(self) -> None:
        """CAS failures are 412/101 with etcd's [a != b] causes."""
        cases: list[tuple[dict[str, Any], str]] = [
            ({"prev_value": "x"}, "[x != f]"),
            ({"prev_index": 2}, "[2 != 5]"),
            ({"prev_value": "x", "prev_index": 2}, "[x != f] [2 != 5]"),
        ]
        for kwargs, cause in cases:
            error = error_of(
                self, self.store.compare_and_swap, "/file", "n", NOW, **kwargs
            )
            self.assertEqual((error.code, error.cause, error.status), (101, cause, 412))
        error = error_of(
            self, self.store.compare_and_swap, "/dir", "n", NOW, prev_value="x"
        )
        self.assertEqual((error.code, error.cause), (102, "/dir"))
        error = error_of(
            self, self.store.compare_and_swap, "/nope", "n", NOW, prev_index=1
        )
        self.assertEqual((error.code, error.cause), (100, "/nope"))
        event = self.store.compare_and_swap(
            "/file", "n", NOW, prev_value="f", prev_index=5
        )
        self.assertEqual(event.action, "compareAndSwap")

    def test_delete_rules(self) -> None:
        """A file goes with or without dir; a dir needs dir, and recursive if full."""
        error = error_of(self, self.store.delete, "/dir", NOW)
        self.assertEqual((error.code, error.cause, error.status), (102, "/dir", 403))
        error = error_of(self, self.store.delete, "/dir", NOW, dir=True)
        self.assertEqual((error.code, error.cause, error.status), (108, "/dir", 403))
        event = self.store.delete("/file", NOW, dir=True)
        self.assertEqual(
            event.node, NodeView("/file", modified_index=6, created_index=5)
        )
        event = self.store.delete("/dir", NOW, recursive=True)
        self.assertEqual(
            event.node, NodeView("/dir", dir=True, modified_index=7, created_index=4)
        )
        assert event.prev_node is not None
        self.assertIsNone(event.prev_node.nodes)
        self.assertEqual(error_of(self, self.store.get, "/dir/child", NOW).code, 100)

    def test_dir_with_only_hidden_children_is_not_empty(self) -> None:
        """A dir holding only hidden nodes still needs recursive to go."""
        self.store.set("/h/_secret", "s", NOW)
        error = error_of(self, self.store.delete, "/h", NOW, dir=True)
        self.assertEqual(error.code, 108)

    def test_compare_and_delete(self) -> None:
        """CAD: compare causes, 102 on dirs (no cause on the root), success event."""
        error = error_of(
            self, self.store.compare_and_delete, "/file", NOW, prev_value="x"
        )
        self.assertEqual((error.code, error.cause), (101, "[x != f]"))
        error = error_of(self, self.store.compare_and_delete, "/dir", NOW, prev_index=4)
        self.assertEqual((error.code, error.cause), (102, "/dir"))
        error = error_of(self, self.store.compare_and_delete, "/", NOW, prev_value="x")
        self.assertEqual((error.code, error.cause), (102, ""))
        event = self.store.compare_and_delete("/file", NOW, prev_index=5)
        self.assertEqual(event.action, "compareAndDelete")
        self.assertFalse(event.node.dir)

    def test_rejected_requests_leave_the_tree(self) -> None:
        """After every kind of rejected write the tree and index are unchanged."""
        before = self.store.get("/", NOW, recursive=True, sorted=True)
        for call in (
            lambda: self.store.set("/file/x", "1", NOW),
            lambda: self.store.create("/dir/child", "1", NOW),
            lambda: self.store.update("/dir", "v", NOW),
            lambda: self.store.delete("/dir", NOW),
            lambda: self.store.compare_and_delete("/dir/child", NOW, prev_value="no"),
        ):
            error_of(self, call)
        after = self.store.get("/", NOW, recursive=True, sorted=True)
        self.assertEqual(before, after)


class StatsTests(SynchronousTestCase):
    """The /v2/stats/store counters, etcd's accounting quirks included."""

    def test_fresh_counters(self) -> None:
        """A fresh store shows a fresh etcd's bootstrap counters."""
        self.assertEqual(
            Store().stats, StoreStats(gets_fail=1, sets_success=2, create_success=1)
        )

    def test_counters_and_quirks(self) -> None:
        """Counters move as in etcd, failures it counts as successes included."""
        # Those: root writes, CAD compare failures, update of a dir's value.
        store = Store(stats=StoreStats())
        store.set("/d/f", "v", NOW)
        store.get("/d", NOW)
        error_of(self, store.get, "/nope", NOW)
        error_of(self, store.set, "/d", "v", NOW)
        error_of(self, store.update, "/", "v", NOW)
        error_of(self, store.update, "/d", "v", NOW)
        error_of(self, store.compare_and_swap, "/", "v", NOW, prev_value="x")
        error_of(self, store.compare_and_delete, "/d/f", NOW, prev_value="x")
        error_of(self, store.delete, "/", NOW)
        store.set("/t", "v", NOW, ttl=1)
        store.expire(NOW + 2)
        self.assertEqual(
            store.stats,
            StoreStats(
                gets_success=1,
                gets_fail=1,
                sets_success=2,
                sets_fail=1,
                delete_success=1,
                update_success=2,
                compare_and_swap_success=1,
                compare_and_delete_success=1,
                expire_count=1,
            ),
        )


class TTLTests(SynchronousTestCase):
    """Expiration, remaining ttl, sweeping, and TTL changes."""

    def test_ttl_and_expiration(self) -> None:
        """A TTL gives an expiration now+ttl and a ttl rounded up as time passes."""
        store = Store()
        event = store.set("/k", "v", NOW, ttl=5)
        self.assertEqual(event.node.expiration, int(NOW) * NS + 5 * NS)
        self.assertEqual(event.node.ttl, 5)
        self.assertEqual(store.get("/k", NOW + 0.1).node.ttl, 5)
        self.assertEqual(store.get("/k", NOW + 1.0).node.ttl, 4)
        self.assertEqual(store.get("/k", NOW + 4.9).node.ttl, 1)
        self.assertEqual(store.next_expiry(), NOW + 5)

    def test_ttl_rounding(self) -> None:
        """ttl is ceil(remaining seconds), also when past due (Go's rounding)."""
        self.assertEqual(ttl_at(10 * NS, 10 * NS), 0)
        self.assertEqual(ttl_at(10 * NS, 9 * NS + 1), 1)
        self.assertEqual(ttl_at(10 * NS, 10 * NS + NS // 2), 0)
        self.assertEqual(ttl_at(10 * NS, 11 * NS + NS // 2), -1)

    def test_expire_event(self) -> None:
        """Expiry at the deadline is an expire event with the old node as prevNode."""
        store = Store()
        store.set("/k", "v", NOW, ttl=2)
        self.assertEqual(store.expire(NOW + 1.999), [])
        [event] = store.expire(NOW + 2)
        self.assertEqual(event.action, "expire")
        self.assertEqual(event.node, NodeView("/k", modified_index=5, created_index=4))
        assert event.prev_node is not None
        self.assertEqual((event.prev_node.value, event.prev_node.ttl), ("v", 0))
        self.assertEqual(event.prev_node.expiration, int(NOW + 2) * NS)
        self.assertEqual(store.index, 5)
        self.assertIsNone(store.next_expiry())
        self.assertEqual(store.stats.expire_count, 1)

    def test_expired_nodes_go_before_any_operation(self) -> None:
        """An operation at a time past an expiration sees the node gone."""
        store = Store()
        store.set("/k", "v", NOW, ttl=1)
        self.assertEqual(error_of(self, store.get, "/k", NOW + 1.5).code, 100)
        self.assertEqual(store.index, 5)

    def test_ttl_zero(self) -> None:
        """ttl=0 expires at once: expiration now, no ttl, gone at the next sweep."""
        store = Store()
        event = store.set("/k", "v", NOW, ttl=0)
        self.assertEqual((event.node.expiration, event.node.ttl), (int(NOW) * NS, 0))
        self.assertEqual([e.action for e in store.expire(NOW)], ["expire"])

    def test_update_without_ttl_removes_it(self) -> None:
        """update and compareAndSwap without ttl make the node permanent."""
        store = Store()
        store.set("/a", "1", NOW, ttl=5)
        store.set("/b", "1", NOW, ttl=5)
        self.assertIsNone(store.update("/a", "2", NOW).node.expiration)
        self.assertIsNone(
            store.compare_and_swap("/b", "2", NOW, prev_value="1").node.expiration
        )
        self.assertEqual(store.expire(NOW + 10), [])
        self.assertIsNone(store.next_expiry())

    def test_set_without_ttl_removes_it(self) -> None:
        """A plain set replaces a TTL node by a permanent one."""
        store = Store()
        store.set("/a", "1", NOW, ttl=5)
        store.set("/a", "2", NOW)
        self.assertEqual(store.expire(NOW + 10), [])

    def test_refresh_keeps_value_and_resets_ttl(self) -> None:
        """A refresh keeps the value, sets the new TTL and consumes an index."""
        store = Store()
        store.set("/a", "1", NOW, ttl=5)
        event = store.update("/a", "", NOW + 3, ttl=5, refresh=True)
        self.assertEqual(
            (event.node.value, event.node.ttl, event.refresh), ("1", 5, True)
        )
        self.assertEqual(store.expire(NOW + 6), [])
        self.assertEqual(len(store.expire(NOW + 8)), 1)

    def test_refresh_through_set_is_a_new_node(self) -> None:
        """A refresh without prevExist is a set: same value, new createdIndex."""
        store = Store()
        store.set("/a", "1", NOW, ttl=5)
        event = store.set("/a", "", NOW, ttl=9, refresh=True)
        self.assertEqual(
            (event.action, event.node.value, event.node.created_index), ("set", "1", 5)
        )
        self.assertEqual(
            error_of(self, store.set, "/b", "", NOW, ttl=1, refresh=True).code, 100
        )

    def test_dir_ttl_removes_the_subtree(self) -> None:
        """An expiring dir takes its subtree with it."""
        store = Store()
        store.set("/d", "", NOW, dir=True, ttl=3)
        store.set("/d/a/b", "v", NOW, ttl=60)
        [event] = store.expire(NOW + 3)
        self.assertEqual(
            event.node, NodeView("/d", dir=True, modified_index=6, created_index=4)
        )
        self.assertEqual(error_of(self, store.get, "/d/a/b", NOW + 3).code, 100)
        self.assertEqual(store.expire(NOW + 100), [])

    def test_huge_ttls_wrap_like_go(self) -> None:
        """TTLs whose nanoseconds overflow int64 behave as in etcd 3.4."""
        now_ns = int(NOW) * NS
        self.assertEqual(
            expiration_for(4_000_000_000, now_ns), now_ns + 4_000_000_000 * NS
        )
        # 9e18 ns fits a Duration but now+9e18 does not: wraps before 2000, so no TTL.
        wrapped = expiration_for(9_000_000_000, now_ns)
        assert wrapped is not None
        self.assertLess(wrapped, MIN_EXPIRE_NS)
        store = Store()
        self.assertIsNone(store.set("/a", "v", NOW, ttl=9_000_000_000).node.expiration)
        # 2**64-1 is Duration(-1): one second in the past.
        event = store.set("/b", "v", NOW, ttl=2**64 - 1)
        self.assertEqual((event.node.expiration, event.node.ttl), (now_ns - NS, -1))

    def test_heap_does_not_grow_with_rewrites(self) -> None:
        """Rewriting TTL keys many times does not keep dead timer entries forever."""
        store = Store()
        for i in range(5000):
            store.set("/k", str(i), NOW, ttl=3600)
        self.assertLess(len(store._expiries), 200)
        self.assertEqual(store.next_expiry(), NOW + 3600)
