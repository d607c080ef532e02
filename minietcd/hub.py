# -*- test-case-name: tests.minietcd.test_watch_hub -*-
"""Watchers and the event history: etcd v2's C{watcherHub} and C{EventHistory}.

The history keeps the last 1000 events of the whole store (one per index, TTL
refreshes and expiries included). Watchers are kept per watched key, so an event
reaches its watchers by looking up each prefix of its key: the cost is the depth
of the key plus the watchers that fire, not the number of watchers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from itertools import islice

from attrs import define, field

from minietcd.errors import EVENT_INDEX_CLEARED, EtcdError
from minietcd.events import Event

HISTORY_SIZE = 1000


@define(eq=False)
class Watcher:
    """A registered watch; C{cancel()} unregisters it (idempotent).

    A watch that is not a stream fires once: it is unregistered before its
    callback runs.
    """

    key: str
    recursive: bool
    stream: bool
    since_index: int
    callback: Callable[[Event], object]
    _hub: WatcherHub

    def cancel(self) -> None:
        """Stop watching; the callback is not called any more."""
        self._hub.unregister(self)


def _raise(error: BaseException) -> None:
    raise error


@define(eq=False)
class WatcherHub:
    """The watchers of one store and its event history.

    C{start_index} events that never match (etcd's internal writes) fill the
    history at first. C{on_error} receives exceptions raised by watcher callbacks.
    """

    start_index: int
    on_error: Callable[[BaseException], None] = _raise
    count: int = field(init=False, default=0)
    _history: deque[Event | None] = field(init=False)
    _watchers: dict[str, dict[Watcher, None]] = field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        filler = min(self.start_index, HISTORY_SIZE)  # a large start index is cheap
        self._history = deque([None] * filler, maxlen=HISTORY_SIZE)

    def scan(self, key: str, recursive: bool, since: int, current: int) -> Event | None:
        """The first event at or after C{since} that a watch of C{key} matches.

        Raises 401 if C{since} is older than the history. Copies etcd's quirks:
        no hidden-key filter, and a dir delete/expire matches any key starting
        with the dir's key as a string (C{/w} matches C{/w2x}).
        """
        history = self._history
        first = current - len(history) + 1 if history else 0
        if since < first:
            raise EtcdError(
                EVENT_INDEX_CLEARED,
                f"the requested history has been cleared [{first}/{since}]",
                current,
            )
        if since > current:
            return None
        prefix = key if key.endswith("/") else key + "/"
        for event in islice(history, since - first, None):
            if event is None or event.refresh:
                continue
            event_key = event.node.key
            if event_key == key or (recursive and event_key.startswith(prefix)):
                return event
            prev = event.prev_node
            if (
                prev is not None
                and prev.dir
                and event.action in ("delete", "expire")
                and key.startswith(prev.key)
            ):
                return event
        return None

    def register(
        self,
        key: str,
        recursive: bool,
        stream: bool,
        since: int,
        callback: Callable[[Event], object],
    ) -> Watcher:
        """Watch C{key} for events from index C{since} on."""
        watcher = Watcher(key, recursive, stream, since, callback, self)
        listeners = self._watchers.get(key)
        if listeners is None:
            listeners = self._watchers[key] = {}
        listeners[watcher] = None
        self.count += 1
        return watcher

    def unregister(self, watcher: Watcher) -> None:
        """Forget C{watcher} (nothing happens if it is already gone)."""
        listeners = self._watchers.get(watcher.key)
        if listeners is not None and listeners.pop(watcher, False) is None:
            self.count -= 1
            if not listeners:
                del self._watchers[watcher.key]

    def publish(self, event: Event) -> None:
        """Record C{event} and, unless it is a refresh, tell the watchers of its
        key and of every directory above it."""
        self._history.append(event)
        if event.refresh or not self._watchers:
            return
        key = event.node.key
        self.notify(event, "/", False)
        start = 1
        while start < len(key):
            end = key.find("/", start)
            if end == -1:
                self.notify(event, key, False)
                break
            self.notify(event, key[:end], False)
            start = end + 1

    def watched_paths(self, path: str, subtree: bool) -> list[str]:
        """The watched keys that are C{path} or (C{subtree}) below it, deepest first."""
        if not self._watchers:
            return []
        if not subtree:
            return [path] if path in self._watchers else []
        prefix = path + "/"
        paths = [p for p in self._watchers if p == path or p.startswith(prefix)]
        paths.sort(key=len, reverse=True)
        return paths

    def notify(self, event: Event, path: str, deleted: bool) -> None:
        """Fire the watchers of C{path} that C{event} concerns.

        C{deleted} says C{path} was removed with a deleted or expired directory
        (its watchers then get the directory's event whatever they watch).
        """
        listeners = self._watchers.get(path)
        if not listeners:
            return
        key = event.node.key
        original = key == path
        if not original and len(path) <= len(key) and "/_" in "/" + key[len(path) :]:
            return  # a hidden node below the watched path
        index = event.index
        wanted = original or deleted
        fired = [
            watcher
            for watcher in listeners
            if (wanted or watcher.recursive) and index >= watcher.since_index
        ]
        if not fired:
            return
        if len(fired) == len(listeners):
            # All fire (the usual case): drop the path's watchers at once and
            # keep only the streams.
            streams = {watcher: None for watcher in fired if watcher.stream}
            if streams:
                self._watchers[path] = streams
            else:
                del self._watchers[path]
            self.count -= len(fired) - len(streams)
        else:
            for watcher in fired:
                if not watcher.stream:
                    del listeners[watcher]
                    self.count -= 1
        error: BaseException | None = None
        for watcher in fired:
            try:
                watcher.callback(event)
            except Exception as exc:
                if error is None:
                    error = exc
        if error is not None:
            self.on_error(error)
