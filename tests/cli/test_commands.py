"""Tests for twistednode.cli.commands over StubTreq: minietcd's v2 API, the fake v3
gateway and a node's status API, on a Clock."""

from __future__ import annotations

import io
import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from minietcd.api import KeysAPI
from minietcd.store import Store
from tests.cli.helpers import IDS, NOW, record
from tests.etcd.test_v2 import RefusingHosts
from tests.harness.fakev3 import FakeEtcdV3
from twistednode.cli.commands import CommandFailed, members, status, watch
from twistednode.cli.options import MembersOptions, StatusOptions, WatchOptions
from twistednode.registry.backends import make_backend
from twistednode.web.status import StatusAPI

URL = "http://etcd:2379"
MEMBERS = "/twistednode/demo/members"


class _Registry(SynchronousTestCase):
    """A store behind StubTreq; records written through the node's own backend."""

    api = "v2"

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        if self.api == "v2":
            self.keys = KeysAPI(clock=self.clock, store=Store())
            self.addCleanup(self.keys.stop)
            resource = self.keys.resource()
        else:
            resource = FakeEtcdV3(self.clock).resource()
        self.stub = StubTreq(resource)
        self.http = RefusingHosts(self.stub)
        self.writer = make_backend(self.clock, [URL], api=self.api, http=self.http)

    def write(self, i: int, client: bool = False) -> None:
        """Register member C{i} as its node would."""
        d = self.writer.create(f"{MEMBERS}/{IDS[i]}", record(i, client).to_json(), 10)
        self.stub.flush()
        self.successResultOf(d)

    def set_master(self, i: int) -> None:
        d = self.writer.create("/twistednode/demo/master", IDS[i], 2)
        self.stub.flush()
        self.successResultOf(d)

    def delete(self, i: int) -> None:
        d = self.writer.delete(f"{MEMBERS}/{IDS[i]}")
        self.stub.flush()
        self.successResultOf(d)

    def options(self, cls: Any, *argv: str) -> Any:
        config = cls(environ={})
        config.parseOptions(["--etcd", URL, "--cluster", "demo", *argv])
        return config

    def run_members(self, *argv: str) -> str:
        out = io.StringIO()
        d = Deferred.fromCoroutine(
            members(self.clock, self.options(MembersOptions, *argv), out, self.http)
        )
        self.stub.flush()
        self.successResultOf(d)
        return out.getvalue()


class MembersV2Tests(_Registry):
    """members on minietcd (etcd v2)."""

    def test_table_from_the_registry(self) -> None:
        """Every record and the master key, with the API the probe found."""
        self.write(0)
        self.write(1, client=True)
        self.set_master(0)
        text = self.run_members("--etcd-api", "auto")
        heading, _header, first, second = text.splitlines()
        self.assertIn(f"(etcd {self.api})", heading)
        self.assertIn(f"2 members, master {IDS[0]}", heading)
        self.assertTrue(first.startswith(IDS[0]) and first.endswith("*"))
        self.assertIn("client", second)

    def test_json(self) -> None:
        """--json carries the members and the master with its epoch."""
        self.write(0)
        self.set_master(0)
        document = json.loads(self.run_members("--json"))
        self.assertEqual(document["master"]["id"], IDS[0])
        self.assertIsInstance(document["master"]["epoch"], int)
        self.assertEqual([m["id"] for m in document["members"]], [IDS[0]])

    def test_empty_cluster(self) -> None:
        """A cluster nobody registered in is zero members, no master."""
        self.assertIn("0 members, no master", self.run_members())

    def test_unreachable_is_one_line(self) -> None:
        """A registry nobody answers for fails with a CommandFailed naming it."""
        self.http.down.add("etcd")
        out = io.StringIO()
        d = Deferred.fromCoroutine(
            members(self.clock, self.options(MembersOptions), out, self.http)
        )
        failure = self.failureResultOf(d, CommandFailed)
        message = failure.getErrorMessage()
        self.assertIn(f"cannot read the registry at {URL}", message)
        self.assertNotIn("\n", message)
        self.assertEqual(out.getvalue(), "")


class MembersV3Tests(MembersV2Tests):
    """members on the v3 gateway."""

    api = "v3"


class WatchV2Tests(_Registry):
    """watch follows joins, leaves and master changes."""

    def start(self) -> tuple[Deferred[None], io.StringIO]:
        out = io.StringIO()
        config = self.options(WatchOptions)
        d = Deferred.fromCoroutine(watch(self.clock, config, out, self.http))
        self.stub.flush()
        return d, out

    def lines(self, out: io.StringIO) -> list[str]:
        return [line.split("  ", 1)[1] for line in out.getvalue().splitlines()]

    def test_follows_the_cluster(self) -> None:
        """The snapshot, then a join, a master, a leave: one line each."""
        self.write(0)
        d, out = self.start()
        self.write(1)
        self.set_master(1)
        self.delete(1)
        self.stub.flush()
        lines = self.lines(out)
        self.assertEqual(len(lines), 4, lines)
        self.assertTrue(lines[0].startswith("watching  cluster demo"), lines)
        self.assertIn("1 member, no master", lines[0])
        self.assertTrue(lines[1].startswith(f"joined    {IDS[1]}"), lines)
        self.assertTrue(lines[2].startswith(f"master    {IDS[1]}"), lines)
        self.assertTrue(lines[3].startswith(f"left      {IDS[1]}"), lines)
        self.assertIn("(deleted)", lines[3])
        d.cancel()
        self.stub.flush()
        self.failureResultOf(d)

    def test_unreachable_at_start_fails(self) -> None:
        """A registry out of reach when the watch starts is a CommandFailed."""
        self.http.down.add("etcd")
        d, out = self.start()
        self.failureResultOf(d, CommandFailed)

    def test_outage_is_two_lines(self) -> None:
        """A registry lost while watching: one line, one more when it is back, and
        what changed meanwhile."""
        d, out = self.start()
        self.http.down.add("etcd")
        self.clock.advance(31)  # the watch times out and lists again
        self.stub.flush()
        self.clock.advance(1)
        self.stub.flush()
        self.http.down.discard("etcd")
        self.write(2)
        for _ in range(20):
            self.clock.advance(1)
            self.stub.flush()
        lines = self.lines(out)
        self.assertTrue(lines[1].startswith("registry  unreachable"), lines)
        self.assertEqual(
            sum(line.startswith("registry  unreachable") for line in lines), 1, lines
        )
        self.assertIn("registry  reachable", lines)
        self.assertTrue(any(line.startswith(f"joined    {IDS[2]}") for line in lines))
        d.cancel()
        self.stub.flush()
        self.failureResultOf(d)


class WatchV3Tests(WatchV2Tests):
    """watch on the v3 gateway."""

    api = "v3"


class StatusTests(SynchronousTestCase):
    """status reads a node's /status."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.document: Any = {
            "cluster": "demo",
            "now": NOW,
            "self": {"id": IDS[0], "isMaster": False},
            "master": None,
            "members": [],
            "registry": {"state": "disabled"},
            "election": {"mode": "node-discover"},
            "dropped": {},
        }
        api = StatusAPI(provider=lambda: self.document, clock=self.clock)
        self.http = RefusingHosts(StubTreq(api.resource()))

    def run_status(self, *argv: str) -> Deferred[None]:
        config = StatusOptions()
        config.parseOptions([*argv, "http://node:8080"])
        self.out = io.StringIO()
        return Deferred.fromCoroutine(status(self.clock, config, self.out, self.http))

    def test_readable(self) -> None:
        """The document is printed for a terminal."""
        self.successResultOf(self.run_status())
        self.assertIn(f"node      {IDS[0]}", self.out.getvalue())

    def test_json(self) -> None:
        """--json prints the document as it is."""
        self.successResultOf(self.run_status("--json"))
        self.assertEqual(json.loads(self.out.getvalue()), self.document)

    def test_unreachable(self) -> None:
        """A node that refuses the connection is one line naming the URL."""
        self.http.down.add("node")
        failure = self.failureResultOf(self.run_status(), CommandFailed)
        self.assertIn("cannot reach http://node:8080/status", str(failure.value))

    def test_not_a_node(self) -> None:
        """An answer that is not a status document is refused."""
        self.document = ["not", "a", "status"]
        failure = self.failureResultOf(self.run_status(), CommandFailed)
        self.assertIn("not a node's status", str(failure.value))

    def test_timeout(self) -> None:
        """A node that does not answer in --timeout seconds is one line."""

        class Hung:
            def request(self, method: str, url: str, **kw: Any) -> Deferred[Any]:
                return Deferred()

        config = StatusOptions()
        config.parseOptions(["--timeout", "2", "http://node:8080"])
        d = Deferred.fromCoroutine(status(self.clock, config, io.StringIO(), Hung()))
        self.clock.advance(2)
        failure = self.failureResultOf(d, CommandFailed)
        self.assertIn("within 2 s", str(failure.value))
