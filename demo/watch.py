"""What each node says about the cluster, followed live over its event stream.

Every node serves ``GET /events`` (Server-Sent Events): its status document at once,
again on every change (a member added or removed, a new master) and every second.
One thread per node reads that stream and puts the latest L{NodeView} on the
L{Board}; the demo waits on the board and measures when a condition first held.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import frozen

STREAM_TIMEOUT = 5.0
"""Seconds without a byte before the stream counts as broken (nodes push every 1 s)."""

RETRY_PAUSE = 0.05
"""Seconds between connection attempts (a node is just starting, or went away)."""


@frozen
class NodeView:
    """One node's status document, reduced to what the demo shows and checks.

    @ivar members: the ids of the other nodes it sees, in its order.
    @ivar claimants: those of them that say they are master.
    @ivar started_at: when the node started, in epoch seconds (its clock).
    @ivar received: C{time.monotonic()} here when the document arrived.
    @ivar election: its election's mode, C{"lease"} or C{"node-discover"}.
    @ivar epoch: under the lease, the master's fencing epoch as it knows it.
    @ivar owners: the ids its ownership view spreads keys over.
    @ivar documents: what its advertisement says it stores (L{demo.docstore}), if
        it says.
    @ivar handoff: how many documents it still has to hand on to their new owner.
    """

    id: str
    is_master: bool
    master: str | None
    members: tuple[str, ...]
    claimants: frozenset[str]
    registry: str
    address: str
    started_at: float
    received: float
    election: str = "node-discover"
    epoch: int | None = None
    owners: frozenset[str] = frozenset()
    documents: int | None = None
    handoff: int = 0

    @classmethod
    def parse(cls, document: Any, received: float) -> NodeView:
        """Read a status document; ValueError if it is not one."""
        try:
            me = document["self"]
            members = document["members"]
            master = document["master"]
            registry = document.get("registry") or {}
            election = document.get("election") or {}
            epoch = election.get("masterEpoch")
            ownership = document.get("ownership") or {}
            shown = me.get("advertisement")
            shown = shown if isinstance(shown, dict) else {}
            view = cls(
                id=str(me["id"]),
                is_master=me["isMaster"] is True,
                master=None if master is None else str(master),
                members=tuple(str(m["id"]) for m in members),
                claimants=frozenset(str(m["id"]) for m in members if m["isMaster"]),
                registry=str(registry.get("state", "none")),
                address=f"{me['address']}:{me['port']}",
                started_at=float(me["startedAt"]),
                received=received,
                election=str(election.get("mode", "node-discover")),
                epoch=epoch if isinstance(epoch, int) else None,
                owners=frozenset(str(o["id"]) for o in ownership.get("owners", ())),
                documents=_count(shown.get("documents")),
                handoff=_count(shown.get("handoff")) or 0,
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not a status document: {e!r}") from e
        return view


def _count(value: object) -> int | None:
    """A count from an advertisement: a non-negative int, else None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def agreed_master(views: Sequence[NodeView]) -> str | None:
    """The master every view names, when it alone claims it and all agree; else None."""
    if not views:
        return None
    names = {v.master for v in views}
    if len(names) != 1:
        return None
    (master,) = names
    if master is None:
        return None
    if [v.id for v in views if v.is_master] != [master]:
        return None
    if any(v.claimants - {master} for v in views):
        return None
    return master


def all_see_each_other(views: Sequence[NodeView]) -> bool:
    """Whether every view sees exactly the other nodes of C{views}."""
    ids = {v.id for v in views}
    return len(ids) == len(views) and all(set(v.members) == ids - {v.id} for v in views)


class Board:
    """The latest view of every node, and a way to wait for the next change."""

    def __init__(self) -> None:
        self._views: dict[str, NodeView | None] = {}
        self._changed = threading.Condition()
        self._version = 0

    def put(self, name: str, view: NodeView | None) -> None:
        """Record what node C{name} says now (None: it does not answer)."""
        with self._changed:
            self._views[name] = view
            self._version += 1
            self._changed.notify_all()

    def views(self) -> dict[str, NodeView | None]:
        """A copy of the latest views; a node never heard from is absent."""
        with self._changed:
            return dict(self._views)

    @property
    def version(self) -> int:
        """A number that grows with every update."""
        with self._changed:
            return self._version

    def wait(self, seen: int, timeout: float) -> int:
        """Wait until an update after version C{seen} or C{timeout}; the version."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != seen, timeout)
            return self._version


class StatusWatcher(threading.Thread):
    """Reads one node's event stream and posts every document to the board."""

    def __init__(
        self,
        name: str,
        port: int,
        board: Board,
        alive: Callable[[], bool],
    ) -> None:
        super().__init__(name=f"watch-{name}", daemon=True)
        self.node = name
        self.port = port
        self.board = board
        self.alive = alive
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Stop reading (takes effect at the next event or reconnection)."""
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set() and self.alive():
            try:
                self._follow()
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if self.board.views().get(self.node) is not None:
                self.board.put(self.node, None)
            self._stopping.wait(RETRY_PAUSE)

    def _follow(self) -> None:
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=STREAM_TIMEOUT
        )
        try:
            connection.request("GET", "/events", headers=_STREAM_HEADERS)
            response = connection.getresponse()
            if response.status != 200:
                raise ValueError(f"/events answered {response.status}")
            data: list[str] = []
            while not self._stopping.is_set():
                raw = response.readline()
                if not raw:
                    return
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("data:"):
                    value = line[5:]
                    data.append(value[1:] if value.startswith(" ") else value)
                elif not line and data:
                    document = json.loads("\n".join(data))
                    data = []
                    self.board.put(
                        self.node, NodeView.parse(document, time.monotonic())
                    )
        finally:
            connection.close()


_STREAM_HEADERS: Mapping[str, str] = {"accept": "text/event-stream"}
