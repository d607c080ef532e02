"""twistednode on the asyncio event loop: C{twistd --reactor=asyncio clusternode},
and docs/asyncio_node.py, an asyncio program that embeds a node (the README's
asyncio example)."""

from __future__ import annotations

import json
import re
import signal
import urllib.request
import uuid
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.harness.clusternodes import (
    FAST_TIMERS,
    ClusterNodeProcess,
    stop_nodes,
    wait_for_agreed_master,
)
from tests.harness.servers import MiniEtcdProcess, shared_minietcd
from tests.test_readme import README, Copy, example_body

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "asyncio_node.py"
WAIT = 60.0
ASYNCIO_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"


class AsyncioNodeProcess(ClusterNodeProcess):
    """C{twistd --reactor=asyncio -n clusternode ...}."""

    def _argv(self) -> list[str]:
        twistd, *rest = super()._argv()
        return [twistd, "--reactor=asyncio", *rest]


def members_of(url: str, cluster: str) -> list[object]:
    """The records under the cluster's members directory of a v2 registry."""
    key = f"{url}/v2/keys/twistednode/{cluster}/members"
    try:
        with urllib.request.urlopen(key, timeout=5) as response:
            nodes: list[object] = json.load(response)["node"].get("nodes", [])
            return nodes
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 404:
            return []
        raise


class TwistdAsyncioTests(TestCase):
    """The clusternode plugin runs on Twisted's asyncio reactor."""

    def test_cluster_on_the_asyncio_reactor(self) -> None:
        """Three asyncio-reactor nodes on minietcd elect one master, serve their
        status and metrics, and leave cleanly."""
        etcd = shared_minietcd()
        cluster = f"asyncio-{uuid.uuid4().hex[:10]}"
        nodes = [
            AsyncioNodeProcess(etcd=etcd.url, cluster=cluster, timers=FAST_TIMERS)
            for _ in range(3)
        ]
        self.addCleanup(stop_nodes, nodes)
        for node in nodes:
            node.launch()
        for node in nodes:
            node.wait_ready(WAIT)
        master = wait_for_agreed_master(
            nodes, WAIT, "three asyncio nodes agreeing on a master"
        )
        self.assertIn(master, {n.id for n in nodes})
        for node in nodes:
            self.assertIn(f"reactor class: {ASYNCIO_REACTOR}", node.output())
        url = f"http://127.0.0.1:{nodes[0].http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            self.assertIn(b"twistednode_hellos_received_total", response.read())
        stop_nodes(nodes)
        for node in nodes:
            self.assertNotIn("Traceback", node.output(), node.describe())
        self.assertEqual(members_of(etcd.url, cluster), [])


class AsyncioExampleTests(TestCase):
    """docs/asyncio_node.py: an asyncio program with a node inside, really run."""

    def test_readme_shows_the_tested_file(self) -> None:
        """The README's asyncio example is docs/asyncio_node.py, line for line."""
        blocks = re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), re.S)
        self.assertIn(example_body(EXAMPLE), blocks)

    def test_two_copies_elect_talk_and_leave(self) -> None:
        """Two copies on the asyncio loop: one master, its news reaches the other,
        both leave cleanly (the first on Ctrl-C) and exit 0."""
        minietcd = MiniEtcdProcess().start()
        self.addCleanup(minietcd.stop)
        first = Copy(minietcd.url, example=EXAMPLE)
        self.addCleanup(first.kill)
        first.wait_for(r"^[0-9a-f]{8}: I am the master now$")
        a = first.id
        self.assertIn(f"{a}: running on AsyncioSelectorReactor", first.output)

        second = Copy(minietcd.url, "4", example=EXAMPLE)
        self.addCleanup(second.kill)
        self.assertEqual(second.finish(), 0, second.output)
        b = second.id
        out = second.output
        self.assertIn(f"{b}: {a} joined from 127.0.0.1", out)
        self.assertIn(f"{b}: {a} is master of 2 nodes", out)
        self.assertIn(f"{b}: left the cluster", out)
        self.assertNotIn("I am the master now", out)
        self.assertNotIn("Traceback", out)
        first.wait_for(rf"^{a}: {b} is gone \(left\)$")

        # Ctrl-C: asyncio cancels main(), whose finally leaves the cluster.
        first.process.send_signal(signal.SIGINT)
        self.assertEqual(first.finish(), 0, first.output)
        self.assertIn(f"{a}: left the cluster", first.output)
        self.assertNotIn("Traceback", first.output)
        self.assertEqual(members_of(minietcd.url, "asyncio-example"), [])
