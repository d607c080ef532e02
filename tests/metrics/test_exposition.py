"""Tests for twistednode.metrics.exposition: GET /metrics on a node's --http."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from tests.harness.fakes import MemoryUDPReactor
from tests.test_node import IDS, static_cluster
from twistednode.discovery.protocol import HelloStats
from twistednode.metrics.exposition import NodeMetrics
from twistednode.node import ClusterNode

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
TEXT = "text/plain; version=0.0.4; charset=utf-8"


def samples_of(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class NodeMetricsTests(SynchronousTestCase):
    """Three nodes in one process, each with --http, scraped through StubTreq."""

    def setUp(self) -> None:
        self.reactor = MemoryUDPReactor()
        self.nodes = static_cluster(self.reactor, 3, http="tcp:0:interface=127.0.0.1")
        for node in self.nodes:
            node.startService()
            self.addCleanup(node.stopService)

    def get(self, node: ClusterNode, **headers: str) -> tuple[Any, bytes]:
        assert node._status is not None
        http = StubTreq(node._status.resource())
        response = self.successResultOf(
            http.get(
                "http://node/metrics",
                headers={k.replace("_", "-"): [v] for k, v in headers.items()},
            )
        )
        return response, self.successResultOf(response.content())

    def scrape(self, node: ClusterNode) -> Samples:
        response, body = self.get(node)
        self.assertEqual(response.code, 200)
        return samples_of(body.decode("utf-8"))

    def test_prometheus_text(self) -> None:
        """The default answer is Prometheus text, not cached."""
        response, body = self.get(self.nodes[0])
        self.assertEqual(response.headers.getRawHeaders("content-type"), [TEXT])
        self.assertEqual(response.headers.getRawHeaders("cache-control"), ["no-store"])
        self.assertIn(b"# TYPE twistednode_hellos_received_total counter", body)

    def test_openmetrics_when_asked(self) -> None:
        """A scraper asking for OpenMetrics gets it, ending with # EOF."""
        response, body = self.get(
            self.nodes[0], accept="application/openmetrics-text; version=1.0.0"
        )
        (content_type,) = response.headers.getRawHeaders("content-type")
        self.assertTrue(content_type.startswith("application/openmetrics-text"))
        self.assertTrue(body.endswith(b"# EOF\n"))

    def test_each_node_its_own_numbers(self) -> None:
        """Nodes of one process do not share a registry: each shows its own id."""
        ids = set()
        for node in self.nodes:
            samples = self.scrape(node)
            (info,) = [k for k in samples if k[0] == "twistednode_node_info"]
            ids.add(dict(info[1])["node_id"])
        self.assertEqual(ids, set(IDS[:3]))

    def test_hellos_move_and_members_count(self) -> None:
        """After a few hello rounds: two static members, hellos sent and received
        grow, and the master says 1."""
        self.reactor.run_for(3.0)
        first = self.scrape(self.nodes[1])
        self.reactor.run_for(2.0)
        later = self.scrape(self.nodes[1])
        static = ("twistednode_members", frozenset({("source", "static")}))
        self.assertEqual(later[static], 2)
        for name in (
            "twistednode_hellos_received_total",
            "twistednode_hellos_sent_total",
        ):
            self.assertGreater(later[(name, frozenset())], first[(name, frozenset())])
        masters = [
            self.scrape(node)[("twistednode_master", frozenset())]
            for node in self.nodes
        ]
        self.assertEqual(masters, [1, 0, 0])

    def test_garbage_datagram_counts_as_dropped(self) -> None:
        """A datagram that is not node-discover's moves the dropped counter."""
        self.reactor.run_for(0.1)
        node = self.nodes[0]
        before = self.scrape(node)
        node._hello.datagramReceived(b"\xffnot a hello", ("127.0.0.1", 9))
        after = self.scrape(node)
        dropped = {
            labels: value
            for (name, labels), value in after.items()
            if name == "twistednode_datagrams_dropped_total"
        }
        self.assertEqual(
            sum(dropped.values()),
            1
            + sum(
                value
                for (name, _), value in before.items()
                if name == "twistednode_datagrams_dropped_total"
            ),
        )

    def test_process_metrics_included(self) -> None:
        """The process's own metrics come along (CPU, memory), per registry."""
        names = {name for name, _ in self.scrape(self.nodes[0])}
        self.assertIn("python_info", names)


class RenderTests(SynchronousTestCase):
    """NodeMetrics on its own."""

    def test_process_collectors_optional(self) -> None:
        """Without process=True only the node's families are exposed."""
        doc = {
            "cluster": "c",
            "self": {"id": IDS[0], "isMaster": False},
            "members": [],
            "registry": {"state": "disabled"},
            "dropped": {},
        }
        metrics = NodeMetrics(lambda: doc, HelloStats(), process=False)
        body, content_type = metrics.exposition()
        self.assertEqual(content_type, TEXT)
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        self.assertTrue(all(n.startswith("twistednode_") for n in names), names)
