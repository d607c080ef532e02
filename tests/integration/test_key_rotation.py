"""A live key rotation on real processes: no member removed, no channel message lost.

Five C{twistd -n clusternode} processes on minietcd, each with its own
C{--cluster-key-file} and loading L{tests.harness.tickapp} with C{--app}: every node
publishes a numbered message on the C{ticks} channel every 100 ms and counts what it
hears from each sender and its C{removed} events. While the ticks flow, the keys are
rotated as the README says (add the new key as a second line everywhere; make it
first everywhere; remove the old one everywhere), each step written to every node's
file; half the nodes are sent SIGHUP, the others notice the file's change. Every tick
reaches the four other nodes, no node removes anyone, the master stays, and at the end
every node shows only the new key. Removing the old key on one node before the others
seal with the new one cuts that node off (the README's warning), and putting it back
brings the node back.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.harness.clusternodes import (
    FAST_TIMERS,
    ClusterNodeProcess,
    stop_nodes,
    wait_for_agreed_master,
    wait_for_cluster,
)
from tests.harness.servers import shared_minietcd
from twistednode.trust.keyring import key_id, new_key

SETTLE = 30.0
ROOT = str(Path(__file__).resolve().parents[2])
#: How long every node ticks: the rotation (about 8 s) fits with room to spare.
TICK_SECONDS = 12.0
#: The wait after each rotation step, once every node shows its new keyring: five
#: hello intervals, more than the node timeout, so a node cut off would be removed.
LINGER = 5 * FAST_TIMERS.hello_interval
#: How long a step may take to show on every node (the file is polled every second).
STEP_TIMEOUT = 5.0
#: A node sent SIGHUP shows its new keyring this soon (measured: under 30 ms); the
#: others take up to the file's poll interval (a second). Nine SIGHUPs all under it
#: are not the poll's luck.
SIGHUP_BOUND = 0.5


def write_keys(path: str, *keys: str) -> None:
    """Replace the keyring file with C{keys}, one a line, as an editor or C{mv}."""
    with open(path + ".tmp", "w") as f:
        f.write("".join(key + "\n" for key in keys))
    os.chmod(path + ".tmp", 0o600)
    os.replace(path + ".tmp", path)


def ids_of(*keys: str) -> list[str]:
    """The key ids C{GET /status} shows for a keyring of C{keys}."""
    return [key_id(base64.b64decode(key)).hex() for key in keys]


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the children launched inside the block."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ticks_of(status: dict[str, Any]) -> dict[str, Any] | None:
    """The tick application's counts in a node's status, None before the first."""
    advertisement = status["self"]["advertisement"]
    if not isinstance(advertisement, dict):
        return None
    ticks = advertisement.get("ticks")
    return ticks if isinstance(ticks, dict) else None


class _KeyedCluster(SynchronousTestCase):
    """Nodes with the tick application, each with its own keyring file."""

    def start_cluster(self, count: int, ticks: float = 0.0) -> None:
        """Start C{count} nodes sealing with one fresh key; tick for C{ticks}
        seconds once L{go} is called."""
        self.registry = shared_minietcd()
        self.scratch = tempfile.mkdtemp(prefix="twistednode-rotation-")
        self.addCleanup(shutil.rmtree, self.scratch, True)
        self.old = new_key()
        self.new = new_key()
        self.paths = [os.path.join(self.scratch, f"node{i}.keys") for i in range(count)]
        for path in self.paths:
            write_keys(path, self.old)
        self.go_file = os.path.join(self.scratch, "go")
        cluster = f"rotation-{uuid.uuid4().hex[:10]}"
        self.nodes = [
            ClusterNodeProcess(
                etcd=self.registry.url,
                cluster=cluster,
                timers=FAST_TIMERS,
                extra_args=[
                    "--app",
                    "tests.harness.tickapp:install",
                    "--cluster-key-file",
                    path,
                ],
            )
            for path in self.paths
        ]
        self.addCleanup(stop_nodes, self.nodes)
        path_now = os.environ.get("PYTHONPATH")
        with environment(
            PYTHONPATH=os.pathsep.join(filter(None, [ROOT, path_now])),
            TICKAPP_SECONDS=repr(ticks),
            TICKAPP_GO=self.go_file,
        ):
            for node in self.nodes:
                node.launch()
        for node in self.nodes:
            node.wait_ready(SETTLE)
        self.master = wait_for_agreed_master(self.nodes, SETTLE)

    def go(self) -> None:
        """Start the ticks on every node."""
        with open(self.go_file, "w"):
            pass

        def all_started(_views: object) -> bool:
            return all((ticks_of(n.status()) or {}).get("started") for n in self.nodes)

        wait_for_cluster(self.nodes, all_started, 5.0, "every node ticking")

    def write_step(
        self, keys: Sequence[str], nodes: Sequence[int], sighup: Sequence[int] = ()
    ) -> dict[str, float]:
        """Write C{keys} to the files of C{nodes}, SIGHUP those in C{sighup}, and
        wait until each of them shows the keyring; seconds each took."""
        written = time.monotonic()
        for i in nodes:
            write_keys(self.paths[i], *keys)
            if i in sighup:
                self.nodes[i].signal(signal.SIGHUP)
        wanted = ids_of(*keys)
        took: dict[str, float] = {}
        deadline = written + STEP_TIMEOUT
        pending = [self.nodes[i] for i in nodes]
        while pending:
            for node in list(pending):
                if node.status()["keyring"] == wanted:
                    took[node.id] = round(time.monotonic() - written, 3)
                    pending.remove(node)
            if time.monotonic() > deadline:
                shown = {n.id: n.status()["keyring"] for n in pending}
                self.fail(f"keyring {wanted} not shown in {STEP_TIMEOUT} s: {shown}")
            time.sleep(0.02)
        return took


class LiveRotationTests(_KeyedCluster):
    """Five nodes ticking every 100 ms while the cluster key is rotated."""

    def setUp(self) -> None:
        self.start_cluster(5, ticks=TICK_SECONDS)

    def test_rotation_removes_no_member_and_loses_no_message(self) -> None:
        """The README's three steps, each on every node (SIGHUP on some, a file
        change on the others), under a tick from every node every 100 ms: zero
        removals, every tick heard by the four others, one master throughout, and
        only the new key shown at the end."""
        everyone = range(len(self.nodes))
        sighup = [i for i in everyone if i % 2 == 0]
        self.go()
        time.sleep(LINGER)
        steps = [(self.old, self.new), (self.new, self.old), (self.new,)]
        timings = []
        for keys in steps:
            timings.append(self.write_step(keys, everyone, sighup))
            time.sleep(LINGER)
        hupped = {self.nodes[i].id for i in sighup}
        slowest_hup = max(t[n] for t in timings for n in hupped)
        self.assertTrue(slowest_hup < SIGHUP_BOUND, f"SIGHUP did not reload: {timings}")
        still_ticking = [
            not (ticks_of(n.status()) or {}).get("done") for n in self.nodes
        ]
        self.assertEqual(
            still_ticking, [True] * 5, f"the rotation outlasted the ticks: {timings}"
        )

        tallies = self.wait_for_the_last_ticks()
        for node in self.nodes:
            ticks = tallies[node.id]
            self.assertEqual(ticks["removed"], [], node.id)
            self.assertEqual(ticks["duplicates"], {}, node.id)
        lost = {
            (sender.id, receiver.id): (
                tallies[sender.id]["sent"],
                tallies[receiver.id]["heard"].get(sender.id, 0),
            )
            for sender in self.nodes
            for receiver in self.nodes
            if receiver is not sender
            and tallies[receiver.id]["heard"].get(sender.id, 0)
            != tallies[sender.id]["sent"]
        }
        self.assertEqual(lost, {}, "(sender, receiver): (sent, heard)")
        for node in self.nodes:
            sent = tallies[node.id]["sent"]
            self.assertTrue(sent > 0.8 * TICK_SECONDS / 0.1, (node.id, sent))

        self.assertEqual(wait_for_agreed_master(self.nodes, 5.0), self.master)
        for node in self.nodes:
            status = node.status()
            self.assertEqual(status["keyring"], ids_of(self.new), node.id)
            self.assertNotIn("auth", status["dropped"], node.id)

    def wait_for_the_last_ticks(self) -> dict[str, dict[str, Any]]:
        """Every node's counts once all are done and have heard every tick sent
        (or after a bound, for the assertions to show what is missing)."""
        deadline = time.monotonic() + TICK_SECONDS + 5.0
        while True:
            tallies = {n.id: ticks_of(n.status()) or {} for n in self.nodes}
            done = all(t.get("done") for t in tallies.values())
            complete = done and all(
                tallies[r]["heard"].get(s, 0) == tallies[s]["sent"]
                for s in tallies
                for r in tallies
                if r != s
            )
            if complete or (done and time.monotonic() > deadline):
                return tallies
            if time.monotonic() > deadline + 5.0:
                self.fail(f"the ticks did not end: {tallies}")
            time.sleep(0.1)


class EarlyRemovalTests(_KeyedCluster):
    """Step 3 on one node before the others have done step 2."""

    def setUp(self) -> None:
        self.start_cluster(3)

    def test_removing_the_old_key_too_early_cuts_the_node_off(self) -> None:
        """After step 1 everywhere, a node that drops the old key while the others
        still seal with it hears nobody (dropped.auth) and removes them all, though
        they, accepting its new key, still see it; the old key back brings it
        back."""
        everyone = range(len(self.nodes))
        self.write_step((self.old, self.new), everyone, sighup=everyone)
        early = self.nodes[2]
        others = [n for n in self.nodes if n is not early]
        self.write_step((self.new,), [2], sighup=[2])

        def cut_off(_views: object) -> bool:
            status = early.status()
            removed = (ticks_of(status) or {}).get("removed", [])
            return status["members"] == [] and sorted(removed) == sorted(
                n.id for n in others
            )

        wait_for_cluster(self.nodes, cut_off, 5.0, "the early node alone")
        self.assertGreater(early.status()["dropped"].get("auth", 0), 0)
        for node in others:
            status = node.status()
            self.assertIn(early.id, [m["id"] for m in status["members"]], node.id)
            self.assertEqual((ticks_of(status) or {}).get("removed", []), [])

        self.write_step((self.new, self.old), [2], sighup=[2])
        self.assertEqual(wait_for_agreed_master(self.nodes, 5.0), self.master)
