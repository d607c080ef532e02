"""The application the key rotation test loads into real nodes with C{--app}.

    TICKAPP_SECONDS=12 TICKAPP_GO=/tmp/go \\
        twistd -n clusternode ... --app tests.harness.tickapp:install

Once the file C{TICKAPP_GO} names exists (at once if the variable is unset), the node
publishes C{1}, C{2}, C{3}, ... on the C{ticks} channel every C{TICKAPP_INTERVAL}
seconds (0.1 by default) for C{TICKAPP_SECONDS} seconds (0, the default, sends
nothing). It counts the ticks it hears from each sender, and its node's C{removed}
events. All of it is in its advertisement, so in every C{GET /status} as
C{self.advertisement}::

    {"ticks": {"started": bool, "done": bool, "sent": int,
               "heard": {sender id: distinct ticks heard},
               "duplicates": {sender id: ticks heard again},
               "highest": {sender id: highest tick heard},
               "removed": [member ids, one per event]}}

The advertisement is updated once a second when something changed, and at once when
the ticking starts and when it ends.
"""

from __future__ import annotations

import os
from typing import Any

from attrs import define, field
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twistednode import ClusterNode

CHANNEL = "ticks"
#: Seconds between two looks for the start file.
GO_POLL = 0.05
#: Seconds between two advertisement updates.
ADVERTISE_EVERY = 1.0


@define(eq=False)
class Ticker:
    """One node's ticks: what it sent, what it heard from whom, whom it removed."""

    log = Logger()

    node: ClusterNode
    clock: IReactorTime
    seconds: float
    interval: float
    go: str | None
    started: bool = False
    done: bool = False
    sent: int = 0
    heard: dict[str, set[int]] = field(factory=dict)
    duplicates: dict[str, int] = field(factory=dict)
    removed: list[str] = field(factory=list)
    _ends: float = 0.0
    _shown: object = None
    _loops: dict[str, LoopingCall] = field(factory=dict)

    def document(self) -> dict[str, Any]:
        """The advertisement."""
        return {
            "ticks": {
                "started": self.started,
                "done": self.done,
                "sent": self.sent,
                "heard": {s: len(n) for s, n in self.heard.items()},
                "duplicates": dict(self.duplicates),
                "highest": {s: max(n) for s, n in self.heard.items() if n},
                "removed": list(self.removed),
            }
        }

    def begin(self) -> None:
        """Advertise from now on; wait for the start file if there is ticking to do."""
        self._loop("advertise", self.advertise, ADVERTISE_EVERY)
        if self.seconds > 0:
            self._loop("wait", self._look_for_go, GO_POLL)

    def _loop(self, name: str, call: Any, interval: float) -> None:
        loop = LoopingCall(call)
        loop.clock = self.clock
        self._loops[name] = loop
        loop.start(interval, now=True)

    def advertise(self) -> None:
        """Set the advertisement if it changed since the last time."""
        with self.log.failuresHandled("while advertising the ticks"):
            current = self.document()
            if current != self._shown:
                self._shown = current
                self.node.set_advertisement(current)

    def _look_for_go(self) -> None:
        if self.go is None or os.path.exists(self.go):
            self._loops.pop("wait").stop()
            self.started = True
            self._ends = self.clock.seconds() + self.seconds
            self.advertise()
            self._loop("tick", self._tick, self.interval)

    def _tick(self) -> None:
        with self.log.failuresHandled("while publishing a tick"):
            if self.clock.seconds() >= self._ends:
                self._loops.pop("tick").stop()
                self.done = True
                self.advertise()
                return
            self.sent += 1
            self.node.publish(CHANNEL, self.sent)

    def on_tick(self, payload: object, envelope: Any, source: object) -> None:
        """A tick from another node."""
        if not isinstance(payload, int):
            return
        seen = self.heard.setdefault(envelope.iid, set())
        if payload in seen:
            self.duplicates[envelope.iid] = self.duplicates.get(envelope.iid, 0) + 1
        seen.add(payload)

    def on_removed(self, event: Any) -> None:
        """The node removed a member."""
        self.removed.append(event.member.id)


def install(node: ClusterNode) -> None:
    """Subscribe to C{ticks}, watch removals, tick once the start file exists."""
    ticker = Ticker(
        node=node,
        clock=node.reactor,
        seconds=float(os.environ.get("TICKAPP_SECONDS", "0")),
        interval=float(os.environ.get("TICKAPP_INTERVAL", "0.1")),
        go=os.environ.get("TICKAPP_GO"),
    )
    node.subscribe(CHANNEL, ticker.on_tick)
    node.on("removed", ticker.on_removed)
    node.reactor.callLater(0, ticker.begin)
