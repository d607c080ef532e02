"""Tests for twistednode.cli.main: one line and exit 1 for what an operator can fix."""

from __future__ import annotations

import io

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from minietcd.api import KeysAPI
from minietcd.store import Store
from tests.etcd.test_v2 import RefusingHosts
from twistednode.cli.main import parse, run


class ParseTests(SynchronousTestCase):
    def test_mistake_is_one_line(self) -> None:
        """A wrong option prints one line naming the command, and no options."""
        err = io.StringIO()
        self.assertIsNone(parse(["members", "--etcd", "nowhere"], err))
        (line,) = err.getvalue().splitlines()
        self.assertTrue(line.startswith("twistednode members: --etcd 'nowhere'"), line)

    def test_unknown_command(self) -> None:
        """An unknown command is one line too."""
        err = io.StringIO()
        self.assertIsNone(parse(["frobnicate"], err))
        self.assertEqual(len(err.getvalue().splitlines()), 1)


class RunTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_764_165_000)
        self.keys = KeysAPI(clock=self.clock, store=Store())
        self.addCleanup(self.keys.stop)
        self.http = RefusingHosts(StubTreq(self.keys.resource()))

    def test_unreachable_registry_exits_1(self) -> None:
        """A registry out of reach: one line on stderr, nothing on stdout, exit 1."""
        self.http.down.add("etcd")
        config = parse(["members", "--etcd", "http://etcd:2379"], io.StringIO())
        assert config is not None
        out, err = io.StringIO(), io.StringIO()
        d = run(self.clock, config, out, err, http=self.http)
        failure = self.failureResultOf(d, SystemExit)
        self.assertEqual(failure.value.code, 1)
        (line,) = err.getvalue().splitlines()
        self.assertTrue(
            line.startswith("twistednode members: cannot read the registry")
        )
        self.assertEqual(out.getvalue(), "")

    def test_success_prints_to_stdout(self) -> None:
        """A reachable registry: the table on stdout, nothing on stderr."""
        config = parse(["members", "--etcd", "http://etcd:2379"], io.StringIO())
        assert config is not None
        out, err = io.StringIO(), io.StringIO()
        self.successResultOf(run(self.clock, config, out, err, http=self.http))
        self.assertIn("cluster default", out.getvalue())
        self.assertEqual(err.getvalue(), "")
