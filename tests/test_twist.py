"""Both plugins run under C{twist} too, logging structured JSON events."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.harness.childprocess import OutputProcess, end

TWIST = str(Path(sys.executable).parent / "twist")


def events(output: str) -> list[dict[str, object]]:
    """The JSON log events in C{twist --log-format=json} output (one per line)."""
    found = []
    for line in output.splitlines():
        line = line.strip().lstrip("\x1e")
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


class TwistTests(SynchronousTestCase):
    def run_plugin(self, *args: str, pattern: str) -> list[dict[str, object]]:
        child = OutputProcess([TWIST, "--log-format=json", *args], what="twist")
        self.addCleanup(child.kill)
        output = child.wait_for(pattern, timeout=60)
        end(child.process, 10)
        return events(output)

    def test_minietcd_under_twist_logs_json(self) -> None:
        """twist minietcd logs its listening URL as a JSON event with fields."""
        found = self.run_plugin(
            "minietcd",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            pattern="minietcd listening on",
        )
        (event,) = [e for e in found if "listening on" in str(e.get("log_format"))]
        self.assertRegex(str(event["url"]), r"^http://127\.0\.0\.1:\d+$")

    def test_clusternode_under_twist_logs_json(self) -> None:
        """twist clusternode starts a node and logs its id and port as JSON fields."""
        found = self.run_plugin(
            "clusternode",
            "--no-etcd",
            "--peer",
            "127.0.0.1:9",
            "--udp-port",
            "0",
            "--udp-interface",
            "127.0.0.1",
            pattern="of cluster",
        )
        (event,) = [
            e for e in found if e.get("log_namespace") == "twistednode.node.ClusterNode"
        ]
        self.assertEqual(event["cluster"], "default")
        self.assertIsInstance(event["port"], int)
        self.assertRegex(str(event["node_id"]), r"^[0-9a-f-]{36}$")
