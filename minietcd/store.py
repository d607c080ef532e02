# -*- test-case-name: tests.minietcd.test_store -*-
"""The etcd v2 key space: a tree of nodes, one global index, TTLs, history, watchers.

This module is pure: no I/O, no clock. Every operation takes ``now`` (wall-clock epoch
seconds from the caller's clock) and either returns an L{Event} or raises an
L{EtcdError}. It follows etcd 3.4's ``v2store`` package branch by branch, including
its statistics quirks (a few failures count as successes there, and here too).

Keys are the user's keys (``/a/b``), without etcd's internal ``/1`` prefix; the root
directory renders without a key, as etcd's does after trimming that prefix.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import Factory, define, field

from minietcd.errors import (
    DIR_NOT_EMPTY,
    KEY_NOT_FOUND,
    NODE_EXIST,
    NOT_DIR,
    NOT_FILE,
    ROOT_READ_ONLY,
    TEST_FAILED,
    EtcdError,
)
from minietcd.events import Event, NodeView
from minietcd.hub import Watcher, WatcherHub
from minietcd.ttl import (
    MIN_EXPIRE_NS,
    NS,
    ExpiryQueue,
    expiration_for,
    to_ns,
    ttl_at,
)

__all__ = [
    "MIN_EXPIRE_NS",
    "NS",
    "to_ns",
    "Event",
    "NodeView",
    "Store",
    "StoreStats",
    "Watcher",
    "clean_key",
    "expiration_for",
    "ttl_at",
]


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
    #: Not in C{/v2/stats/store}, only in the metrics: how many of the gets were
    #: recursive, and how many watches were asked for (etcd counts both).
    recursive_gets: int = 0
    watch_requests: int = 0

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


def _raise(error: BaseException) -> None:
    raise error


@define(eq=False)
class Store:
    """An etcd v2 store: the key tree, the global index, TTLs, history and watchers.

    A fresh store is at index 3, like a fresh etcd 3.4, so the first write is index 4.
    C{on_watcher_error} receives exceptions raised by watcher callbacks once the
    operation that fired them is complete, so the store stays consistent either way
    (by default each is re-raised: the first ends the call, after the write).
    """

    start_index: int = 3
    stats: StoreStats = Factory(StoreStats.fresh_etcd)
    on_watcher_error: Callable[[BaseException], None] = _raise
    index: int = field(init=False)
    _root: _Node = field(init=False)
    _hub: WatcherHub = field(init=False)
    _expiries: ExpiryQueue[_Node] = field(init=False)
    _failures: list[BaseException] = field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        self.index = self.start_index
        self._root = _Node("/", "", None, 0, 0, children={})
        # Indices 1..start_index belong to etcd's internal writes: they count in the
        # history window but never match a user key.
        self._hub = WatcherHub(self.start_index, self._watcher_failed)
        self._expiries = ExpiryQueue(_still_expiring)

    def _watcher_failed(self, error: BaseException) -> None:
        self._failures.append(error)

    def _report_failures(self) -> None:
        """Hand the callbacks' exceptions to C{on_watcher_error}, now that the
        operation is complete (a raising handler can no longer cut it short)."""
        while self._failures:
            self.on_watcher_error(self._failures.pop(0))

    def _publish(self, event: Event) -> None:
        """Record and announce the event that completes a write."""
        self._hub.publish(event)
        self._report_failures()

    # -- reading -----------------------------------------------------------------

    @property
    def watcher_count(self) -> int:
        """How many watchers are registered."""
        return self._hub.count

    def node_count(self) -> tuple[int, int]:
        """How many files and how many directories (the root aside) there are,
        hidden ones included, as of the last expiry sweep."""
        files = dirs = 0
        pending = [self._root]
        while pending:
            children = pending.pop().children
            assert children is not None
            for child in children.values():
                if child.children is None:
                    files += 1
                else:
                    dirs += 1
                    pending.append(child)
        return files, dirs

    def get(
        self, key: str, now: float, *, recursive: bool = False, sorted: bool = False
    ) -> Event:
        """Read C{key}; a directory lists one level (or all, with C{recursive})."""
        now_ns = self._begin(now)
        key = clean_key(key)
        if recursive:
            self.stats.recursive_gets += 1
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
        expiration = expiration_for(ttl, now_ns)
        try:
            event = self._create(
                "set", key, dir, value, False, expiration, now_ns, refresh
            )
        except EtcdError:
            self.stats.sets_fail += 1
            raise
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
        expiration = expiration_for(ttl, now_ns)
        try:
            event = self._create("create", key, dir, value, unique, expiration, now_ns)
        except EtcdError:
            self.stats.create_fail += 1
            raise
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
        event = self._rewrite(
            node, "update", None if is_dir else value, ttl, now_ns, refresh
        )
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
        event = self._rewrite(node, "compareAndSwap", value, ttl, now_ns, refresh)
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
        if node.children is not None:
            if not dir:
                self.stats.delete_fail += 1
                raise EtcdError(NOT_FILE, key, self.index)
            if node.children and not recursive:
                self.stats.delete_fail += 1
                raise EtcdError(DIR_NOT_EMPTY, key, self.index)
        event = self._removal(node, "delete", now_ns)
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
        event = self._removal(node, "compareAndDelete", now_ns)
        self.stats.compare_and_delete_success += 1
        self._publish(event)
        return event

    # -- TTL ---------------------------------------------------------------------

    def expire(self, now: float) -> list[Event]:
        """Remove every node whose expiration is at or before C{now}."""
        now_ns = to_ns(now)
        events: list[Event] = []
        while True:
            node = self._expiries.pop_due(now_ns)
            if node is None:
                break
            event = self._removal(node, "expire", now_ns)
            self.stats.expire_count += 1
            self._hub.publish(event)
            events.append(event)
        self._report_failures()
        return events

    def next_expiry(self) -> float | None:
        """When the next node expires (epoch seconds), or L{None}."""
        expiration = self._expiries.next()
        return None if expiration is None else expiration / NS

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
        self.stats.watch_requests += 1
        key = clean_key(key)
        since = wait_index or self.index + 1
        found = self._hub.scan(key, recursive, since, self.index)
        if found is not None:
            return found
        return self._hub.register(key, recursive, stream, since, callback)

    # -- internals ---------------------------------------------------------------

    def _begin(self, now: float) -> int:
        """Sweep what has expired by C{now}; return C{now} in nanoseconds."""
        now_ns = to_ns(now)
        if self._expiries.due(now_ns):
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
        action: str,
        key: str,
        dir: bool,
        value: str,
        unique: bool,
        expiration: int | None,
        now_ns: int,
        refresh: bool = False,
    ) -> Event:
        """etcd's C{internalCreate}: a set replaces a file, a create never replaces.

        The caller publishes the event and counts stats.
        """
        replace = action == "set"
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
        return Event(action, view, prev, next_index, refresh)

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
        self._expiries.push(expiration, node)

    def _rewrite(
        self,
        node: _Node,
        action: str,
        value: str | None,
        ttl: int | None,
        now_ns: int,
        refresh: bool,
    ) -> Event:
        """Give an existing node a new value (None: a directory) and TTL, at the
        next index; the caller publishes the event and counts stats."""
        index = self.index + 1
        prev = self._view(node, now_ns, False, False, False)
        if value is not None:
            # etcd does not bump a directory's stored modifiedIndex on update.
            node.value = value
            node.modified_index = index
        self._set_expiration(node, expiration_for(ttl, now_ns))
        self.index = index
        expiration = node.expire_ns
        ttl_left = 0 if expiration is None else ttl_at(expiration, now_ns)
        view = NodeView(
            node.path,
            value,
            value is None,
            expiration,
            ttl_left,
            None,
            index,
            node.created_index,
        )
        return Event(action, view, prev, index, refresh)

    def _removal(self, node: _Node, action: str, now_ns: int) -> Event:
        """Remove C{node} (delete, compareAndDelete, expire) at the next index; the
        caller publishes the event and counts stats."""
        self.index += 1
        view = NodeView(
            node.path,
            dir=node.children is not None,
            modified_index=self.index,
            created_index=node.created_index,
        )
        prev = self._view(node, now_ns, False, False, False)
        event = Event(action, view, prev, self.index)
        self._remove(node, event)
        return event

    def _remove(self, node: _Node, event: Event) -> None:
        """Detach C{node}; tell watchers of it and of nodes below it (etcd's
        C{Remove} callback), deepest first."""
        base = node.path
        for path in self._hub.watched_paths(base, node.children is not None):
            if path == base or _find_below(node, path[len(base) + 1 :]):
                self._hub.notify(event, path, True)
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


def _view_key(view: NodeView) -> bytes:
    """Go orders keys by their bytes (not by code points, for keys not UTF-8)."""
    return view.key.encode("utf-8", "surrogateescape")


def _join(parent: str, name: str) -> str:
    return "/" + name if parent == "/" else parent + "/" + name


def _still_expiring(node: _Node, expiration: int) -> bool:
    return node.expire_ns == expiration and _alive(node)


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
