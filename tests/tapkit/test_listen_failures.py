"""A port already in use ends twistd and twist with one line and exit status 1.

Real processes: a socket on 127.0.0.1 takes a port, then the plugin is told to
listen there.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

BIN = Path(sys.executable).parent
NODE = ["clusternode", "--no-etcd", "--peer", "127.0.0.1:9"]


class ListenFailureTests(SynchronousTestCase):
    """Each listener option, its port taken: one line, exit 1, no traceback."""

    def taken(self, kind: int) -> int:
        """A port on 127.0.0.1 that a socket of C{kind} holds for this test."""
        held = socket.socket(socket.AF_INET, kind)
        self.addCleanup(held.close)
        held.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            held.listen()
        return int(held.getsockname()[1])

    def run_failing(self, program: str, *args: str) -> tuple[str, str]:
        """Run C{program} (twistd -n or twist), which must exit 1; its output."""
        argv = [str(BIN / program)]
        if program == "twistd":
            argv += ["-n", "--pidfile="]
        result = subprocess.run(
            [*argv, *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.mktemp_dir(),
        )
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        return result.stdout, result.stderr

    def mktemp_dir(self) -> str:
        path = Path(self.mktemp())
        path.mkdir(parents=True)
        return str(path)

    def test_udp_port_in_use(self) -> None:
        """twistd clusternode with a taken --udp-port says so on one line."""
        port = self.taken(socket.SOCK_DGRAM)
        _, stderr = self.run_failing(
            "twistd", *NODE, "--udp-port", str(port), "--udp-interface", "127.0.0.1"
        )
        self.assertEqual(
            stderr, f"clusternode: --udp-port {port}: address already in use\n"
        )

    def test_http_in_use(self) -> None:
        """twistd clusternode with a taken --http port says so on one line."""
        port = self.taken(socket.SOCK_STREAM)
        _, stderr = self.run_failing(
            "twistd",
            *NODE,
            "--udp-port",
            "0",
            "--udp-interface",
            "127.0.0.1",
            "--http",
            str(port),
        )
        self.assertEqual(
            stderr,
            f"clusternode: --http tcp:{port}:interface=127.0.0.1: "
            "address already in use\n",
        )

    def test_minietcd_listen_in_use(self) -> None:
        """twistd minietcd with a taken --listen says so on one line."""
        port = self.taken(socket.SOCK_STREAM)
        listen = f"tcp:{port}:interface=127.0.0.1"
        stdout, stderr = self.run_failing("twistd", "minietcd", "--listen", listen)
        line = f"minietcd: --listen {listen}: address already in use"
        self.assertEqual(stderr, line + "\n")
        self.assertIn(line, stdout)  # the log says it too

    def test_under_twist(self) -> None:
        """twist, which binds in startService, gets the same one line."""
        port = self.taken(socket.SOCK_STREAM)
        _, stderr = self.run_failing("twist", "minietcd", "--listen", str(port))
        self.assertEqual(
            stderr,
            f"minietcd: --listen tcp:{port}:interface=127.0.0.1: "
            "address already in use\n",
        )
        udp = self.taken(socket.SOCK_DGRAM)
        _, stderr = self.run_failing(
            "twist", *NODE, "--udp-port", str(udp), "--udp-interface", "127.0.0.1"
        )
        self.assertEqual(
            stderr, f"clusternode: --udp-port {udp}: address already in use\n"
        )
