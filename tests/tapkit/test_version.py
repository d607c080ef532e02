"""Both twistd plugins print the project's version, and Twisted's, on --version."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from twisted.trial.unittest import TestCase

from twisted import __version__ as twisted_version

TWISTD = str(Path(sys.executable).parent / "twistd")


def version_output(plugin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TWISTD, "-n", plugin, "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )


class VersionTests(TestCase):
    """C{twistd -n PLUGIN --version} names the plugin, our version and Twisted's."""

    def check(self, plugin: str) -> None:
        result = version_output(plugin)
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertEqual(
            result.stdout,
            f"{plugin} (twistednode) {version('twistednode')}, "
            f"Twisted {twisted_version}\n",
        )

    def test_clusternode_prints_project_version(self) -> None:
        """clusternode --version prints twistednode's version and exits 0."""
        self.check("clusternode")

    def test_minietcd_prints_project_version(self) -> None:
        """minietcd --version prints twistednode's version and exits 0."""
        self.check("minietcd")
