"""Tests for twistednode.metrics.collector: a node's numbers as Prometheus metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from twistednode.discovery.protocol import HelloStats
from twistednode.metrics.collector import NodeCollector
from twistednode.registry.timing import RequestStats

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ME = "00000000-0000-4000-8000-00000000000a"


def samples_of(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def document(**changes: Any) -> dict[str, Any]:
    """A status document of a lease-elected node seeing three members."""
    doc: dict[str, Any] = {
        "cluster": "demo",
        "now": 1_764_000_100.0,
        "self": {
            "id": ME,
            "isMaster": True,
            "isMasterEligible": True,
            "startedAt": 1_764_000_000.0,
        },
        "master": ME,
        "members": [
            {"id": "b", "source": "registry"},
            {"id": "c", "source": "registry"},
            {"id": "d", "source": "learned"},
        ],
        "registry": {
            "state": "watching",
            "api": "v3",
            "counters": {
                "lists": 3,
                "watch_restarts": 2,
                "events": 9,
                "errors": 1,
                "refreshes": 40,
                "recreations": 1,
                "rewrites": 0,
                "rejected": 0,
            },
        },
        "election": {
            "mode": "lease",
            "epoch": 17,
            "validFor": 1.5,
            "masterEpoch": 17,
            "terms": 2,
            "stepDowns": 1,
        },
        "dropped": {"bad-json": 4, "same-process": 1},
    }
    doc.update(changes)
    return doc


class NodeCollectorTests(SynchronousTestCase):
    """The collector reads the document and the counters at every scrape."""

    def setUp(self) -> None:
        self.doc = document()
        self.hellos = HelloStats()
        self.requests: RequestStats | None = RequestStats()
        self.registry = CollectorRegistry()
        self.registry.register(
            NodeCollector(lambda: self.doc, self.hellos, self.requests)
        )

    def scrape(self) -> Samples:
        return samples_of(generate_latest(self.registry).decode("utf-8"))

    def test_members_by_source(self) -> None:
        """Members count by source, every source present even at zero."""
        samples = self.scrape()
        for source, count in (("registry", 2), ("learned", 1), ("static", 0)):
            key = ("twistednode_members", frozenset({("source", source)}))
            self.assertEqual(samples[key], count, source)

    def test_master_and_election(self) -> None:
        """Mastership, the term's epoch, terms won and ended are read as they are."""
        samples = self.scrape()
        self.assertEqual(samples[("twistednode_master", frozenset())], 1)
        self.assertEqual(samples[("twistednode_master_eligible", frozenset())], 1)
        self.assertEqual(samples[("twistednode_election_epoch", frozenset())], 17)
        self.assertEqual(
            samples[("twistednode_election_term_valid_seconds", frozenset())], 1.5
        )
        self.assertEqual(samples[("twistednode_election_terms_total", frozenset())], 2)
        self.assertEqual(
            samples[("twistednode_election_step_downs_total", frozenset())], 1
        )

    def test_node_discover_election_has_no_epoch(self) -> None:
        """Without the lease there is no epoch, term or step-down sample."""
        self.doc = document(
            election={"mode": "node-discover", "epoch": None, "masterEpoch": None}
        )
        names = {name for name, _ in self.scrape()}
        self.assertIn("twistednode_master", names)
        for absent in (
            "twistednode_election_epoch",
            "twistednode_election_terms_total",
            "twistednode_election_term_valid_seconds",
        ):
            self.assertNotIn(absent, names)

    def test_hellos_move_between_scrapes(self) -> None:
        """The hello counts are read at each scrape, not copied once."""
        self.hellos.sent = 5
        self.assertEqual(
            self.scrape()[("twistednode_hellos_sent_total", frozenset())], 5
        )
        self.hellos.sent += 3
        self.hellos.received = 7
        samples = self.scrape()
        self.assertEqual(samples[("twistednode_hellos_sent_total", frozenset())], 8)
        self.assertEqual(samples[("twistednode_hellos_received_total", frozenset())], 7)

    def test_dropped_by_reason(self) -> None:
        """Each drop reason of the document is one labelled counter."""
        samples = self.scrape()
        name = "twistednode_datagrams_dropped_total"
        self.assertEqual(samples[(name, frozenset({("reason", "bad-json")}))], 4)
        self.assertEqual(samples[(name, frozenset({("reason", "same-process")}))], 1)

    def test_registry_state_and_counters(self) -> None:
        """The state is one-hot; watch restarts and re-creations are counters."""
        samples = self.scrape()
        state = "twistednode_registry_state"
        self.assertEqual(samples[(state, frozenset({("state", "watching")}))], 1)
        self.assertEqual(samples[(state, frozenset({("state", "unreachable")}))], 0)
        self.assertEqual(
            samples[("twistednode_registry_watch_restarts_total", frozenset())], 2
        )
        self.assertEqual(
            samples[("twistednode_registry_record_recreations_total", frozenset())], 1
        )

    def test_registry_requests(self) -> None:
        """Requests, errors and the latency histogram come from the request stats."""
        assert self.requests is not None
        self.requests.started("list")
        self.requests.started("list")
        self.requests.answered("list", 0.003)
        self.requests.failed("list", ConnectionError(), 0.5)
        samples = self.scrape()
        op = frozenset({("operation", "list")})
        self.assertEqual(samples[("twistednode_registry_requests_total", op)], 2)
        errors = "twistednode_registry_request_errors_total"
        self.assertEqual(
            samples[(errors, op | {("error", "ConnectionError")})],
            1,
        )
        histogram = "twistednode_registry_request_duration_seconds"
        self.assertEqual(samples[(histogram + "_count", op)], 2)
        self.assertAlmostEqual(samples[(histogram + "_sum", op)], 0.503)
        self.assertEqual(samples[(histogram + "_bucket", op | {("le", "0.004")})], 1)
        self.assertEqual(samples[(histogram + "_bucket", op | {("le", "+Inf")})], 2)

    def test_without_registry(self) -> None:
        """A node on static peers: state disabled, no registry counters or calls."""
        self.doc = document(registry={"state": "disabled", "api": None})
        self.requests = None
        self.registry = CollectorRegistry()
        self.registry.register(NodeCollector(lambda: self.doc, self.hellos, None))
        names = {name for name, _ in self.scrape()}
        self.assertIn("twistednode_registry_state", names)
        self.assertNotIn("twistednode_registry_requests_total", names)
        self.assertNotIn("twistednode_registry_watch_restarts_total", names)

    def test_info_names_the_node(self) -> None:
        """twistednode_node_info carries the id, cluster, election and API."""
        ((_, labels),) = [k for k in self.scrape() if k[0] == "twistednode_node_info"]
        self.assertEqual(
            dict(labels),
            {
                "node_id": ME,
                "cluster": "demo",
                "election": "lease",
                "registry_api": "v3",
            },
        )

    def test_every_name_has_the_prefix_and_a_unit(self) -> None:
        """Every family is twistednode_*; counters end in _total, times in _seconds."""
        text = generate_latest(self.registry).decode("utf-8")
        for family in text_string_to_metric_families(text):
            self.assertTrue(family.name.startswith("twistednode_"), family.name)
            if family.type == "counter":
                self.assertTrue(
                    all(s.name.endswith("_total") for s in family.samples),
                    family.name,
                )
            if "time" in family.name or "duration" in family.name:
                self.assertTrue(family.name.endswith("_seconds"), family.name)
