"""
The live page in a real browser: Debian's headless Chromium against a StatusAPI served
on 127.0.0.1, whose provider the test changes while the page is open.

(docs/status-page.png is made from a real cluster by test_cluster_page_browser.)
"""

from __future__ import annotations

from typing import Any, cast

from attrs import define, field
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorProcess,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import TestCase
from twisted.web.resource import IResource
from twisted.web.server import Site

from tests.harness.browser import Browser, assert_png
from tests.harness.requirements import require_binary
from tests.web.test_status import NODE_IDS, FakeCluster
from twistednode.discovery.settings import default_weight
from twistednode.web.status import StatusAPI

NODES = "document.querySelectorAll('#ring [data-node-id]')"
MASTERS = "document.querySelectorAll('#ring [data-master=\"true\"]')"


def node_text(node_id: str) -> str:
    """JS: the visible text of the node drawn for C{node_id}."""
    return f"document.querySelector('#ring [data-node-id=\"{node_id}\"]').innerText"


class _TrackingFactory(WrappingFactory):
    """A WrappingFactory that can tell when its last connection is gone."""

    def __init__(self, wrapped: Site) -> None:
        super().__init__(wrapped)
        self.drained: list[Deferred[None]] = []

    def unregisterProtocol(self, p: Protocol) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiting, self.drained = self.drained, []
            for d in waiting:
                d.callback(None)


@define(eq=False)
class Server:
    """A resource served on 127.0.0.1 by the real reactor; close() leaves nothing."""

    reactor: Any
    resource: IResource
    port_number: int = 0
    _factory: _TrackingFactory | None = None
    _port: IListeningPort | None = field(default=None)

    @property
    def url(self) -> str:
        """The page's address."""
        return f"http://127.0.0.1:{self.port_number}/"

    def listen(self) -> None:
        """Listen (again, on the same port once it has had one)."""
        self._factory = _TrackingFactory(Site(self.resource))
        self._port = self.reactor.listenTCP(
            self.port_number, self._factory, interface="127.0.0.1"
        )
        host = self._port.getHost()
        assert isinstance(host, IPv4Address)
        self.port_number = host.port

    async def close(self) -> None:
        """Stop listening, abort open connections and wait until they are gone."""
        if self._port is not None:
            port, self._port = self._port, None
            await maybeDeferred(port.stopListening)
        factory, self._factory = self._factory, None
        if factory is None or not factory.protocols:
            return
        drained: Deferred[None] = Deferred()
        factory.drained.append(drained)
        for protocol in list(factory.protocols):
            assert isinstance(protocol, ProtocolWrapper)
            ITCPTransport(protocol.transport).abortConnection()
        await drained.addTimeout(10, self.reactor)


class StatusPageBrowserTests(TestCase):
    """The page draws the cluster and follows it live, in a real Chromium."""

    timeout = 120

    async def open_page(
        self, start_pushing: bool, query: str = ""
    ) -> tuple[FakeCluster, StatusAPI, Server, Browser]:
        chromium = require_binary("chromium", "chromium")
        from twisted.internet import reactor

        cluster = FakeCluster()
        api = StatusAPI(provider=cluster.document, clock=cast(IReactorTime, reactor))
        self.addCleanup(api.stop)
        if start_pushing:
            api.start()
        server = Server(reactor, api.resource())
        server.listen()
        self.addCleanup(server.close)
        browser = await Browser.start(cast(IReactorProcess, reactor), chromium)
        self.addCleanup(browser.close)
        await browser.open(server.url + query)
        await browser.wait_for(
            f"{NODES}.length === 3 && "
            "document.getElementById('app').dataset.connection === "
            f"'{'polling' if query else 'live'}'"
        )
        return cluster, api, server, browser

    async def test_page_follows_master_change(self) -> None:
        """Three nodes, one star, "me"; when the master goes, the page redraws."""
        cluster, api, server, browser = await self.open_page(start_pushing=False)

        self.assertEqual(await browser.evaluate(f"{MASTERS}.length"), 1)
        self.assertEqual(
            await browser.evaluate(f"{MASTERS}[0].dataset.nodeId"), NODE_IDS[1]
        )
        self.assertIn("★", await browser.evaluate(node_text(NODE_IDS[1])))
        self.assertEqual(
            await browser.evaluate(
                "Array.from(document.querySelectorAll('#ring [data-me=\"true\"]'))"
                ".map(e => e.dataset.nodeId)"
            ),
            [NODE_IDS[0]],
        )
        me = await browser.evaluate(node_text(NODE_IDS[0]))
        self.assertIn("127.0.0.1:41001", me)
        self.assertIn("ME", me.upper())
        other = await browser.evaluate(node_text(NODE_IDS[2]))
        for shown in (NODE_IDS[2][:8], "127.0.0.1:41003", "weight 1", "1.4 s ago"):
            self.assertIn(shown, other)
        self.assertEqual(
            await browser.evaluate("document.getElementById('cluster-name').innerText"),
            "demo",
        )
        self.assertIn(
            "watching",
            await browser.evaluate(
                "document.getElementById('fact-registry').innerText"
            ),
        )
        before = self.mktemp() + "-before.png"
        await browser.screenshot(before, full_page=True)
        assert_png(self, before)

        # The master goes away and the third node takes over; no periodic push is
        # running, and the page must have had it from the stream, not by polling.
        cluster.ids.remove(NODE_IDS[1])
        cluster.master = NODE_IDS[2]
        api.changed()
        await browser.wait_for(
            f"{NODES}.length === 2 && {MASTERS}.length === 1 && "
            f"{MASTERS}[0].dataset.nodeId === '{NODE_IDS[2]}'",
            timeout=4,
        )
        self.assertIn("★", await browser.evaluate(node_text(NODE_IDS[2])))
        self.assertEqual(
            await browser.evaluate(
                "[document.getElementById('app').dataset.connection,"
                " document.getElementById('app').dataset.via]"
            ),
            ["live", "stream"],
        )
        self.assertEqual(
            await browser.evaluate(
                "document.querySelectorAll('#nodes-body tr').length"
            ),
            2,
        )
        after = self.mktemp() + "-after.png"
        await browser.screenshot(after, full_page=True)
        assert_png(self, after)
        self.assertEqual(browser.console, [])

    async def test_periodic_push_moves_last_hello(self) -> None:
        """With start(), time since the last hello moves on the page by itself."""
        cluster, api, server, browser = await self.open_page(start_pushing=True)
        cluster.seen[NODE_IDS[2]] = 7.5
        await browser.wait_for(
            f"{node_text(NODE_IDS[2])}.includes('no hello for 7.5 s')"
        )
        self.assertEqual(
            await browser.evaluate(
                f"document.querySelector('#ring [data-node-id=\"{NODE_IDS[2]}\"]')"
                ".dataset.late"
            ),
            "true",
        )
        self.assertEqual(browser.console, [])

    async def test_node_going_away_is_shown(self) -> None:
        """When the node stops answering the page says so, and recovers when back."""
        cluster, api, server, browser = await self.open_page(start_pushing=True)
        api.stop()
        await server.close()
        await browser.wait_for(
            "document.getElementById('app').dataset.connection === 'offline' && "
            "!document.getElementById('offline-banner').hidden"
        )
        banner = await browser.evaluate(
            "document.getElementById('offline-banner').innerText"
        )
        self.assertIn("Lost contact with the node", banner)
        # The last known cluster stays drawn, dimmed, while it is unreachable.
        self.assertEqual(await browser.evaluate(f"{NODES}.length"), 3)
        offline = self.mktemp() + "-offline.png"
        await browser.screenshot(offline)
        assert_png(self, offline)

        cluster.master = NODE_IDS[0]
        api.start()
        server.listen()
        await browser.wait_for(
            "document.getElementById('app').dataset.connection === 'live' && "
            f"{MASTERS}[0].dataset.nodeId === '{NODE_IDS[0]}'",
            timeout=15,
        )
        self.assertTrue(
            await browser.evaluate("document.getElementById('offline-banner').hidden")
        )

    async def test_network_values_shown_as_they_are(self) -> None:
        """Values from other nodes are text, never markup; claims and gaps are named."""
        cluster, api, server, browser = await self.open_page(start_pushing=False)
        evil = '<img src=x onerror="window.pwned=1">'
        original = cluster.document

        def document() -> dict[str, Any]:
            doc = original()
            doc["members"][0]["advertisement"] = {"note": evil}
            doc["members"][0]["hostName"] = evil
            doc["cluster"] = "<b>bold</b>"
            doc["members"][1]["isMaster"] = True
            doc["members"][1]["lastSeen"] = None
            return doc

        api.provider = document
        api.changed()
        await browser.wait_for(
            "document.getElementById('cluster-name').innerText === '<b>bold</b>'"
        )
        self.assertEqual(
            await browser.evaluate("document.querySelectorAll('img, b').length"), 0
        )
        self.assertIsNone(await browser.evaluate("window.pwned"))
        table = await browser.evaluate(
            "document.getElementById('nodes-body').innerText"
        )
        self.assertIn(evil, table)
        # A node that says it is master, but is not the one this node agreed on, is
        # not starred: it is named as claiming it.
        self.assertIn("claims master", table)
        self.assertIn("no hello yet", table)
        self.assertEqual(await browser.evaluate(f"{MASTERS}.length"), 1)
        self.assertEqual(browser.console, [])

    async def test_long_weight_fits_the_card(self) -> None:
        """A long weight that is no start time is cut to six digits on the card,
        whole in its tooltip and in the table."""
        cluster, api, server, browser = await self.open_page(start_pushing=False)
        weight = -0.17642112001234
        original = cluster.document

        def document() -> dict[str, Any]:
            doc = original()
            doc["members"][1]["weight"] = weight
            return doc

        api.provider = document
        api.changed()
        card = f"document.querySelector('#ring [data-node-id=\"{NODE_IDS[2]}\"] .meta')"
        await browser.wait_for(f"{card}.innerText.includes('-0.176421')")
        self.assertEqual(
            await browser.evaluate(f"{card}.innerText"),
            "weight -0.176421 · not eligible",
        )
        self.assertEqual(await browser.evaluate(f"{card}.title"), f"weight {weight}")
        self.assertEqual(
            await browser.evaluate(f"{card}.scrollWidth <= {card}.clientWidth"),
            True,
        )
        table = await browser.evaluate(
            "document.getElementById('nodes-body').innerText"
        )
        self.assertIn(str(weight), table)
        self.assertEqual(browser.console, [])

    async def test_default_weight_shown_as_start_time(self) -> None:
        """node-discover's default weight (minus the start time) reads as that time:
        "started HH:MM:SS, oldest wins"; the number stays in the tooltip and table."""
        cluster, api, server, browser = await self.open_page(start_pushing=False)
        started_ms = int((cluster.now - 320) * 1000) + 123
        weight = default_weight(started_ms)
        original = cluster.document

        def document() -> dict[str, Any]:
            doc = original()
            doc["members"][0]["weight"] = weight
            doc["members"][1]["weight"] = weight - 1e-13
            return doc

        api.provider = document
        api.changed()
        node = f"document.querySelector('#ring [data-node-id=\"{NODE_IDS[1]}\"]')"
        card = f"{node}.querySelector('.meta')"
        await browser.wait_for(f"{node}.dataset.weight === 'start-time'")
        shown = await browser.evaluate(f"{card}.innerText")
        self.assertRegex(shown, r"^started \d\d:\d\d:\d\d, oldest wins$")
        # Local time: the seconds are the same in every time zone.
        self.assertEqual(int(shown[14:16]), started_ms // 1000 % 60)
        title = await browser.evaluate(f"{card}.title")
        self.assertIn(f"weight {weight}", title)
        self.assertIn("2025-11-24T15:54:40.123Z", title)
        self.assertEqual(
            await browser.evaluate(f"{card}.scrollWidth <= {card}.clientWidth"),
            True,
        )
        # Not eligible: the start time, without "oldest wins".
        other = f'#ring [data-node-id="{NODE_IDS[2]}"] .meta'
        self.assertRegex(
            await browser.evaluate(f"document.querySelector('{other}').innerText"),
            r"^started \d\d:\d\d:\d\d · not eligible$",
        )
        row = await browser.evaluate(
            f"document.querySelector('#nodes-body [data-row-id=\"{NODE_IDS[1]}\"]')"
            ".innerText"
        )
        self.assertIn(shown.split(",")[0], row)
        self.assertIn(str(weight), row)
        # This node's own weight (1) is no start time: a number.
        self.assertIn(
            "weight 1 · eligible", await browser.evaluate(node_text(NODE_IDS[0]))
        )
        self.assertEqual(browser.console, [])

    async def test_election_mode_and_epoch_shown(self) -> None:
        """node-discover's election reads "by weight"; under the lease the header
        gives the master's epoch, the panel this node's term, and no card says
        "oldest wins"."""
        cluster, api, server, browser = await self.open_page(start_pushing=False)
        fact = "document.getElementById('fact-election')"
        self.assertEqual(
            await browser.evaluate(f"{fact}.innerText"), "node-discover · by weight"
        )
        started_ms = int((cluster.now - 320) * 1000)
        original = cluster.document

        def document() -> dict[str, Any]:
            doc = original()
            doc["members"][0]["weight"] = default_weight(started_ms)
            doc["election"] = {
                "mode": "lease",
                "registryListed": True,
                "epoch": None,
                "validFor": 0.0,
                "masterEpoch": 1796332728176,
                "ttl": 2,
                "listed": True,
                "terms": 0,
                "stepDowns": 1,
            }
            return doc

        api.provider = document
        api.changed()
        await browser.wait_for(f"{fact}.dataset.mode === 'lease'")
        self.assertEqual(
            await browser.evaluate(f"{fact}.innerText"), "lease · epoch 1796332728176"
        )
        card = f'#ring [data-node-id="{NODE_IDS[1]}"] .meta'
        self.assertRegex(
            await browser.evaluate(f"document.querySelector('{card}').innerText"),
            r"^started \d\d:\d\d:\d\d · eligible$",
        )
        panel = await browser.evaluate("document.getElementById('election').innerText")
        for shown in ("1796332728176", "not master", "2 s", "step-downs"):
            self.assertIn(shown, panel)
        self.assertEqual(browser.console, [])

    async def test_poll_only(self) -> None:
        """With ?poll the page draws from polling alone (for a headless screenshot)."""
        cluster, api, server, browser = await self.open_page(
            start_pushing=True, query="?poll"
        )
        self.assertEqual(
            await browser.evaluate("document.getElementById('app').dataset.via"),
            "poll",
        )
        self.assertEqual(api.subscriber_count, 0)
        self.assertEqual(browser.console, [])
