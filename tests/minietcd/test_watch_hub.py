"""The event history and live watcher matching of minietcd's store."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from minietcd.events import Event
from minietcd.hub import Watcher
from minietcd.store import Store
from tests.harness.etcdtesting import NOW, Recorder, error_of


class HistoryTests(SynchronousTestCase):
    """Watches answered from the last 1000 events."""

    def test_history_hit(self) -> None:
        """A waitIndex at or before the current index returns the first match."""
        store = Store()
        store.set("/a", "1", NOW)
        store.set("/b", "1", NOW)
        store.set("/a", "2", NOW)
        found = store.watch("/a", False, 5, NOW, Recorder())
        assert isinstance(found, Event)
        self.assertEqual((found.index, found.node.value), (6, "2"))
        self.assertEqual(store.watcher_count, 0)

    def test_recursive_history(self) -> None:
        """A recursive history watch matches keys below the watched dir."""
        store = Store()
        store.set("/d/x/y", "1", NOW)
        found = store.watch("/d", True, 1, NOW, Recorder())
        assert isinstance(found, Event)
        self.assertEqual(found.node.key, "/d/x/y")

    def test_refresh_is_skipped(self) -> None:
        """Refresh events are in the history but never match."""
        store = Store()
        store.set("/a", "1", NOW, ttl=10)
        store.update("/a", "", NOW, ttl=10, refresh=True)
        self.assertIsInstance(store.watch("/a", False, 5, NOW, Recorder()), Watcher)

    def test_window_of_1000_events(self) -> None:
        """Only the last 1000 indices are kept: older waitIndex is 401."""
        store = Store()
        for i in range(1200):
            store.set("/k", str(i), NOW)
        current = store.index
        self.assertEqual(current, 1203)
        oldest = current - 999
        self.assertIsInstance(store.watch("/k", False, oldest, NOW, Recorder()), Event)
        error = error_of(
            self, store.watch, "/other", False, oldest - 1, NOW, Recorder()
        )
        self.assertEqual((error.code, error.status, error.index), (401, 400, current))
        self.assertEqual(
            error.message, "The event in requested index is outdated and cleared"
        )
        self.assertEqual(
            error.cause,
            f"the requested history has been cleared [{oldest}/{oldest - 1}]",
        )

    def test_bootstrap_indices_count_in_the_window(self) -> None:
        """Indices 1-3 count in the window, so index 1 is answerable until 1001."""
        store = Store()
        for _ in range(997):
            store.set("/k", "v", NOW)
        self.assertEqual(store.index, 1000)
        self.assertIsInstance(store.watch("/z", False, 1, NOW, Recorder()), Watcher)
        store.set("/k", "v", NOW)
        self.assertEqual(
            error_of(self, store.watch, "/z", False, 1, NOW, Recorder()).code, 401
        )

    def test_quirks_are_copied(self) -> None:
        """etcd's history-scan quirks are copied: no hidden filter, dir prefixes."""
        # A dir delete matches keys that merely start with the dir's key as a string.
        store = Store()
        store.set("/w/_hidden", "1", NOW)
        found = store.watch("/w", True, 4, NOW, Recorder())
        assert isinstance(found, Event)
        self.assertEqual(found.node.key, "/w/_hidden")
        store.delete("/w", NOW, recursive=True)
        found = store.watch("/w2x", False, 5, NOW, Recorder())
        assert isinstance(found, Event)
        self.assertEqual((found.action, found.node.key), ("delete", "/w"))

    def test_future_wait_index_registers(self) -> None:
        """A waitIndex after the current index waits for that index."""
        store = Store()
        seen = Recorder()
        watcher = store.watch("/a", False, 6, NOW, seen)
        self.assertIsInstance(watcher, Watcher)
        store.set("/a", "1", NOW)
        store.set("/a", "2", NOW)
        self.assertEqual([e.index for e in seen.events], [])
        store.set("/a", "3", NOW)
        self.assertEqual([e.index for e in seen.events], [6])


class WatchTests(SynchronousTestCase):
    """Live watcher matching, as etcd's watcher hub does it."""

    def setUp(self) -> None:
        self.store = Store()

    def watch(
        self, key: str, recursive: bool = False, stream: bool = False
    ) -> Recorder:
        seen = Recorder()
        result = self.store.watch(key, recursive, 0, NOW, seen, stream=stream)
        self.assertIsInstance(result, Watcher)
        return seen

    def test_exact_key_fires_once(self) -> None:
        """A watcher fires on its key's next change and is then gone."""
        seen = self.watch("/a")
        self.assertEqual(self.store.watcher_count, 1)
        self.store.set("/b", "1", NOW)
        self.store.set("/a", "1", NOW)
        self.store.set("/a", "2", NOW)
        self.assertEqual(seen.actions, [("set", "/a")])
        self.assertEqual(self.store.watcher_count, 0)

    def test_recursive(self) -> None:
        """A recursive watcher fires for keys anywhere below its dir."""
        seen = self.watch("/d", recursive=True)
        self.store.set("/dx", "1", NOW)
        self.store.set("/d/x/y", "1", NOW)
        self.assertEqual(seen.actions, [("set", "/d/x/y")])

    def test_non_recursive_dir_watch_ignores_children(self) -> None:
        """A non-recursive watch on a dir fires only for the dir itself."""
        self.store.set("/d", "", NOW, dir=True)
        seen = self.watch("/d")
        self.store.set("/d/child", "1", NOW)
        self.assertEqual(seen.events, [])
        self.store.update("/d", "", NOW, ttl=5)
        self.assertEqual(seen.actions, [("update", "/d")])

    def test_dir_delete_reaches_watchers_inside(self) -> None:
        """Deleting a dir delivers the dir's event to watchers of keys inside it."""
        self.store.set("/d/a/b", "1", NOW)
        inside = self.watch("/d/a/b")
        hidden = self.watch("/d/_h")
        self.store.set("/d/_h", "1", NOW)
        hidden_again = self.watch("/d/_h")
        absent = self.watch("/d/none")
        self.store.delete("/d", NOW, recursive=True)
        self.assertEqual(inside.actions, [("delete", "/d")])
        self.assertEqual(hidden.actions, [("set", "/d/_h")])
        self.assertEqual(hidden_again.actions, [("delete", "/d")])
        self.assertEqual(absent.events, [])
        self.assertEqual(self.store.watcher_count, 1)

    def test_dir_expiry_reaches_watchers_inside(self) -> None:
        """An expiring dir delivers its expire event to watchers inside it."""
        self.store.set("/d", "", NOW, dir=True, ttl=1)
        self.store.set("/d/k", "1", NOW)
        inside = self.watch("/d/k")
        above = self.watch("/", recursive=True)
        self.store.expire(NOW + 1)
        self.assertEqual(inside.actions, [("expire", "/d")])
        self.assertEqual(above.actions, [("expire", "/d")])

    def test_hidden_below_a_recursive_watch(self) -> None:
        """A recursive watcher skips hidden nodes below it, and only those."""
        # The hidden key itself and a watch inside the hidden dir still fire.
        above = self.watch("/", recursive=True)
        itself = self.watch("/_h/k")
        inside = self.watch("/_h", recursive=True)
        self.store.set("/_h/k", "1", NOW)
        self.assertEqual(above.events, [])
        self.assertEqual(itself.actions, [("set", "/_h/k")])
        self.assertEqual(inside.actions, [("set", "/_h/k")])

    def test_refresh_never_fires(self) -> None:
        """A TTL refresh does not wake watchers."""
        self.store.set("/a", "1", NOW, ttl=5)
        seen = self.watch("/a")
        self.store.update("/a", "", NOW, ttl=5, refresh=True)
        self.store.compare_and_swap("/a", "", NOW, prev_value="1", ttl=5, refresh=True)
        self.store.set("/a", "", NOW, ttl=5, refresh=True)
        self.assertEqual(seen.events, [])
        self.assertEqual(self.store.watcher_count, 1)

    def test_stream_watcher_stays_and_sees_deletes_twice(self) -> None:
        """A stream watcher stays, and gets a delete of its key twice, as etcd's."""
        # Once as a removed node, once as the event's own key.
        seen = self.watch("/a", stream=True)
        self.store.set("/a", "1", NOW)
        self.store.set("/a", "2", NOW)
        self.store.delete("/a", NOW)
        self.assertEqual(
            seen.actions,
            [("set", "/a"), ("set", "/a"), ("delete", "/a"), ("delete", "/a")],
        )
        self.assertEqual(self.store.watcher_count, 1)

    def test_cancel(self) -> None:
        """cancel() unregisters a watcher, once, and it hears nothing more."""
        seen = Recorder()
        watcher = self.store.watch("/a", False, 0, NOW, seen)
        assert isinstance(watcher, Watcher)
        watcher.cancel()
        watcher.cancel()
        self.assertEqual(self.store.watcher_count, 0)
        self.store.set("/a", "1", NOW)
        self.assertEqual(seen.events, [])

    def test_streams_stay_when_every_watcher_fires(self) -> None:
        """When all of a key's watchers fire, the polls leave and the streams stay."""
        first = self.watch("/a")
        stream = self.watch("/a", stream=True)
        last = self.watch("/a")
        self.store.set("/a", "1", NOW)
        self.assertEqual(self.store.watcher_count, 1)
        again = self.watch("/a")
        self.store.set("/a", "2", NOW)
        self.assertEqual(
            [len(r.events) for r in (first, stream, last, again)], [1, 2, 1, 1]
        )
        self.assertEqual(self.store.watcher_count, 1)

    def test_only_the_watchers_that_fire_leave(self) -> None:
        """A watcher waiting for a later index stays while the others on its key go."""
        waiting = Recorder()
        self.assertIsInstance(self.store.watch("/a", False, 6, NOW, waiting), Watcher)
        now = self.watch("/a")
        stream = self.watch("/a", stream=True)
        self.store.set("/a", "1", NOW)
        self.assertEqual(self.store.watcher_count, 2)
        self.store.set("/a", "2", NOW)
        self.store.set("/a", "3", NOW)
        self.assertEqual(
            ([e.index for e in waiting.events], len(now.events), len(stream.events)),
            ([6], 1, 3),
        )
        self.assertEqual(self.store.watcher_count, 1)

    def test_cancel_after_firing_changes_nothing(self) -> None:
        """Cancelling a watcher that has fired leaves the key's new watchers be."""
        fired = self.store.watch("/a", False, 0, NOW, Recorder())
        assert isinstance(fired, Watcher)
        self.store.set("/a", "1", NOW)
        later = self.watch("/a")
        fired.cancel()
        self.assertEqual(self.store.watcher_count, 1)
        self.store.set("/a", "2", NOW)
        self.assertEqual(later.actions, [("set", "/a")])
        self.assertEqual(self.store.watcher_count, 0)

    def test_watch_again_from_the_callback(self) -> None:
        """A callback that watches its key again waits for the next event."""
        seen: list[int] = []

        def again(event: Event) -> None:
            seen.append(event.index)
            if len(seen) < 3:
                self.store.watch("/a", False, event.index + 1, NOW, again)

        self.store.watch("/a", False, 0, NOW, again)
        for value in ("1", "2", "3", "4"):
            self.store.set("/a", value, NOW)
        self.assertEqual(seen, [4, 5, 6])
        self.assertEqual(self.store.watcher_count, 0)

    def test_many_watchers_one_event(self) -> None:
        """A thousand watchers on one key all get the same event object."""
        recorders = [self.watch("/hot") for _ in range(1000)]
        self.store.set("/hot", "1", NOW)
        events = {id(r.events[0]) for r in recorders}
        self.assertEqual(len(events), 1)
        self.assertEqual(self.store.watcher_count, 0)

    def test_failing_callback_does_not_break_the_store(self) -> None:
        """A callback that raises is reported; other watchers and the write proceed."""
        reported: list[BaseException] = []
        store = Store(on_watcher_error=reported.append)

        def broken(event: Event) -> None:
            raise RuntimeError("boom")

        store.watch("/a", False, 0, NOW, broken)
        seen = Recorder()
        store.watch("/a", False, 0, NOW, seen)
        store.set("/a", "1", NOW)
        self.assertEqual(len(seen.events), 1)
        self.assertEqual([str(e) for e in reported], ["boom"])
        self.assertEqual(store.get("/a", NOW).node.value, "1")

    def test_default_error_handler_raises_after_the_delete_completes(self) -> None:
        """With the default handler a callback's exception is raised, but only once
        a recursive delete has told every watcher and detached the whole dir."""
        store = Store()

        def broken(event: Event) -> None:
            raise RuntimeError("boom")

        store.set("/d/x", "1", NOW)
        store.set("/d/y", "2", NOW)
        store.watch("/d/x", False, 0, NOW, broken)
        below, on_dir = Recorder(), Recorder()
        store.watch("/d/y", False, 0, NOW, below)
        store.watch("/d", False, 0, NOW, on_dir)
        index = store.index
        self.assertRaises(RuntimeError, store.delete, "/d", NOW, recursive=True)
        self.assertEqual(store.index, index + 1)
        actions = [e.action for e in below.events + on_dir.events]
        self.assertEqual(actions, ["delete", "delete"])
        self.assertEqual(store.watcher_count, 0)
        self.assertEqual(error_of(self, store.get, "/d/y", NOW).code, 100)

    def test_default_error_handler_raises_after_every_expiry(self) -> None:
        """Keys due together all expire even when a watcher of the first raises."""
        store = Store()
        store.set("/a", "1", NOW, ttl=1)
        store.set("/b", "2", NOW, ttl=1)

        def broken(event: Event) -> None:
            raise RuntimeError("boom")

        store.watch("/a", False, 0, NOW, broken)
        self.assertRaises(RuntimeError, store.expire, NOW + 2)
        self.assertEqual(store.get("/", NOW + 2).node.nodes, [])
        self.assertEqual(store.expire(NOW + 3), [])
