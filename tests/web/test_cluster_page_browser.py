"""
The live page of a real cluster in a real browser: minietcd and three
C{twistd clusternode} processes on 127.0.0.1, one node's page open in Debian's
headless Chromium, and the master killed with SIGKILL while the page watches.

Set TWISTEDNODE_SCREENSHOT=docs/status-page.png to save the page of the running
three-node cluster there (this is how the README's screenshot is made).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

from twisted.internet.interfaces import IReactorProcess
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.harness.browser import Browser, assert_png
from tests.harness.clusternodes import (
    ClusterNodeProcess,
    agreed_master_of,
    stop_nodes,
    wait_for_agreed_master,
    wait_for_cluster,
)
from tests.harness.requirements import require_binary
from tests.harness.servers import MiniEtcdProcess
from tests.web.test_status_page_browser import node_text

NODES = "document.querySelectorAll('#ring [data-node-id]')"
MASTERS = "document.querySelectorAll('#ring [data-master=\"true\"]')"
STARS = (
    "Array.from(document.querySelectorAll('#ring [data-node-id]'))"
    ".filter(e => e.innerText.includes('★')).map(e => e.dataset.nodeId)"
)
"""JS: the ids of the drawn nodes that show a star anywhere in their visible text."""

HOSTS = ("alpha", "bravo", "charlie")
ROLES = ("web", "worker", "worker")
WEIGHTS = (3.0, 2.0, 1.0)
"""Explicit weights, so that the page shows short numbers."""

START = 30.0
"""Seconds for the nodes to start and agree (they take about one on an idle box)."""

FAILOVER = 20.0
"""Seconds for the page to show the new master after the kill (2-3 s by design)."""


@contextmanager
def host_name(name: str) -> Iterator[None]:
    """Processes started inside get C{DISCOVERY_HOSTNAME=name} (node-discover's)."""
    before = os.environ.get("DISCOVERY_HOSTNAME")
    os.environ["DISCOVERY_HOSTNAME"] = name
    try:
        yield
    finally:
        if before is None:
            del os.environ["DISCOVERY_HOSTNAME"]
        else:
            os.environ["DISCOVERY_HOSTNAME"] = before


class ClusterPageBrowserTests(TestCase):
    """A node's page shows the real cluster and follows a real fail-over."""

    timeout = 180

    def start_cluster(self, cluster: str) -> list[ClusterNodeProcess]:
        """minietcd and three nodes, launched together, all answering."""
        minietcd = MiniEtcdProcess().start()
        self.addCleanup(minietcd.stop)
        nodes = [
            ClusterNodeProcess(
                etcd=minietcd.url,
                cluster=cluster,
                weight=weight,
                extra_args=[
                    "--advertisement",
                    json.dumps({"role": role, "version": "0.1.0"}),
                ],
            )
            for role, weight in zip(ROLES, WEIGHTS, strict=True)
        ]
        self.addCleanup(stop_nodes, nodes)
        for node, host in zip(nodes, HOSTS, strict=True):
            with host_name(host):
                node.launch()
        for node in nodes:
            node.wait_ready(START)
        return nodes

    def epoch_in(self, fact: str) -> int:
        """The epoch in the header's election fact, "lease · epoch N"."""
        match = re.fullmatch(r"lease · epoch (\d+)", fact)
        assert match is not None, fact
        return int(match.group(1))

    async def test_page_follows_real_failover(self) -> None:
        """Three nodes and one star; after SIGKILL of the master, the new one."""
        chromium = require_binary("chromium", "chromium")
        from twisted.internet import reactor

        nodes = self.start_cluster("page-demo")
        ids = {n.id for n in nodes}
        # Which node wins is the election's business (tests/election,
        # tests/integration); the page must show the one the nodes agree on.
        master = wait_for_agreed_master(
            nodes, START, "three nodes agreeing on one master"
        )
        # Watch from a node that will survive the kill.
        viewer = next(n for n in nodes if n.id != master)
        browser = await Browser.start(cast(IReactorProcess, reactor), chromium)
        self.addCleanup(browser.close)
        await browser.open(f"http://127.0.0.1:{viewer.http_port}/")
        await browser.wait_for(
            f"{NODES}.length === 3 && {MASTERS}.length === 1 && "
            "document.getElementById('app').dataset.connection === 'live'",
            timeout=START,
        )

        # Three nodes, exactly one star, on the master the nodes agree on.
        self.assertEqual(await browser.evaluate(f"{MASTERS}[0].dataset.nodeId"), master)
        self.assertEqual(await browser.evaluate(STARS), [master])
        self.assertEqual(
            sorted(
                await browser.evaluate(
                    f"Array.from({NODES}).map(e => e.dataset.nodeId)"
                )
            ),
            sorted(ids),
        )
        self.assertEqual(
            await browser.evaluate(
                "Array.from(document.querySelectorAll('#ring [data-me=\"true\"]'))"
                ".map(e => e.dataset.nodeId)"
            ),
            [viewer.id],
        )
        self.assertEqual(
            await browser.evaluate("document.getElementById('fact-master').innerText"),
            f"★ {master[:8]}",
        )
        self.assertEqual(
            await browser.evaluate("document.getElementById('cluster-name').innerText"),
            "page-demo",
        )
        me = await browser.evaluate(node_text(viewer.id))
        self.assertIn(f"127.0.0.1:{viewer.udp_port}", me)
        role = ROLES[nodes.index(viewer)]
        self.assertIn(f"role: {role}, version: 0.1.0", me)
        self.assertIn(
            "watching",
            await browser.evaluate(
                "document.getElementById('fact-registry').innerText"
            ),
        )
        # The registry's lease elects here: the header names the master's epoch.
        fact = "document.getElementById('fact-election').innerText"
        first_epoch = self.epoch_in(await browser.evaluate(fact))
        # Let "hello ... ago" and "up ..." settle into their steady values.
        await deferLater(reactor, 1.5, lambda: None)
        before = self.mktemp() + "-before.png"
        await browser.screenshot(before, full_page=True)
        assert_png(self, before)
        wanted = os.environ.get("TWISTEDNODE_SCREENSHOT")
        if wanted:
            shutil.copyfile(before, wanted)

        # SIGKILL the master: no goodbye; the others time it out and elect.
        killed = time.monotonic()
        next(n for n in nodes if n.id == master).kill()
        survivors = ids - {master}
        await browser.wait_for(
            f"{NODES}.length === 2 && {MASTERS}.length === 1 && "
            f"{MASTERS}[0].dataset.nodeId !== '{master}'",
            timeout=FAILOVER,
        )
        seen = time.monotonic() - killed
        new_master = await browser.evaluate(f"{MASTERS}[0].dataset.nodeId")
        self.assertIn(new_master, survivors)
        self.assertEqual(await browser.evaluate(STARS), [new_master])
        # The page shows what the nodes themselves agree on.
        after = wait_for_cluster(
            [n for n in nodes if n.id != master],
            lambda views: agreed_master_of(views) is not None,
            FAILOVER,
            "the survivors agreeing on a new master",
        )
        self.assertEqual(agreed_master_of(after.views), new_master)
        # Not sooner than a crashed node can be timed out (2 s less a hello).
        self.assertGreaterEqual(seen, 1.0)
        self.assertEqual(
            await browser.evaluate("document.getElementById('app').dataset.connection"),
            "live",
        )
        # The new term's epoch is higher: a fencing token the old master cannot use.
        await browser.wait_for(
            f"/^lease · epoch \\d+$/.test({fact}) && {fact} !== "
            f"'lease · epoch {first_epoch}'",
            timeout=FAILOVER,
        )
        self.assertGreater(self.epoch_in(await browser.evaluate(fact)), first_epoch)
        shot = self.mktemp() + "-after.png"
        await browser.screenshot(shot, full_page=True)
        assert_png(self, shot)
        self.assertEqual(browser.console, [])
