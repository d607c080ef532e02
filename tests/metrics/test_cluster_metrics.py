"""GET /metrics of a real three-node cluster: twistd processes on a real minietcd,
scraped over HTTP and read with prometheus_client's own parser."""

from __future__ import annotations

import socket
import time
import urllib.request
import uuid
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import TestCase

from tests.harness.clusternodes import (
    FAST_TIMERS,
    ClusterNodeProcess,
    start_nodes,
    stop_nodes,
    wait_for_agreed_master,
)
from tests.harness.servers import shared_minietcd

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SETTLE = 20.0


def scrape(node: ClusterNodeProcess) -> Samples:
    """Every sample of the node's /metrics, by name and labels."""
    url = f"http://127.0.0.1:{node.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200, response.status
        text = response.read().decode("utf-8")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str) -> float:
    """The sum of every sample called C{name}, whatever its labels."""
    return sum(value for (n, _), value in samples.items() if n == name)


def wait_until(check: Callable[[], bool], what: str, timeout: float = SETTLE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class ClusterMetricsTests(TestCase):
    """Three nodes on minietcd; the numbers that must move, do."""

    def setUp(self) -> None:
        etcd = shared_minietcd()
        self.nodes = start_nodes(
            3,
            etcd=etcd.url,
            cluster=f"metrics-{uuid.uuid4().hex[:10]}",
            timers=FAST_TIMERS,
        )
        self.addCleanup(stop_nodes, self.nodes)
        wait_for_agreed_master(self.nodes, SETTLE)

    def test_members_master_and_hellos(self) -> None:
        """Each node counts two registry members; one says master; hellos grow;
        the registry is watched and its calls are timed."""
        first = [scrape(node) for node in self.nodes]
        registry = frozenset({("source", "registry")})
        for samples in first:
            self.assertEqual(samples[("twistednode_members", registry)], 2)
            watching = (
                "twistednode_registry_state",
                frozenset({("state", "watching")}),
            )
            self.assertEqual(samples[watching], 1)
            self.assertGreater(
                total(samples, "twistednode_registry_request_duration_seconds_count"),
                0,
            )
        self.assertEqual(
            sorted(s[("twistednode_master", frozenset())] for s in first), [0, 0, 1]
        )
        epochs = {s[("twistednode_election_epoch", frozenset())] for s in first}
        self.assertEqual(len(epochs), 1, "the nodes disagree on the term's epoch")
        received: tuple[str, frozenset[tuple[str, str]]] = (
            "twistednode_hellos_received_total",
            frozenset(),
        )
        node = self.nodes[0]
        wait_until(
            lambda: scrape(node)[received] > first[0][received],
            "hellos received to grow",
        )

    def test_garbage_datagram_is_dropped_and_counted(self) -> None:
        """A datagram that is not node-discover's moves the dropped counter by one."""
        node = self.nodes[1]
        name = "twistednode_datagrams_dropped_total"
        before = total(scrape(node), name)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"\x00 certainly not a hello", ("127.0.0.1", node.udp_port))
        wait_until(
            lambda: total(scrape(node), name) == before + 1, "the drop to be counted"
        )
