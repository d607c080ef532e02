"""C{twistednode new-key} and C{python -m twistednode new-key}: one keyring line."""

from __future__ import annotations

import io
import subprocess
import sys

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twistednode.cli.main import parse, run
from twistednode.trust.keyring import parse_keyring


class NewKeyTests(SynchronousTestCase):
    """A new random key, printed as a line a keyring file takes."""

    def test_prints_one_new_key(self) -> None:
        """Two runs print two different 32-byte keys."""
        lines = []
        for _ in range(2):
            config = parse(["new-key"], io.StringIO())
            assert config is not None
            out = io.StringIO()
            self.successResultOf(run(Clock(), config, out, io.StringIO()))
            lines.append(out.getvalue())
        self.assertNotEqual(lines[0], lines[1])
        self.assertEqual(len(parse_keyring("".join(lines)).keys), 2)

    def test_takes_no_arguments(self) -> None:
        """An extra argument is one usage line."""
        err = io.StringIO()
        self.assertIsNone(parse(["new-key", "extra"], err))
        self.assertEqual(len(err.getvalue().splitlines()), 1)

    def test_python_dash_m_runs_the_command(self) -> None:
        """python -m twistednode new-key prints a key and exits 0."""
        done = subprocess.run(
            [sys.executable, "-m", "twistednode", "new-key"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(len(parse_keyring(done.stdout).send_key), 32)
