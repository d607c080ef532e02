"""Properties of minietcd's store under random operation sequences."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from minietcd.errors import EtcdError
from minietcd.events import Event, NodeView
from minietcd.store import Store
from tests.harness.etcdtesting import NOW, Recorder

_KEYS = st.sampled_from(["/", "/a", "/a/b", "/a/b/c", "/_h", "/_h/x", "/d", "/d/e"])
_OPS = st.one_of(
    st.tuples(st.just("set"), _KEYS, st.booleans(), st.sampled_from([None, 0, 2])),
    st.tuples(st.just("create"), _KEYS, st.booleans(), st.booleans()),
    st.tuples(st.just("update"), _KEYS, st.sampled_from(["", "v"]), st.booleans()),
    st.tuples(st.just("cas"), _KEYS, st.sampled_from(["", "v"]), st.integers(0, 9)),
    st.tuples(st.just("delete"), _KEYS, st.booleans(), st.booleans()),
    st.tuples(st.just("cad"), _KEYS, st.sampled_from(["", "v"]), st.integers(0, 9)),
    st.tuples(st.just("tick"), _KEYS, st.floats(0, 3), st.booleans()),
)


def _apply(store: Store, op: tuple[Any, ...], now: float) -> Event:
    kind, key, x, y = op
    if kind == "set":
        return store.set(key, "v", now, dir=x, ttl=y)
    if kind == "create":
        return store.create(key, "v", now, dir=x, unique=y)
    if kind == "update":
        return store.update(key, x, now, ttl=2 if y else None)
    if kind == "cas":
        return store.compare_and_swap(key, "w", now, prev_value=x, prev_index=y)
    if kind == "delete":
        return store.delete(key, now, dir=x, recursive=y)
    return store.compare_and_delete(key, now, prev_value=x, prev_index=y)


def _indices(node: NodeView) -> list[int]:
    found = [node.created_index, node.modified_index]
    for child in node.nodes or []:
        found.extend(_indices(child))
    return found


class StorePropertyTests(SynchronousTestCase):
    """Invariants that hold after any sequence of operations."""

    @settings(max_examples=300, deadline=None)
    @given(st.lists(_OPS, max_size=25))
    def test_index_history_and_watchers_stay_consistent(
        self, ops: list[tuple[Any, ...]]
    ) -> None:
        """Each success takes the next index and reaches a watcher of everything."""
        # Failures change nothing; no node claims a future index.
        store = Store()
        seen = Recorder()
        now = NOW
        for op in ops:
            if op[0] == "tick":
                now += op[2]
                before = store.index
                expired = store.expire(now)
                self.assertEqual(store.index, before + len(expired))
            else:
                before = store.index
                listing = store.get("/", now, recursive=True, sorted=True)
                watcher = store.watch("/", True, 0, now, seen)
                delivered = len(seen.events)
                try:
                    event = _apply(store, op, now)
                except EtcdError as error:
                    self.assertEqual(store.index, before)
                    self.assertEqual(error.index, before)
                    again = store.get("/", now, recursive=True, sorted=True)
                    self.assertEqual(again.node, listing.node)
                    self.assertEqual(len(seen.events), delivered)
                else:
                    self.assertEqual(store.index, before + 1)
                    self.assertEqual(
                        (event.index, event.etcd_index), (store.index,) * 2
                    )
                    if (
                        not event.node.key.startswith("/_")
                        and "/_" not in event.node.key
                    ):
                        self.assertIs(seen.events[-1], event)
                if not isinstance(watcher, Event):
                    watcher.cancel()
            self.assertEqual(store.watcher_count, 0)
            root = store.get("/", now, recursive=True).node
            self.assertLessEqual(max(_indices(root)), store.index)
            oldest = max(1, store.index - 999)
            found = store.watch("/", True, oldest, now, Recorder())
            if isinstance(found, Event):
                self.assertGreaterEqual(found.index, oldest)
            else:
                found.cancel()
