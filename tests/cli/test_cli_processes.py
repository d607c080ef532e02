"""The twistednode console script against real clusters: twistd clusternode
processes on minietcd, on real etcd 3.4 over v2 and over v3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from importlib.metadata import entry_points

from twisted.trial.unittest import TestCase

from tests.etcd.test_v3 import shared_etcd_v3
from tests.harness.childprocess import OutputProcess
from tests.harness.clusternodes import (
    FAST_TIMERS,
    ClusterNodeProcess,
    start_nodes,
    stop_nodes,
    wait_for_agreed_master,
)
from tests.harness.servers import free_port, shared_minietcd, shared_real_etcd

SETTLE = 20.0


def command() -> list[str]:
    """The installed console script (the module's main if it is not installed)."""
    script = os.path.join(os.path.dirname(sys.executable), "twistednode")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-c", "from twistednode.cli.main import main; main()"]


def twistednode(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run the command to its end."""
    return subprocess.run(
        [*command(), *argv], capture_output=True, text=True, timeout=60
    )


class ConsoleScriptTests(TestCase):
    def test_installed(self) -> None:
        """The distribution declares the twistednode console script."""
        (script,) = entry_points(group="console_scripts", name="twistednode")
        self.assertEqual(script.value, "twistednode.cli.main:main")


class UnreachableTests(TestCase):
    """What an operator can fix is one line on stderr and exit status 1."""

    def assertOneLine(
        self, result: subprocess.CompletedProcess[str], text: str
    ) -> None:
        self.assertEqual(result.returncode, 1, result)
        self.assertEqual(result.stdout, "")
        (line,) = result.stderr.splitlines()
        self.assertIn(text, line)
        self.assertNotIn("Traceback", result.stderr)

    def test_registry_refusing(self) -> None:
        """A registry port nobody listens on, for members and watch."""
        url = f"http://127.0.0.1:{free_port()}"
        for name in ("members", "watch"):
            self.assertOneLine(
                twistednode(name, "--etcd", url),
                f"twistednode {name}: cannot read the registry at {url}",
            )

    def test_node_refusing(self) -> None:
        """status of a port nobody listens on."""
        port = free_port()
        self.assertOneLine(
            twistednode("status", str(port)),
            f"cannot reach http://127.0.0.1:{port}/status",
        )

    def test_wrong_option(self) -> None:
        """A wrong option names it."""
        self.assertOneLine(
            twistednode("members", "--etcd-api", "v4"), "--etcd-api must be"
        )


class _Scenarios:
    """Two nodes on a real registry; the command sees what they registered.

    The command is given the nodes' API: etcd 3.4 keeps v2 and v3 keys apart, so
    "auto" (v3 on real etcd) would not see nodes registered over v2.
    """

    api = "v2"

    def registry_url(self) -> str:
        raise NotImplementedError

    def setUp(self) -> None:
        self.url = self.registry_url()
        self.cluster = f"cli-{uuid.uuid4().hex[:10]}"
        self.nodes = self.start(2)
        self.master = self.converged(self.nodes)

    def start(self, count: int) -> list[ClusterNodeProcess]:
        nodes = start_nodes(
            count,
            etcd=self.url,
            cluster=self.cluster,
            timers=FAST_TIMERS,
            extra_args=["--etcd-api", self.api],
        )
        self.addCleanup(stop_nodes, nodes)
        return nodes

    def converged(self, nodes: list[ClusterNodeProcess]) -> str:
        return wait_for_agreed_master(nodes, SETTLE)

    def registry(self) -> list[str]:
        return ["--etcd", self.url, "--cluster", self.cluster, "--etcd-api", self.api]

    def test_members_table(self) -> None:
        """Both nodes, one row each, the master starred, the API found."""
        result = twistednode("members", *self.registry())
        self.assertEqual(result.returncode, 0, result.stderr)
        heading, header, *rows = result.stdout.splitlines()
        self.assertIn(f"(etcd {self.api})", heading)
        self.assertIn(f"2 members, master {self.master}", heading)
        self.assertEqual(header.split()[:3], ["ID", "ADDRESS", "PORT"])
        self.assertEqual({row.split()[0] for row in rows}, {n.id for n in self.nodes})
        (starred,) = [row for row in rows if row.endswith("*")]
        self.assertTrue(starred.startswith(self.master))
        ports = {str(n.udp_port) for n in self.nodes}
        self.assertEqual({row.split()[2] for row in rows}, ports)

    def test_members_json(self) -> None:
        """--json: the members with their addresses and the master with its epoch."""
        result = twistednode("members", "--json", *self.registry())
        self.assertEqual(result.returncode, 0, result.stderr)
        document = json.loads(result.stdout)
        self.assertEqual(document["api"], self.api)
        self.assertEqual(document["master"]["id"], self.master)
        epochs = {n.status()["election"]["masterEpoch"] for n in self.nodes}
        self.assertEqual(epochs, {document["master"]["epoch"]})
        self.assertEqual(
            {m["id"] for m in document["members"]}, {n.id for n in self.nodes}
        )
        self.assertTrue(all(m["eligible"] for m in document["members"]))

    def test_status_of_a_node(self) -> None:
        """status of a node's --http port prints what it sees."""
        node = self.nodes[0]
        result = twistednode("status", f"http://127.0.0.1:{node.http_port}")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(f"node      {node.id}", result.stdout)
        self.assertIn(f"master    {self.master}", result.stdout)
        self.assertIn(self.nodes[1].id, result.stdout)

    def test_watch_join_leave_and_master(self) -> None:
        """watch: a join, a clean leave and a master change, one line each."""
        watcher = OutputProcess(
            [*command(), "watch", *self.registry()], what="the watch", timeout=SETTLE
        )
        self.addCleanup(watcher.kill)
        watcher.wait_for(r"watching  cluster .*: 2 members, master " + self.master)
        (third,) = self.start(1)
        watcher.wait_for(r"joined    " + third.id)
        third.stop()
        watcher.wait_for(r"left      " + third.id + r" .*\(deleted\)")
        (master,) = [n for n in self.nodes if n.id == self.master]
        (other,) = [n for n in self.nodes if n.id != self.master]
        master.stop()
        output = watcher.wait_for(r"master    " + other.id + r" \(epoch \d+\)")
        stamped = [line for line in output.splitlines() if line]
        self.assertTrue(
            all(line[:4].isdigit() and line[23] == "Z" for line in stamped), output
        )
        # Stopped as an operator stops it: it ends quietly, with no outage line.
        watcher.process.send_signal(signal.SIGTERM)
        self.assertEqual(watcher.finish(), 0, watcher.output)
        self.assertNotIn("unreachable", watcher.output)
        self.assertNotIn("Traceback", watcher.output)


class MiniEtcdTests(_Scenarios, TestCase):
    """On minietcd (the v2 API)."""

    def registry_url(self) -> str:
        return shared_minietcd().url


class RealEtcdV2Tests(_Scenarios, TestCase):
    """On real etcd 3.4, its v2 API."""

    def registry_url(self) -> str:
        return shared_real_etcd().url


class RealEtcdV3Tests(_Scenarios, TestCase):
    """On real etcd 3.4 without v2, its v3 API."""

    api = "v3"

    def registry_url(self) -> str:
        return shared_etcd_v3().url
