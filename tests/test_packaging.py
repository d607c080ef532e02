"""The built wheel carries both plugins and never Twisted's own package files."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from twisted.trial.unittest import TestCase

ROOT = Path(__file__).resolve().parent.parent


class WheelTests(TestCase):
    def test_wheel_has_plugins_and_no_twisted_init(self) -> None:
        """The wheel ships both plugins, no twisted/__init__.py and no dropin.cache."""
        out = Path(self.mktemp()).resolve()
        out.mkdir()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "build",
                "--wheel",
                "--no-isolation",
                "-o",
                str(out),
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        (wheel,) = out.glob("*.whl")
        names = set(zipfile.ZipFile(wheel).namelist())
        self.assertIn("twisted/plugins/minietcd_plugin.py", names)
        self.assertIn("twisted/plugins/clusternode_plugin.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertFalse([n for n in names if n.endswith("dropin.cache")])
        self.assertIn("minietcd/store.py", names)
        self.assertIn("twistednode/discovery/membership.py", names)


class PluginTests(TestCase):
    def test_twistd_help_lists_both_plugins(self) -> None:
        """twistd --help lists the minietcd and clusternode subcommands."""
        result = subprocess.run(
            [str(Path(sys.executable).parent / "twistd"), "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            check=False,
        )
        self.assertIn("minietcd", result.stdout)
        self.assertIn("clusternode", result.stdout)
