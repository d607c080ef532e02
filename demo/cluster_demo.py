"""A twistednode cluster on this machine, and what it does when nodes come and go.

    python demo/cluster_demo.py                   # the story, then it stays up
    python demo/cluster_demo.py --no-interactive  # the story once; exit 0 if it held
    python demo/cluster_demo.py --etcd http://127.0.0.1:2379   # with a real etcd

It starts minietcd and three ``twistd -n clusternode`` processes with this Python on
free ports of 127.0.0.1, shows each node's view of the cluster as it changes, and
walks through a story: the cluster forms; one master is elected; 1,000 documents go
to random nodes and each is stored by its key's owner (L{demo.docstore}, loaded into
every node with ``--app``); a fourth node joins and takes its share of the keys; the
master is killed (SIGKILL) and a new one is elected; only the killed master's keys
move; a node stops cleanly and the others see it leave at once. Every time it prints
is measured, from the moment the demo acted (spawn, POST, kill, signal) to the
moment every node's own status said so.

No process outlives the demo, however it ends: Ctrl-C, SIGTERM, a failed step, an
error, or even SIGKILL of the demo (its children get SIGKILL from the kernel).
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TypeVar

# What the nodes need: they run with this Python, but not with the path set below.
MISSING = [m for m in ("twisted", "twistednode") if importlib.util.find_spec(m) is None]

ROOT = Path(__file__).resolve().parent.parent
"""The repository: the nodes import the document store (demo.docstore) from it."""

if not __package__:
    # Run as a script (python demo/cluster_demo.py): make the demo package importable.
    sys.path.insert(0, str(ROOT))

from demo.documents import Client, RequestFailed, document_keys  # noqa: E402
from demo.processes import Child, Children, free_port, twisted_command  # noqa: E402
from demo.terminal import BOLD, CYAN, DIM, GREEN, RED, YELLOW, Screen, pad  # noqa: E402
from demo.watch import (  # noqa: E402
    Board,
    NodeView,
    StatusWatcher,
    agreed_master,
    all_see_each_other,
)

STEPS = (
    "the cluster forms",
    "one master is elected",
    "1,000 documents are stored by their owners",
    "a fourth node joins",
    "the master is killed, a new one is elected",
    "only the killed master's keys move",
    "a node stops cleanly, the others see it leave",
)

DOCUMENTS = 1000
STORE_APP = "demo.docstore:install"
"""What every node loads (C{--app}): the document store the story uses."""

HELLO_INTERVAL = 1.0
NODE_TIMEOUT = 2.0
#: The leased election's TTL (clusternode's --master-ttl default).
MASTER_TTL = 2.0
"""The nodes' defaults (node-discover's): a hello a second, silent for 2 s = gone."""

AT_ONCE = NODE_TIMEOUT - HELLO_INTERVAL
"""A node that merely fell silent cannot be timed out sooner than this after its
last hello was due; a clean leave must be seen before, or it was not the goodbye."""

CLEAN_EXIT = (0, -signal.SIGTERM)
"""How a node ends after SIGTERM: twistd re-raises the signal once it has stopped."""

TITLE_WIDTH = 53

START_TIMEOUT = 60.0
JOIN_TIMEOUT = 60.0
FAILOVER_TIMEOUT = 30.0
LEAVE_TIMEOUT = 30.0
EXIT_TIMEOUT = 10.0
STORE_TIMEOUT = 60.0
HANDOFF_TIMEOUT = 30.0
REOWN_TIMEOUT = 40.0
"""A killed node's keys move when its registry record expires (RECORD_TTL)."""
RECORD_TTL = 3
"""The nodes' registry record TTL (--ttl; clusternode's default is 10 s), so that
the story's killed node leaves the registry within a few seconds."""
"""Generous bounds for a loaded machine; the times printed are the measured ones."""


T = TypeVar("T")


class StepFailed(Exception):
    """A step of the story did not hold (C{step} is its title, None: the setup)."""

    def __init__(self, step: str | None, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message


class Terminated(BaseException):
    """The demo got SIGTERM or SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def master_epoch(views: Sequence[NodeView], master: str | None) -> int | None:
    """The fencing epoch of C{master}'s term: its own view's, else the highest any
    view knows (one that has not read the new key yet knows the old term's)."""
    if master is None:
        return None
    own = [v.epoch for v in views if v.id == master and v.epoch is not None]
    known = own or [v.epoch for v in views if v.epoch is not None]
    return max(known) if known else None


def how_elected(mode: str, epoch: int | None) -> str:
    """A few words on who decided: the registry's lease, or node-discover's hellos."""
    if mode == "lease":
        said = "" if epoch is None else f", epoch {epoch}"
        return f"the registry's lease elected it{said}"
    return "node-discover's election: the highest weight"


def spread(counts: Mapping[str, int], label: Callable[[str], str]) -> str:
    """How many keys each node has: "node-1 331, node-2 342" (by name)."""
    named = sorted((label(node_id), n) for node_id, n in counts.items())
    return ", ".join(f"{name} {n}" for name, n in named)


def fmt(seconds: float) -> str:
    """A duration as people read it: 84 ms, 2.13 s."""
    if seconds < 1:
        return f"{max(0.0, seconds) * 1000:.0f} ms"
    return f"{seconds:.2f} s"


class Node:
    """One clusternode process of the demo and the thread following its status."""

    def __init__(self, name: str, child: Child, http_port: int, board: Board) -> None:
        self.name = name
        self.child = child
        self.http_port = http_port
        self.watcher = StatusWatcher(name, http_port, board, lambda: child.running)

    @property
    def page(self) -> str:
        """The node's live page."""
        return f"http://127.0.0.1:{self.http_port}/"

    @property
    def expected_up(self) -> bool:
        """Whether the demo has not stopped or killed it on purpose."""
        return self.child.ended is None


class Demo:
    """The processes, what they say, and the story told with them."""

    def __init__(self, screen: Screen, etcd: str | None, etcd_api: str | None) -> None:
        self.screen = screen
        self.cluster = f"demo-{uuid.uuid4().hex[:8]}"
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"twistednode-{self.cluster}-"))
        self.children = Children()
        self.board = Board()
        self.nodes: dict[str, Node] = {}
        self.names: dict[str, str] = {}
        self.etcd_url = etcd
        self.etcd_api = etcd_api
        self.registry: Child | None = None
        self.command = twisted_command()
        self.keep_logs = False
        self.rng = random.Random()
        self.keys = document_keys(DOCUMENTS)

    # -- what the nodes say ----------------------------------------------------------

    def views_of(self, names: Sequence[str]) -> list[NodeView] | None:
        """The latest view of each named node, or None if one is missing."""
        latest = self.board.views()
        views = [latest.get(name) for name in names]
        found = [v for v in views if v is not None]
        for name, view in zip(names, views, strict=True):
            if view is not None:
                self.names.setdefault(view.id, name)
        return found if len(found) == len(names) else None

    def label(self, node_id: str | None) -> str:
        """A node's demo name (node-1...) or the start of its id."""
        if node_id is None:
            return self.screen.symbols.none
        return self.names.get(node_id, node_id[:8])

    def started_at(self, name: str) -> float:
        """When a node that has answered started (epoch seconds, its clock)."""
        views = self.views_of([name])
        assert views is not None, f"{name} has not answered"
        return views[0].started_at

    def id_of(self, name: str) -> str:
        """The id of a node that has answered."""
        views = self.views_of([name])
        assert views is not None, f"{name} has not answered"
        return views[0].id

    # -- processes -------------------------------------------------------------------

    def start_registry(self) -> None:
        """Start minietcd, or check that the given etcd answers."""
        if self.etcd_url is not None:
            version = self._etcd_version(self.etcd_url)
            if version is None:
                raise StepFailed(None, f"etcd does not answer at {self.etcd_url}")
            self.screen.say(f"registry: etcd at {self.etcd_url} ({version})")
            return
        port = free_port()
        self.etcd_url = f"http://127.0.0.1:{port}"
        child = Child(
            "minietcd",
            [*self.command, "minietcd", "--listen", f"tcp:{port}:interface=127.0.0.1"],
            self.run_dir / "minietcd.log",
        )
        self.registry = self.children.add(child, server=True)
        self.screen.say(f"started minietcd: pid {child.pid}, {self.etcd_url}")
        deadline = child.started_at + START_TIMEOUT
        while (version := self._etcd_version(self.etcd_url)) is None:
            self.check_alive(None)
            if time.monotonic() > deadline:
                raise StepFailed(None, f"minietcd did not answer in {START_TIMEOUT} s")
            waited = time.monotonic() - child.started_at
            self.draw(f"waiting for minietcd {waited:.1f} s")
            time.sleep(0.05)
        self.screen.say(
            f"  minietcd answers ({version}) "
            f"{fmt(time.monotonic() - child.started_at)} after spawn"
        )

    @staticmethod
    def _etcd_version(url: str) -> str | None:
        try:
            with urllib.request.urlopen(url + "/version", timeout=2) as response:
                found = json.load(response)
        except (OSError, ValueError):
            return None
        if not isinstance(found, dict):
            return None
        return " ".join(f"{k} {v}" for k, v in found.items())

    def start_node(self, name: str) -> Node:
        """Spawn C{twistd clusternode} for node C{name} and follow its status."""
        assert self.etcd_url is not None
        port = free_port()
        argv = [
            *self.command,
            "clusternode",
            "--etcd",
            self.etcd_url,
            "--cluster",
            self.cluster,
            "--udp-port",
            "0",
            "--udp-interface",
            "127.0.0.1",
            "--http",
            f"tcp:{port}:interface=127.0.0.1",
            "--app",
            STORE_APP,
            "--ttl",
            str(RECORD_TTL),
        ]
        if self.etcd_api is not None:
            argv += ["--etcd-api", self.etcd_api]
        # node-discover's way to name a host: the pages and tables then say node-1...
        env = dict(os.environ, DISCOVERY_HOSTNAME=name)
        # The nodes run in the scratch directory: demo.docstore comes from the repo.
        paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        child = Child(name, argv, self.run_dir / f"{name}.log", env)
        node = Node(name, child, port, self.board)
        self.nodes[name] = node
        self.children.add(child)
        node.watcher.start()
        self.screen.say(f"started {name}: pid {child.pid}, page {node.page}")
        return node

    def check_alive(self, step: str | None) -> None:
        """Fail if a process the demo did not stop has exited."""
        watched = [n.child for n in self.nodes.values() if n.expected_up]
        if self.registry is not None:
            watched.append(self.registry)
        for child in watched:
            if not child.running:
                raise StepFailed(
                    step,
                    f"{child.name} exited (code {child.returncode}); "
                    f"its last output:\n{child.log_tail()}",
                )

    # -- drawing -------------------------------------------------------------------

    def table(self) -> list[str]:
        """Each node's view of the cluster, one line each."""
        s = self.screen
        star = s.symbols.star
        views = self.board.views()
        for name, found in views.items():
            if found is not None:
                self.names.setdefault(found.id, name)
        lines = [
            s.style(
                f"  {'NODE':<10}{'PID':<8}{'UDP':<18}{'SEES':<24}{'MASTER':<10}"
                f"{'REGISTRY':<10}DOCS",
                DIM,
            )
        ]
        for name, node in self.nodes.items():
            view = views.get(name)
            mark = star if view is not None and view.is_master else " "
            head = f"{mark} {name:<8}{node.child.pid:<8}"
            head = s.style(head, BOLD, YELLOW) if mark == star else head
            if not node.expected_up:
                ended = f"    {name:<8}{node.child.pid:<8}{node.child.ended}"
                lines.append(s.style(ended, DIM))
            elif not node.child.running:
                code = node.child.returncode
                lines.append(f"  {head}" + s.style(f"exited (code {code})", RED))
            elif view is None:
                state = "starting…" if name not in views else "not answering"
                lines.append(f"  {head}" + s.style(state, DIM))
            else:
                sees = " ".join(
                    self.label(m) + (star if m in view.claimants else "")
                    for m in sorted(view.members, key=self.label)
                )
                master = "me" if view.master == view.id else self.label(view.master)
                lines.append(
                    f"  {head}{view.address:<18}"
                    + pad(sees or s.symbols.none, 24)
                    + pad(master, 10)
                    + pad(view.registry, 10)
                    + self.documents_of(view)
                )
        return lines

    def documents_of(self, view: NodeView) -> str:
        """The table's DOCS: what the node's advertisement says it stores."""
        if view.documents is None:
            return self.screen.symbols.none
        moving = f" (+{view.handoff} to hand on)" if view.handoff else ""
        return f"{view.documents}{moving}"

    def draw(self, progress: str | None = None) -> None:
        """Redraw the live block: the table and a progress line."""
        if not self.screen.live:
            return
        block = [""] + self.table() if self.nodes else []
        if progress is not None:
            spinner = self.screen.symbols.spinner
            frame = spinner[int(time.monotonic() * 10) % len(spinner)]
            block.append(self.screen.style(f"{frame} {progress}", CYAN))
        self.screen.show(block)

    def print_table(self) -> None:
        """The table as permanent lines (when nothing is redrawn)."""
        if not self.screen.live:
            self.screen.say("\n".join(self.table()))

    # -- the story -----------------------------------------------------------------

    def wait(
        self,
        what: str,
        goals: Mapping[str, Callable[[], object]],
        timeout: float,
        since: float,
        say: bool = True,
    ) -> dict[str, float]:
        """Wait until every goal holds at once; when each began to hold.

        C{goals} maps a step title to a check of the latest views. A step fails if
        its goal does not hold within C{timeout} or a node dies unexpectedly.
        Without a terminal, C{what} is printed first if C{say}.
        """
        deadline = time.monotonic() + timeout
        held_since: dict[str, float] = {}
        version = -1
        if say and not self.screen.live:
            self.screen.say(f"  … {what} (at most {timeout:.0f} s)")
        while True:
            now = time.monotonic()
            for step, goal in goals.items():
                if not goal():
                    held_since.pop(step, None)
                elif step not in held_since:
                    held_since[step] = now
            if len(held_since) == len(goals):
                self.draw()
                return held_since
            pending = next(step for step in goals if step not in held_since)
            self.check_alive(pending)
            if now > deadline:
                raise StepFailed(
                    pending, f"not within {timeout:.0f} s; {self.describe()}"
                )
            self.draw(f"{what} {now - since:.1f} s")
            version = self.board.wait(version, 0.1)

    def describe(self) -> str:
        """What every running node says, for a failure message."""
        parts = []
        for name, node in self.nodes.items():
            if not node.expected_up:
                continue
            view = self.board.views().get(name)
            if view is None:
                parts.append(f"{name} does not answer")
            else:
                sees = ", ".join(self.label(m) for m in view.members) or "nobody"
                parts.append(
                    f"{name} sees {sees}, master {self.label(view.master)}"
                    + (" (itself)" if view.is_master else "")
                )
        return "; ".join(parts)

    def in_background(self, step: str, what: str, work: Callable[[], T]) -> T:
        """Run C{work} (requests to the nodes) in a thread, drawing meanwhile; a
        L{RequestFailed} fails C{step}."""
        began = time.monotonic()
        outcome: list[T] = []
        failed: list[BaseException] = []

        def run() -> None:
            try:
                outcome.append(work())
            except BaseException as e:
                failed.append(e)

        worker = threading.Thread(target=run, name="demo-requests", daemon=True)
        worker.start()
        while worker.is_alive():
            self.check_alive(step)
            self.draw(f"{what} {time.monotonic() - began:.1f} s")
            worker.join(0.1)
        if failed:
            if isinstance(failed[0], RequestFailed):
                raise StepFailed(step, str(failed[0]))
            raise failed[0]
        return outcome[0]

    def owners_are(self, names: Sequence[str]) -> bool:
        """Whether every named node spreads keys over exactly the named nodes."""
        views = self.views_of(names)
        if views is None:
            return False
        ids = {v.id for v in views}
        return all(v.owners == ids for v in views)

    def shows_counts(self, names: Sequence[str], counts: Mapping[str, int]) -> bool:
        """Whether every named node's status says it stores its count, none moving."""
        views = self.views_of(names)
        return views is not None and all(
            v.documents == counts.get(v.id, 0) and v.handoff == 0 for v in views
        )

    def client(self, names: Sequence[str]) -> Client:
        """Requests to the named nodes, each to a random one."""
        return Client({n: self.nodes[n].http_port for n in names}, self.rng)

    def passed(
        self,
        step: str,
        seconds: float,
        since: str,
        detail: str | Sequence[str],
        table: bool = True,
    ) -> None:
        """Print a step that held: its measured time, then what was seen."""
        s = self.screen
        number = STEPS.index(step) + 1
        mark = s.style(s.symbols.ok, GREEN, BOLD)
        title = f"{number}. {step} ".ljust(TITLE_WIDTH, ".")
        took = s.style(f"{fmt(seconds):>7}", GREEN, BOLD)
        s.say(f"{mark} {s.style(title, BOLD)} {took} after {since}")
        for line in [detail] if isinstance(detail, str) else detail:
            s.say(f"     {line}")
        if table:
            self.print_table()

    def story(self) -> None:
        """The seven steps; raises L{StepFailed} at the first that does not hold."""
        star = self.screen.symbols.star
        trio = ["node-1", "node-2", "node-3"]
        spawned_wall, spawned = time.time(), time.monotonic()
        for name in trio:
            self.start_node(name)

        def mesh(names: Sequence[str]) -> bool:
            views = self.views_of(names)
            return views is not None and all_see_each_other(views)

        def master_of(names: Sequence[str]) -> str | None:
            views = self.views_of(names)
            return None if views is None else agreed_master(views)

        held = self.wait(
            "the nodes start, find each other and elect",
            {STEPS[0]: lambda: mesh(trio), STEPS[1]: lambda: master_of(trio)},
            START_TIMEOUT,
            spawned,
        )
        views = self.views_of(trio)
        assert views is not None
        last_up = max(v.started_at for v in views) - spawned_wall
        formed = held[STEPS[0]] - spawned
        self.passed(
            STEPS[0],
            formed,
            "spawn",
            f"every node sees the other two, {fmt(formed - last_up)} after the "
            "last node was up",
            table=False,
        )
        master = agreed_master(views)
        elected = held[STEPS[1]] - spawned
        first_epoch = master_epoch(views, master)
        self.passed(
            STEPS[1],
            elected,
            "spawn",
            f"{self.label(master)} {star}, and all three agree, "
            f"{fmt(elected - last_up)} after the last node was up; "
            + how_elected(views[0].election, first_epoch),
        )

        # Documents to random nodes, each stored by its key's owner.
        owners = self.store_documents(trio)

        # A fourth node joins; the master stays; it takes its share of the keys.
        four = [*trio, "node-4"]
        joined_wall, joined = time.time(), time.monotonic()
        self.start_node("node-4")
        held = self.wait(
            "node-4 starts and joins",
            {STEPS[3]: lambda: mesh(four) and master_of(four) == master},
            JOIN_TIMEOUT,
            joined,
        )
        seen = held[STEPS[3]] - joined
        up = self.started_at("node-4") - joined_wall
        owners, handed = self.hand_over(four, "node-4", owners, joined)
        self.passed(
            STEPS[3],
            seen,
            "spawn",
            [
                f"all four see each other {fmt(seen - up)} after node-4 was up; "
                f"{self.label(master)} stays master",
                *handed,
            ],
        )

        # The master is killed: no goodbye, the others time it out and elect.
        assert master is not None
        victim = self.nodes[self.label(master)]
        rest = [name for name in four if name != victim.name]
        killed = time.monotonic()
        victim.child.ended = "killed (SIGKILL)"
        os.kill(victim.child.pid, signal.SIGKILL)

        def dropped(names: Sequence[str], node_id: str) -> bool:
            views = self.views_of(names)
            return views is not None and all(node_id not in v.members for v in views)

        held = self.wait(
            f"{victim.name} killed; waiting for the others to elect",
            {STEPS[4]: lambda: master_of(rest) not in (None, master)},
            FAILOVER_TIMEOUT,
            killed,
        )
        failover = held[STEPS[4]] - killed
        new_master = master_of(rest)
        after = self.views_of(rest) or []
        new_epoch = master_epoch(after, new_master)
        if after and after[0].election == "lease":
            why = (
                f"{victim.name} sent no goodbye: its master key expired "
                f"({MASTER_TTL:.0f} s TTL); epoch {new_epoch}, was {first_epoch}"
            )
        else:
            why = (
                f"{victim.name} sent no goodbye and was timed out "
                f"({NODE_TIMEOUT:.0f} s of silence)"
            )
        self.passed(
            STEPS[4],
            failover,
            "SIGKILL",
            f"{self.label(new_master)} {star} is the new master; {why}",
        )
        victim.child.wait(EXIT_TIMEOUT)
        self.keys_move(rest, victim.name, master, owners, killed)

        # A node that is not master stops cleanly: goodbye, record deleted.
        leaver = self.nodes[next(n for n in rest if self.id_of(n) != new_master)]
        leaver_id = self.id_of(leaver.name)
        others = [name for name in rest if name != leaver.name]
        last = self.views_of([leaver.name])
        carried = last[0].documents if last and last[0].documents else 0
        stopped = time.monotonic()
        leaver.child.ended = "stopped (SIGTERM)"
        leaver.child.signal(signal.SIGTERM)
        held = self.wait(
            f"{leaver.name} stopping; waiting for the others to see it leave",
            {
                STEPS[6]: lambda: (
                    dropped(others, leaver_id) and master_of(others) == new_master
                )
            },
            LEAVE_TIMEOUT,
            stopped,
        )
        left = held[STEPS[6]] - stopped
        code = leaver.child.wait(EXIT_TIMEOUT)
        exited = time.monotonic() - stopped
        if code not in CLEAN_EXIT:
            raise StepFailed(
                STEPS[6], f"{leaver.name} did not stop cleanly: exit status {code}"
            )
        leaver.child.ended = f"stopped (SIGTERM), exited after {fmt(exited)}"
        if left >= AT_ONCE:
            raise StepFailed(
                STEPS[6],
                f"the others saw {leaver.name} leave only after {fmt(left)}: that is "
                "a timeout, not its goodbye",
            )
        self.passed(
            STEPS[6],
            left,
            "SIGTERM",
            [
                f"{' and '.join(others)} saw {leaver.name}'s goodbye; "
                f"{self.label(new_master)} stays master; {leaver.name} exited after "
                f"{fmt(exited)}",
                f"its {carried} documents went with it: "
                "the store keeps one copy, in memory",
            ],
        )

    def store_documents(self, names: Sequence[str]) -> dict[str, str]:
        """Step 3: every document to a random node; who owns each key."""
        step = STEPS[2]
        self.wait(
            "the nodes agree on who owns keys",
            {step: lambda: self.owners_are(names)},
            START_TIMEOUT,
            time.monotonic(),
            say=False,
        )
        client = self.client(names)
        sent = time.monotonic()
        if not self.screen.live:
            self.screen.say(f"  … sending {DOCUMENTS:,} documents to random nodes")
        stored = self.in_background(
            step, "sending documents", lambda: client.put_all(self.keys)
        )
        sending = time.monotonic() - sent
        owners = self.in_background(
            step, "asking who owns each key", lambda: client.owners(self.keys)
        )
        wrong = [a for a in stored if a.stored_by != owners[a.key]]
        if wrong:
            raise StepFailed(
                step,
                f"{len(wrong)} documents were not stored by their key's owner, "
                f"e.g. {wrong[0].key} by {self.label(wrong[0].stored_by)}, "
                f"owner {self.label(owners[wrong[0].key])}",
            )
        counts = Counter(a.stored_by for a in stored)
        held = self.wait(
            "the nodes count their documents",
            {step: lambda: self.shows_counts(names, counts)},
            STORE_TIMEOUT,
            sent,
            say=False,
        )
        forwarded = sum(a.stored_by != self.id_of(a.sent_to) for a in stored)
        self.passed(
            step,
            held[step] - sent,
            "the first POST",
            [
                f"{DOCUMENTS:,} POSTs to random nodes in {fmt(sending)}; {forwarded} "
                "were forwarded to the key's owner, and every one was stored by it",
                f"each node's status says it stores: {spread(counts, self.label)}",
            ],
        )
        return {key: owner for key, owner in owners.items() if owner is not None}

    def hand_over(
        self,
        names: Sequence[str],
        newcomer: str,
        before: Mapping[str, str],
        since: float,
    ) -> tuple[dict[str, str], list[str]]:
        """Step 4's second half: the newcomer takes its keys, each from its owner,
        with the documents; the owners now, and what to say."""
        step = STEPS[3]
        self.wait(
            f"the nodes spread keys over {newcomer} too",
            {step: lambda: self.owners_are(names)},
            HANDOFF_TIMEOUT,
            since,
            say=False,
        )
        client = self.client(names)
        after = self.owners_now(step, client)
        new_id = self.id_of(newcomer)
        moved = [key for key in self.keys if after[key] != before[key]]
        astray = [key for key in moved if after[key] != new_id]
        if astray:
            raise StepFailed(
                step,
                f"{len(astray)} keys moved between the nodes that were there, "
                f"e.g. {astray[0]} from {self.label(before[astray[0]])} to "
                f"{self.label(after[astray[0]])}",
            )
        counts = Counter(after.values())
        held = self.wait(
            f"the others hand {newcomer} its documents",
            {step: lambda: self.shows_counts(names, counts)},
            HANDOFF_TIMEOUT,
            since,
            say=False,
        )
        self.check_documents(step, client, after, set(self.keys))
        given = Counter(before[key] for key in moved)
        return after, [
            f"{newcomer} took {len(moved)} keys, each from its owner "
            f"({spread(given, self.label)}), and their documents "
            f"{fmt(held[step] - since)} after spawn; no key moved between the others",
            f"each node's status says it stores: {spread(counts, self.label)}",
        ]

    def keys_move(
        self,
        names: Sequence[str],
        victim: str,
        victim_id: str,
        before: Mapping[str, str],
        killed: float,
    ) -> None:
        """Step 6: the killed node's keys, and no other, move to the others."""
        step = STEPS[5]
        held = self.wait(
            f"waiting for {victim}'s registry record to expire",
            {step: lambda: self.owners_are(names)},
            REOWN_TIMEOUT,
            killed,
        )
        client = self.client(names)
        after = self.owners_now(step, client)
        theirs = [key for key in self.keys if before[key] == victim_id]
        moved = [key for key in self.keys if after[key] != before[key]]
        if moved != theirs:
            others = [key for key in moved if before[key] != victim_id]
            raise StepFailed(
                step,
                f"{len(moved)} keys moved, {len(others)} of them not {victim}'s"
                if others
                else f"{len(theirs) - len(moved)} of {victim}'s keys did not move",
            )
        lost = self.check_documents(step, client, after, set(self.keys) - set(moved))
        if lost != set(moved):
            raise StepFailed(
                step, f"{len(lost)} documents are missing, {len(moved)} keys moved"
            )
        stored = self.in_background(
            step, "sending the lost documents again", lambda: client.put_all(theirs)
        )
        wrong = [a for a in stored if a.stored_by != after[a.key]]
        if wrong:
            raise StepFailed(
                step, f"{len(wrong)} documents were not stored by their new owner"
            )
        counts = Counter(after.values())
        self.wait(
            "the nodes count their documents",
            {step: lambda: self.shows_counts(names, counts)},
            STORE_TIMEOUT,
            killed,
            say=False,
        )
        kept = DOCUMENTS - len(moved)
        self.passed(
            step,
            held[step] - killed,
            "SIGKILL",
            [
                f"{victim}'s record expired from the registry: its {len(moved)} keys "
                f"moved ({spread(Counter(after[k] for k in moved), self.label)}); "
                f"none of the other {kept} did",
                f"those {kept} documents still answer from the node that stored "
                f"them; {victim}'s {len(moved)} were only in its memory: sent again, "
                "each is stored by its new owner",
                f"each node's status says it stores: {spread(counts, self.label)}",
            ],
        )

    def owners_now(self, step: str, client: Client) -> dict[str, str]:
        """The owner of every key, each asked of a random node (all must know)."""
        owners = self.in_background(
            step, "asking who owns each key", lambda: client.owners(self.keys)
        )
        unowned = [key for key, owner in owners.items() if owner is None]
        if unowned:
            raise StepFailed(step, f"{len(unowned)} keys have no owner")
        return {key: owner for key, owner in owners.items() if owner is not None}

    def check_documents(
        self,
        step: str,
        client: Client,
        owners: Mapping[str, str],
        expected: set[str],
    ) -> set[str]:
        """C{docs.get} of every key from random nodes: each answered by its owner,
        every expected one found; the keys whose documents are missing."""
        looked = self.in_background(
            step, "reading every document", lambda: client.get_all(self.keys)
        )
        wrong = [a for a in looked if a.owner != owners[a.key]]
        if wrong:
            raise StepFailed(
                step,
                f"{len(wrong)} documents were read from another node than their "
                f"owner, e.g. {wrong[0].key} from {self.label(wrong[0].owner)}",
            )
        missing = {a.key for a in looked if not a.found}
        if missing & expected:
            raise StepFailed(
                step,
                f"{len(missing & expected)} documents are missing, "
                f"e.g. {sorted(missing & expected)[0]}",
            )
        return missing

    # -- running it ----------------------------------------------------------------

    def run(self, interactive: bool) -> int:
        """Tell the story; stay up if interactive; 0 if every step held, else 1."""
        s = self.screen
        runner = "twistd" if "twistd" in " ".join(self.command) else "twist"
        s.say(
            s.style("twistednode demo", BOLD)
            + f": cluster {self.cluster}, nodes run with {sys.executable} ({runner})"
        )
        code = 0
        try:
            self.start_registry()
            self.story()
            s.say(s.style(f"All {len(STEPS)} steps held.", GREEN, BOLD))
        except StepFailed as e:
            code = 1
            self.keep_logs = True
            if e.step is None:
                s.say(s.style(f"Could not start: {e.message}", RED, BOLD))
                return code
            else:
                number = STEPS.index(e.step) + 1
                s.say(s.style(f"{s.symbols.failed} {number}. {e.step}", RED, BOLD))
                s.say(f"   {e.message}")
                s.say(s.style(f"FAILED at step {number}: {e.step}", RED, BOLD))
            self.print_table()
        if interactive:
            self.stay_up()
        return code

    def stay_up(self) -> None:
        """Keep the cluster and the live view up until Ctrl-C (or SIGTERM)."""
        s = self.screen
        for node in self.nodes.values():
            if node.child.running:
                s.say(f"  {node.name}: {node.page}")
        s.say("The cluster keeps running: open a page above. Ctrl-C stops everything.")
        shown: list[str] = []
        version = -1
        while True:
            if s.live:
                self.draw("running — Ctrl-C to stop")
            else:
                table = [line.rstrip() for line in self.table()]
                if _without_times(table) != _without_times(shown):
                    s.say("\n".join(table))
                shown = table
            version = self.board.wait(version, 0.2)

    def shutdown(self) -> None:
        """Stop every process (nodes first), remove the logs unless a step failed."""
        s = self.screen
        for node in self.nodes.values():
            node.watcher.stop()
        self.draw()
        s.finish()
        self.children.stop_all()
        left = [c.name for c in self.children if c.running]
        if self.registry is None and self.etcd_url is not None:
            self._forget_cluster(self.etcd_url)
        pids = ", ".join(str(p) for p in self.children.pids)
        s.say(f"stopped every process (pids {pids})" if not left else f"left: {left}")
        if self.keep_logs and any(self.run_dir.iterdir()):
            s.say(f"logs kept in {self.run_dir}")
        else:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _forget_cluster(self, url: str) -> None:
        """Delete this run's records from a real etcd, in the v2 and v3 key spaces.

        Cleanly stopped nodes deleted their own; the killed master's record would
        otherwise stay until its TTL or lease runs out.
        """
        prefix = f"/twistednode/{self.cluster}/".encode()
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        body = {
            "key": base64.b64encode(prefix).decode(),
            "range_end": base64.b64encode(end).decode(),
        }
        requests = [
            urllib.request.Request(
                f"{url}/v2/keys/twistednode/{self.cluster}?recursive=true",
                method="DELETE",
            ),
            urllib.request.Request(
                f"{url}/v3/kv/deleterange",
                data=json.dumps(body).encode(),
                method="POST",
            ),
        ]
        for request in requests:
            try:
                urllib.request.urlopen(request, timeout=2).close()
            except (OSError, ValueError):
                pass  # that key space is not served, or etcd is gone


def _without_times(lines: Sequence[str]) -> list[str]:
    return [line.split("after")[0] for line in lines]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The demo's command line."""
    parser = argparse.ArgumentParser(
        prog="python demo/cluster_demo.py",
        description=(
            "Start minietcd and three twistednode cluster nodes on 127.0.0.1 and "
            "show election, 1,000 documents stored by their keys' owners, a join, "
            "failover (only the killed node's keys move) and a clean leave, with "
            "measured times."
        ),
    )
    parser.add_argument(
        "--no-interactive",
        action="store_true",
        help="tell the story once and exit: 0 if every step held, 1 if not",
    )
    parser.add_argument(
        "--etcd",
        metavar="URL",
        help="use this etcd (e.g. http://127.0.0.1:2379) instead of starting minietcd",
    )
    parser.add_argument(
        "--etcd-api",
        choices=("auto", "v2", "v3"),
        help="passed to every node (default: the nodes' own default)",
    )
    args = parser.parse_args(argv)
    if args.etcd is not None and not args.etcd.startswith(("http://", "https://")):
        parser.error("--etcd must be an http:// or https:// URL")
    if args.etcd is not None:
        args.etcd = args.etcd.rstrip("/")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; the exit status (130 after Ctrl-C, 128+N after signal N)."""
    args = parse_args(argv)
    if MISSING:
        print(
            f"{sys.executable} cannot import {' and '.join(MISSING)}, which the nodes "
            "need; install the project first:  python -m pip install -e .",
            file=sys.stderr,
        )
        return 2
    screen = Screen.for_stream(sys.stdout)
    demo = Demo(screen, args.etcd, args.etcd_api)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    code = 1
    try:
        code = demo.run(interactive=not args.no_interactive)
    except KeyboardInterrupt:
        code = 130
        screen.say("\ninterrupted: stopping every process")
    except Terminated as e:
        code = 128 + e.signum
        screen.say(f"\ngot {signal.Signals(e.signum).name}: stopping every process")
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        demo.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
