# -*- test-case-name: tests.test_store -*-
"""The etcd v2 key space: a tree of nodes, one global index, TTLs, history, watchers.

This module is pure: no I/O, no clock. Every operation takes ``now`` (wall-clock epoch
seconds from the caller's clock) and either returns an L{Event} or raises an
L{EtcdError}. It follows etcd 3.4's ``v2store`` package branch by branch, including
its statistics quirks (a few failures count as successes there, and here too).

Keys are the user's keys (``/a/b``), without etcd's internal ``/1`` prefix; the root
directory renders without a key, as etcd's does after trimming that prefix.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from itertools import islice

from attrs import Factory, define, field, frozen

from minietcd.errors import (
    DIR_NOT_EMPTY,
    EVENT_INDEX_CLEARED,
    KEY_NOT_FOUND,
    NODE_EXIST,
    NOT_DIR,
    NOT_FILE,
    ROOT_READ_ONLY,
    TEST_FAILED,
    EtcdError,
)

NS = 1_000_000_000
#: etcd treats expiration times before 2000-01-01T00:00:00Z as "no TTL" on create/set.
MIN_EXPIRE_NS = 946_684_800 * NS
HISTORY_SIZE = 1000
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def _int64(value: int) -> int:
    """Wrap C{value} into a signed 64-bit integer, as Go's arithmetic does."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= (1 << 63) else value


def to_ns(now: float) -> int:
    """Epoch seconds as integer nanoseconds."""
    return round(now * NS)


def clean_key(key: str) -> str:
    """Go's C{path.Clean(path.Join("/", key))}: rooted, no empty/C{.}/C{..} parts."""
    if (
        key.startswith("/")
        and "//" not in key
        and "/." not in key
        and (len(key) == 1 or not key.endswith("/"))
    ):
        return key
    parts: list[str] = []
    for part in key.split("/"):
        if part == "" or part == ".":
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def expiration_for(ttl: int | None, now_ns: int) -> int | None:
    """The expiration etcd computes for C{ttl} seconds from C{now_ns}, or L{None}.

    Go converts the unsigned TTL to a signed C{Duration} and multiplies by a second,
    both wrapping at 64 bits; huge TTLs therefore land in the past (or wrap to
    "no TTL" on create), exactly as they do in etcd 3.4.
    """
    if ttl is None:
        return None
    expiration = _int64(now_ns + _int64(_int64(ttl) * NS))
    return None if expiration == 0 else expiration


def ttl_at(expiration_ns: int, now_ns: int) -> int:
    """Seconds left, rounded up (Go: truncate, then +1 for a positive remainder)."""
    remaining = max(_INT64_MIN, min(_INT64_MAX, expiration_ns - now_ns))
    return -(-remaining // NS)


@frozen
class NodeView:
    """A node as etcd renders it (its C{NodeExtern}); None/0/empty fields are omitted.

    C{expiration} is in epoch nanoseconds; C{value} is L{None} for directories.
    """

    key: str
    value: str | None = None
    dir: bool = False
    expiration: int | None = None
    ttl: int = 0
    nodes: list[NodeView] | None = None
    modified_index: int = 0
    created_index: int = 0


@frozen
class Event:
    """The result of an operation, and what watchers receive.

    C{etcd_index} is the store index to report in C{X-Etcd-Index} for this response;
    C{refresh} marks TTL refreshes, which are recorded but never delivered.
    """

    action: str
    node: NodeView
    prev_node: NodeView | None = None
    etcd_index: int = 0
    refresh: bool = False

    @property
    def index(self) -> int:
        """The index of the change, as etcd's C{Event.Index()}."""
        return self.node.modified_index

    @property
    def created(self) -> bool:
        """Whether etcd answers this event with 201 Created."""
        return self.action == "create" or (
            self.action == "set" and self.prev_node is None
        )


@define
class StoreStats:
    """The counters of C{/v2/stats/store}, with etcd's own accounting."""

    gets_success: int = 0
    gets_fail: int = 0
    sets_success: int = 0
    sets_fail: int = 0
    delete_success: int = 0
    delete_fail: int = 0
    update_success: int = 0
    update_fail: int = 0
    create_success: int = 0
    create_fail: int = 0
    compare_and_swap_success: int = 0
    compare_and_swap_fail: int = 0
    compare_and_delete_success: int = 0
    compare_and_delete_fail: int = 0
    expire_count: int = 0

    @classmethod
    def fresh_etcd(cls) -> StoreStats:
        """The counters of a just-bootstrapped single-node etcd 3.4.

        Its three internal writes (add member, publish attributes, set cluster
        version) are indices 1-3, and one failed read happens while it starts.
        """
        return cls(gets_fail=1, sets_success=2, create_success=1)


@define(eq=False)
class _Node:
    path: str
    name: str
    parent: _Node | None
    created_index: int
    modified_index: int
    value: str = ""
    #: L{None} for a file; a dict (possibly empty) for a directory.
    children: dict[str, _Node] | None = None
    expire_ns: int | None = None
    removed: bool = False


@define(eq=False)
class Watcher:
    """A registered watch; C{cancel()} unregisters it (idempotent)."""

    key: str
    recursive: bool
    stream: bool
    since_index: int
    callback: Callable[[Event], object]
    _store: Store
    removed: bool = False

    def cancel(self) -> None:
        """Stop watching; the callback is not called any more."""
        self._store._unregister(self)


def _raise(error: BaseException) -> None:
    raise error


@define(eq=False)
class Store:
    """An etcd v2 store: the key tree, the global index, TTLs, history and watchers.

    A fresh store is at index 3, like a fresh etcd 3.4, so the first write is index 4.
    C{on_watcher_error} receives exceptions raised by watcher callbacks (the store
    stays consistent either way; by default the first one is re-raised).
    """

    start_index: int = 3
    stats: StoreStats = Factory(StoreStats.fresh_etcd)
    on_watcher_error: Callable[[BaseException], None] = _raise
    index: int = field(init=False)
    _root: _Node = field(init=False)
    _history: deque[Event | None] = field(init=False)
    _watchers: dict[str, dict[Watcher, None]] = field(init=False, factory=dict)
    _watcher_count: int = field(init=False, default=0)
    _heap: list[tuple[int, int, _Node]] = field(init=False, factory=list)
    _heap_seq: int = field(init=False, default=0)
    _heap_compacted: int = field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self.index = self.start_index
        self._root = _Node("/", "", None, 0, 0, children={})
        # Indices 1..start_index belong to etcd's internal writes: they count in the
        # history window but never match a user key.
        self._history = deque([None] * self.start_index, maxlen=HISTORY_SIZE)

    # -- reading -----------------------------------------------------------------

    @property
    def watcher_count(self) -> int:
        """How many watchers are registered."""
        return self._watcher_count

    def get(
        self, key: str, now: float, *, recursive: bool = False, sorted: bool = False
    ) -> Event:
        """Read C{key}; a directory lists one level (or all, with C{recursive})."""
        now_ns = self._begin(now)
        key = clean_key(key)
        try:
            node = self._lookup(key)
        except EtcdError:
            self.stats.gets_fail += 1
            raise
        self.stats.gets_success += 1
        view = self._view(node, now_ns, True, recursive, sorted)
        return Event("get", view, None, self.index)

    # -- writing -----------------------------------------------------------------

    def set(
        self,
        key: str,
        value: str,
        now: float,
        *,
        dir: bool = False,
        ttl: int | None = None,
        refresh: bool = False,
    ) -> Event:
        """Create or replace C{key} (a file, or a directory with C{dir})."""
        now_ns = self._begin(now)
        key = clean_key(key)
        try:
            existing: _Node | None = self._lookup(key)
        except EtcdError as error:
            if error.code != KEY_NOT_FOUND or refresh:
                self.stats.sets_fail += 1
                raise
            existing = None
        if refresh and existing is not None:
            value = existing.value
        try:
            event = self._create(
                key, dir, value, False, True, expiration_for(ttl, now_ns), now_ns
            )
        except EtcdError:
            self.stats.sets_fail += 1
            raise
        event = Event("set", event.node, event.prev_node, self.index, refresh)
        self.stats.sets_success += 1
        self._publish(event)
        return event

    def create(
        self,
        key: str,
        value: str,
        now: float,
        *,
        dir: bool = False,
        ttl: int | None = None,
        unique: bool = False,
    ) -> Event:
        """Create C{key}, failing if it exists; C{unique} appends an in-order name."""
        now_ns = self._begin(now)
        try:
            event = self._create(
                key, dir, value, unique, False, expiration_for(ttl, now_ns), now_ns
            )
        except EtcdError:
            self.stats.create_fail += 1
            raise
        event = Event("create", event.node, None, self.index)
        self.stats.create_success += 1
        self._publish(event)
        return event

    def update(
        self,
        key: str,
        value: str,
        now: float,
        *,
        ttl: int | None = None,
        refresh: bool = False,
    ) -> Event:
        """Change an existing node's value and TTL (no C{ttl} removes the TTL)."""
        now_ns = self._begin(now)
        key = clean_key(key)
        if key == "/":
            self.stats.update_success += 1  # etcd counts this failure as a success
            raise EtcdError(ROOT_READ_ONLY, "/", self.index)
        next_index = self.index + 1
        try:
            node = self._lookup(key)
        except EtcdError:
            self.stats.update_fail += 1
            raise
        is_dir = node.children is not None
        if is_dir and value:
            self.stats.update_success += 1  # etcd counts this failure as a success
            raise EtcdError(NOT_FILE, key, self.index)
        if refresh:
            value = node.value
        prev = self._view(node, now_ns, False, False, False)
        if not is_dir:
            # etcd does not bump a directory's stored modifiedIndex on update.
            node.value = value
            node.modified_index = next_index
        self._set_expiration(node, expiration_for(ttl, now_ns))
        view = self._changed_view(
            node, key, None if is_dir else value, next_index, now_ns
        )
        self.index = next_index
        event = Event("update", view, prev, next_index, refresh)
        self.stats.update_success += 1
        self._publish(event)
        return event

    def compare_and_swap(
        self,
        key: str,
        value: str,
        now: float,
        *,
        prev_value: str = "",
        prev_index: int = 0,
        ttl: int | None = None,
        refresh: bool = False,
    ) -> Event:
        """Replace a file's value if it matches C{prev_value}/C{prev_index}."""
        now_ns = self._begin(now)
        key = clean_key(key)
        if key == "/":
            self.stats.compare_and_swap_success += 1  # sic, as etcd
            raise EtcdError(ROOT_READ_ONLY, "/", self.index)
        try:
            node = self._lookup(key)
        except EtcdError:
            self.stats.compare_and_swap_fail += 1
            raise
        if node.children is not None:
            self.stats.compare_and_swap_fail += 1
            raise EtcdError(NOT_FILE, key, self.index)
        cause = _compare(node, prev_value, prev_index)
        if cause is not None:
            self.stats.compare_and_swap_fail += 1
            raise EtcdError(TEST_FAILED, cause, self.index)
        if refresh:
            value = node.value
        self.index += 1
        prev = self._view(node, now_ns, False, False, False)
        node.value = value
        node.modified_index = self.index
        self._set_expiration(node, expiration_for(ttl, now_ns))
        view = self._changed_view(node, key, value, self.index, now_ns)
        event = Event("compareAndSwap", view, prev, self.index, refresh)
        self.stats.compare_and_swap_success += 1
        self._publish(event)
        return event

    def delete(
        self, key: str, now: float, *, dir: bool = False, recursive: bool = False
    ) -> Event:
        """Delete a file, an empty directory (C{dir}), or a subtree (C{recursive})."""
        now_ns = self._begin(now)
        key = clean_key(key)
        if key == "/":
            self.stats.delete_success += 1  # sic, as etcd
            raise EtcdError(ROOT_READ_ONLY, "/", self.index)
        dir = dir or recursive
        try:
            node = self._lookup(key)
        except EtcdError:
            self.stats.delete_fail += 1
            raise
        is_dir = node.children is not None
        if node.children is not None:
            if not dir:
                self.stats.delete_fail += 1
                raise EtcdError(NOT_FILE, key, self.index)
            if node.children and not recursive:
                self.stats.delete_fail += 1
                raise EtcdError(DIR_NOT_EMPTY, key, self.index)
        next_index = self.index + 1
        view = NodeView(
            key,
            dir=is_dir,
            modified_index=next_index,
            created_index=node.created_index,
        )
        prev = self._view(node, now_ns, False, False, False)
        event = Event("delete", view, prev, next_index)
        self._remove(node, event)
        self.index = next_index
        self.stats.delete_success += 1
        self._publish(event)
        return event

    def compare_and_delete(
        self, key: str, now: float, *, prev_value: str = "", prev_index: int = 0
    ) -> Event:
        """Delete a file if it matches C{prev_value}/C{prev_index}."""
        now_ns = self._begin(now)
        key = clean_key(key)
        try:
            node = self._lookup(key)
        except EtcdError:
            self.stats.compare_and_delete_fail += 1
            raise
        if node.children is not None:
            self.stats.compare_and_delete_success += 1  # sic, as etcd
            # etcd's cause is its internal root "/1", trimmed to nothing.
            raise EtcdError(NOT_FILE, "" if key == "/" else key, self.index)
        cause = _compare(node, prev_value, prev_index)
        if cause is not None:
            self.stats.compare_and_delete_success += 1  # sic, as etcd
            raise EtcdError(TEST_FAILED, cause, self.index)
        self.index += 1
        view = NodeView(
            key, modified_index=self.index, created_index=node.created_index
        )
        prev = self._view(node, now_ns, False, False, False)
        event = Event("compareAndDelete", view, prev, self.index)
        self._remove(node, event)
        self.stats.compare_and_delete_success += 1
        self._publish(event)
        return event

    # -- TTL ---------------------------------------------------------------------

    def expire(self, now: float) -> list[Event]:
        """Remove every node whose expiration is at or before C{now}."""
        now_ns = to_ns(now)
        events: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now_ns:
            expiration, _, node = heapq.heappop(heap)
            if node.expire_ns != expiration or not _alive(node):
                continue
            self.index += 1
            is_dir = node.children is not None
            view = NodeView(
                node.path,
                dir=is_dir,
                modified_index=self.index,
                created_index=node.created_index,
            )
            prev = self._view(node, now_ns, False, False, False)
            event = Event("expire", view, prev, self.index)
            self._remove(node, event)
            self.stats.expire_count += 1
            self._publish(event)
            events.append(event)
        return events

    def next_expiry(self) -> float | None:
        """When the next node expires (epoch seconds), or L{None}."""
        heap = self._heap
        while heap:
            expiration, _, node = heap[0]
            if node.expire_ns == expiration and _alive(node):
                return expiration / NS
            heapq.heappop(heap)
        return None

    # -- watching ----------------------------------------------------------------

    def watch(
        self,
        key: str,
        recursive: bool,
        wait_index: int,
        now: float,
        callback: Callable[[Event], object],
        *,
        stream: bool = False,
    ) -> Event | Watcher:
        """Return the first matching event since C{wait_index} from history, or
        register C{callback} for the next one and return its L{Watcher}.

        C{wait_index} 0 means "from the next index". Raises 401 when C{wait_index}
        is older than the last 1000 events. The history scan copies etcd's quirks:
        it does not filter hidden keys, and a directory delete/expire matches any key
        that starts with the directory's key as a string (C{/w} matches C{/w2x}).
        """
        self._begin(now)
        key = clean_key(key)
        since = wait_index or self.index + 1
        found = self._scan(key, recursive, since)
        if found is not None:
            return found
        watcher = Watcher(key, recursive, stream, since, callback, self)
        listeners = self._watchers.get(key)
        if listeners is None:
            listeners = self._watchers[key] = {}
        listeners[watcher] = None
        self._watcher_count += 1
        return watcher

    def _unregister(self, watcher: Watcher) -> None:
        if watcher.removed:
            return
        watcher.removed = True
        listeners = self._watchers.get(watcher.key)
        if listeners is not None and listeners.pop(watcher, False) is None:
            self._watcher_count -= 1
            if not listeners:
                del self._watchers[watcher.key]

    def _scan(self, key: str, recursive: bool, since: int) -> Event | None:
        history = self._history
        first = self.index - len(history) + 1 if history else 0
        if since < first:
            raise EtcdError(
                EVENT_INDEX_CLEARED,
                f"the requested history has been cleared [{first}/{since}]",
                self.index,
            )
        if since > self.index:
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

    def _publish(self, event: Event) -> None:
        """Record C{event} in the history and, unless a refresh, notify watchers."""
        self._history.append(event)
        if event.refresh or not self._watchers:
            return
        key = event.node.key
        self._notify_path(event, "/", False)
        start = 1
        while start < len(key):
            end = key.find("/", start)
            if end == -1:
                self._notify_path(event, key, False)
                break
            self._notify_path(event, key[:end], False)
            start = end + 1

    def _notify_path(self, event: Event, path: str, deleted: bool) -> None:
        listeners = self._watchers.get(path)
        if not listeners:
            return
        key = event.node.key
        original = key == path
        if not original and len(path) <= len(key) and "/_" in "/" + key[len(path) :]:
            return  # a hidden node below the watched path
        index = event.index
        fired: list[Watcher] = []
        wanted = original or deleted
        for watcher in listeners:
            if (wanted or watcher.recursive) and index >= watcher.since_index:
                fired.append(watcher)
        if not fired:
            return
        for watcher in fired:
            if not watcher.stream:
                watcher.removed = True
                del listeners[watcher]
                self._watcher_count -= 1
        if not listeners:
            del self._watchers[path]
        error: BaseException | None = None
        for watcher in fired:
            try:
                watcher.callback(event)
            except Exception as exc:
                if error is None:
                    error = exc
        if error is not None:
            self.on_watcher_error(error)

    # -- internals ---------------------------------------------------------------

    def _begin(self, now: float) -> int:
        """Sweep what has expired by C{now}; return C{now} in nanoseconds."""
        now_ns = to_ns(now)
        if self._heap and self._heap[0][0] <= now_ns:
            self.expire(now)
        return now_ns

    def _lookup(self, key: str) -> _Node:
        node = self._root
        if key == "/":
            return node
        for name in key[1:].split("/"):
            children = node.children
            if children is None:
                raise EtcdError(NOT_DIR, node.path, self.index)
            child = children.get(name)
            if child is None:
                raise EtcdError(KEY_NOT_FOUND, _join(node.path, name), self.index)
            node = child
        return node

    def _create(
        self,
        key: str,
        dir: bool,
        value: str,
        unique: bool,
        replace: bool,
        expiration: int | None,
        now_ns: int,
    ) -> Event:
        """etcd's C{internalCreate}; the caller publishes the event and counts stats."""
        current = self.index
        next_index = current + 1
        if unique:
            key = key + "/" + f"{next_index:020d}"
        key = clean_key(key)
        if key == "/":
            raise EtcdError(ROOT_READ_ONLY, "/", current)
        if expiration is not None and expiration < MIN_EXPIRE_NS:
            expiration = None
        parent_path, _, name = key.rpartition("/")
        parent = self._walk_create(parent_path, next_index)
        children = parent.children
        assert children is not None
        prev = None
        existing = children.get(name)
        if existing is not None:
            if not replace:
                raise EtcdError(NODE_EXIST, key, current)
            if existing.children is not None:
                raise EtcdError(NOT_FILE, key, current)
            prev = self._view(existing, now_ns, False, False, False)
            existing.removed = True
        node = _Node(
            key,
            name,
            parent,
            next_index,
            next_index,
            "" if dir else value,
            {} if dir else None,
        )
        children[name] = node
        ttl = 0
        if expiration is not None:
            self._set_expiration(node, expiration)
            ttl = ttl_at(expiration, now_ns)
        self.index = next_index
        view = NodeView(
            key,
            None if dir else value,
            dir,
            expiration,
            ttl,
            None,
            next_index,
            next_index,
        )
        return Event("", view, prev, next_index)

    def _walk_create(self, path: str, next_index: int) -> _Node:
        node = self._root
        if not path:
            return node
        for name in path[1:].split("/"):
            children = node.children
            assert children is not None
            child = children.get(name)
            if child is None:
                child = _Node(
                    _join(node.path, name),
                    name,
                    node,
                    next_index,
                    next_index,
                    children={},
                )
                children[name] = child
            elif child.children is None:
                self.stats.sets_fail += 1  # etcd counts a failed "set" here too
                raise EtcdError(NOT_DIR, child.path, self.index)
            node = child
        return node

    def _set_expiration(self, node: _Node, expiration: int | None) -> None:
        node.expire_ns = expiration
        if expiration is None:
            return
        self._heap_seq += 1
        heapq.heappush(self._heap, (expiration, self._heap_seq, node))
        if len(self._heap) > 64 and len(self._heap) > 2 * self._heap_compacted:
            self._heap = [
                entry
                for entry in self._heap
                if entry[2].expire_ns == entry[0] and _alive(entry[2])
            ]
            heapq.heapify(self._heap)
            self._heap_compacted = len(self._heap)

    def _remove(self, node: _Node, event: Event) -> None:
        """Detach C{node}; tell watchers of it and of nodes below it (etcd's
        C{Remove} callback), deepest first."""
        if self._watchers:
            base = node.path
            if node.children is None:
                paths = [base] if base in self._watchers else []
            else:
                prefix = base + "/"
                paths = [p for p in self._watchers if p == base or p.startswith(prefix)]
                paths.sort(key=len, reverse=True)
            for path in paths:
                if path == base or _find_below(node, path[len(base) + 1 :]):
                    self._notify_path(event, path, True)
        parent = node.parent
        if parent is not None and parent.children is not None:
            if parent.children.get(node.name) is node:
                del parent.children[node.name]
        node.removed = True

    def _view(
        self, node: _Node, now_ns: int, listing: bool, recursive: bool, sort: bool
    ) -> NodeView:
        """etcd's C{Repr} (C{listing=False}) or C{loadInternalNode} (C{True})."""
        root = self._make_view(node, now_ns, listing or recursive)
        if root.nodes is None:
            return root
        pending: list[tuple[_Node, NodeView]] = [(node, root)]
        while pending:
            parent, view = pending.pop()
            assert parent.children is not None and view.nodes is not None
            kids = view.nodes
            for child in parent.children.values():
                if child.name.startswith("_"):
                    continue
                child_view = self._make_view(child, now_ns, recursive)
                kids.append(child_view)
                if child_view.nodes is not None and child.children:
                    pending.append((child, child_view))
            if sort:
                kids.sort(key=_view_key)
        return root

    def _make_view(self, node: _Node, now_ns: int, listed: bool = False) -> NodeView:
        """One node; a directory gets a (still empty) C{nodes} list if C{listed}."""
        expiration = node.expire_ns
        ttl = 0 if expiration is None else ttl_at(expiration, now_ns)
        if node.children is None:
            return NodeView(
                node.path,
                node.value,
                False,
                expiration,
                ttl,
                None,
                node.modified_index,
                node.created_index,
            )
        return NodeView(
            "" if node is self._root else node.path,
            None,
            True,
            expiration,
            ttl,
            [] if listed else None,
            node.modified_index,
            node.created_index,
        )

    def _changed_view(
        self, node: _Node, key: str, value: str | None, index: int, now_ns: int
    ) -> NodeView:
        expiration = node.expire_ns
        ttl = 0 if expiration is None else ttl_at(expiration, now_ns)
        return NodeView(
            key,
            value,
            value is None,
            expiration,
            ttl,
            None,
            index,
            node.created_index,
        )


def _view_key(view: NodeView) -> str:
    return view.key


def _join(parent: str, name: str) -> str:
    return "/" + name if parent == "/" else parent + "/" + name


def _alive(node: _Node | None) -> bool:
    while node is not None:
        if node.removed:
            return False
        node = node.parent
    return True


def _find_below(node: _Node, relative: str) -> bool:
    for name in relative.split("/"):
        children = node.children
        if children is None or name not in children:
            return False
        node = children[name]
    return True


def _compare(node: _Node, prev_value: str, prev_index: int) -> str | None:
    """L{None} if C{node} matches, else etcd's compare-failure cause."""
    index_match = prev_index == 0 or node.modified_index == prev_index
    value_match = prev_value == "" or node.value == prev_value
    if index_match and value_match:
        return None
    if index_match:
        return f"[{prev_value} != {node.value}]"
    if value_match:
        return f"[{prev_index} != {node.modified_index}]"
    return f"[{prev_value} != {node.value}] [{prev_index} != {node.modified_index}]"
