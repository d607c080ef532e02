"""GET /metrics: the store's counters and the API's requests, in Prometheus text."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from collections.abc import Iterable

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from minietcd.api import KeysAPI
from minietcd.gohttp import GoSite
from minietcd.metrics import Durations
from minietcd.store import Store
from tests.harness.etcdtesting import APITestCase
from tests.harness.servers import MiniEtcdProcess, RealEtcd

ETCD_TEXT = "text/plain; version=0.0.4; charset=utf-8"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples_of(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class MetricsTests(APITestCase):
    """/metrics through StubTreq on a KeysAPI."""

    def scrape(self) -> Samples:
        answer = self.call("GET", "/metrics")
        self.assertEqual(answer.code, 200)
        return samples_of(answer.body.decode("utf-8"))

    def value(self, name: str, **labels: str) -> float:
        return self.scrape().get((name, frozenset(labels.items())), 0.0)

    def test_text_format(self) -> None:
        """/metrics is 200 in etcd's text format, with the store's metrics."""
        answer = self.call("GET", "/metrics")
        self.assertEqual(answer.headers["content-type"], ETCD_TEXT)
        self.assertEqual(answer.headers["access-control-allow-origin"], "*")
        families = {
            family.name: family.type
            for family in text_string_to_metric_families(answer.body.decode())
        }
        self.assertEqual(families["etcd_debugging_store_writes"], "counter")
        self.assertEqual(families["etcd_debugging_store_watchers"], "gauge")
        self.assertEqual(families["minietcd_store_keys"], "gauge")

    def test_put_counts_a_write(self) -> None:
        """A PUT moves writes_total{set}, received_total{PUT} and its duration."""
        before = self.value("etcd_debugging_store_writes_total", action="set")
        self.call("PUT", "/v2/keys/k", b"value=1")
        samples = self.scrape()
        self.assertEqual(
            samples[
                ("etcd_debugging_store_writes_total", frozenset({("action", "set")}))
            ],
            before + 1,
        )
        put = frozenset({("method", "PUT")})
        self.assertEqual(samples[("etcd_http_received_total", put)], 1)
        self.assertEqual(
            samples[("etcd_http_successful_duration_seconds_count", put)], 1
        )

    def test_failed_write(self) -> None:
        """A refused create counts as a write, a store failure and an HTTP failure."""
        self.call("PUT", "/v2/keys/k", b"value=1")
        self.call("PUT", "/v2/keys/k?prevExist=false", b"value=2")
        samples = self.scrape()
        create = frozenset({("action", "create")})
        self.assertEqual(samples[("etcd_debugging_store_writes_total", create)], 2)
        self.assertEqual(samples[("minietcd_store_failures_total", create)], 1)
        failed = frozenset({("method", "PUT"), ("code", "412")})
        self.assertEqual(samples[("etcd_http_failed_total", failed)], 1)

    def test_reads(self) -> None:
        """Reads count as get (with etcd's auth read) or getRecursive; QGET apart."""
        before = self.value("etcd_debugging_store_reads_total", action="get")
        self.call("PUT", "/v2/keys/d/a", b"value=1")
        self.call("GET", "/v2/keys/d/a")
        self.call("GET", "/v2/keys/d?recursive=true")
        self.call("GET", "/v2/keys/d/a?quorum=true")
        samples = self.scrape()
        reads = "etcd_debugging_store_reads_total"
        # auth reads: 4, plain gets: 2 (the PUT reads nothing else)
        self.assertEqual(samples[(reads, frozenset({("action", "get")}))], before + 6)
        self.assertEqual(samples[(reads, frozenset({("action", "getRecursive")}))], 1)
        received = "etcd_http_received_total"
        self.assertEqual(samples[(received, frozenset({("method", "GET")}))], 2)
        self.assertEqual(samples[(received, frozenset({("method", "QGET")}))], 1)

    def test_watchers_gauge(self) -> None:
        """An open watch shows in the watchers gauge and in watch_requests_total."""
        response = self.successResultOf(self.send("GET", "/v2/keys/k?wait=true"))
        self.assertEqual(self.value("etcd_debugging_store_watchers"), 1)
        self.assertEqual(self.value("etcd_debugging_store_watch_requests_total"), 1)
        self.assertEqual(
            self.value("etcd_http_received_total", method="GET"), 0, "a watch counted"
        )
        self.call("PUT", "/v2/keys/k", b"value=1")
        self.stub.flush()
        self.assertEqual(response.code, 200)
        self.assertEqual(self.value("etcd_debugging_store_watchers"), 0)

    def test_key_count(self) -> None:
        """minietcd_store_keys counts files and directories as they come and go."""
        self.call("PUT", "/v2/keys/a", b"value=1")
        self.call("PUT", "/v2/keys/d/b", b"value=1")
        self.call("PUT", "/v2/keys/d/_hidden", b"value=1")
        self.assertEqual(self.value("minietcd_store_keys", type="file"), 3)
        self.assertEqual(self.value("minietcd_store_keys", type="dir"), 1)
        self.call("DELETE", "/v2/keys/d?recursive=true")
        self.assertEqual(self.value("minietcd_store_keys", type="file"), 1)
        self.assertEqual(self.value("minietcd_store_keys", type="dir"), 0)

    def test_expiry(self) -> None:
        """A key expiring moves expires_total."""
        self.call("PUT", "/v2/keys/t?ttl=1", b"value=1")
        self.clock.advance(2)
        self.assertEqual(self.value("etcd_debugging_store_expires_total"), 1)

    def test_requests_by_method_and_code(self) -> None:
        """Every answer counts by method and code; unknown methods share "other"."""
        self.call("PATCH", "/v2/keys/k")
        self.call("FOO", "/v2/keys/k")
        self.call("GET", "/nowhere")
        samples = self.scrape()
        name = "minietcd_http_requests_total"
        for method, code in (("PATCH", "405"), ("other", "405"), ("GET", "404")):
            labels = frozenset({("method", method), ("code", code)})
            self.assertEqual(samples[(name, labels)], 1, (method, code))

    def test_head_and_other_methods(self) -> None:
        """HEAD is 200 without a body; POST, PUT, DELETE are served like GET."""
        head = self.call("HEAD", "/metrics")
        self.assertEqual((head.code, head.body), (200, b""))
        self.assertEqual(head.headers["content-type"], ETCD_TEXT)
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            answer = self.call(method, "/metrics")
            self.assertEqual(answer.code, 200, method)
            self.assertIn(b"# TYPE etcd_debugging_store_watchers gauge", answer.body)
        options = self.call("OPTIONS", "/metrics")
        self.assertEqual((options.code, options.body), (200, b""))
        self.assertEqual(self.call("GET", "/metrics/").code, 404)
        self.assertEqual(self.call("GET", "/metrics?x=1").code, 200)

    def test_gzip(self) -> None:
        """A client that accepts gzip gets the text gzipped, as from promhttp."""
        # treq decodes gzip itself, so the raw answer is read off a channel.
        site = GoSite(self.api.resource(), timeout=None, reactor=self.clock)
        protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, br\r\n\r\n"
        )
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertIn(b"\r\nContent-Encoding: gzip\r\n", head)
        self.assertIn(b"etcd_debugging_store_watchers", gzip.decompress(body))
        text, gzipped = self.api.metrics.exposition(b"deflate")
        self.assertFalse(gzipped)
        self.assertIn(b"etcd_debugging_store_watchers", text)

    def test_registries_are_per_server(self) -> None:
        """Two servers count apart, and nothing lands in the default registry."""
        other = KeysAPI(clock=self.clock, store=Store())
        self.addCleanup(other.stop)
        self.call("PUT", "/v2/keys/k", b"value=1")
        text = generate_latest(other.metrics.registry).decode()
        files = samples_of(text)[("minietcd_store_keys", frozenset({("type", "file")}))]
        self.assertEqual(files, 0)
        self.assertNotIn(b"etcd_debugging_store", generate_latest(REGISTRY))


class DurationsTests(SynchronousTestCase):
    """The histogram data behind etcd_http_successful_duration_seconds."""

    def test_buckets(self) -> None:
        """Durations fall in etcd's buckets (0.5 ms doubling), cumulatively."""
        durations = Durations()
        for seconds in (0.0001, 0.0005, 0.003, 5.0):
            durations.observe(seconds)
        buckets = dict(durations.cumulative())
        self.assertEqual(buckets["0.0005"], 2)
        self.assertEqual(buckets["0.004"], 3)
        self.assertEqual(buckets["2.048"], 3)
        self.assertEqual(buckets["+Inf"], 4)
        self.assertAlmostEqual(durations.total, 5.0036)


def _traffic(url: str) -> None:
    """Requests that make every etcd metric minietcd has show at least one child."""
    requests = [
        ("PUT", "/v2/keys/metrics-test/k", b"value=1"),
        ("GET", "/v2/keys/metrics-test/k", None),
        ("GET", "/v2/keys/metrics-test?recursive=true", None),
        ("GET", "/v2/keys/metrics-test/missing", None),
        ("GET", "/v2/keys/metrics-test/k?wait=true&waitIndex=1", None),
    ]
    for method, path, data in requests:
        request = urllib.request.Request(url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except urllib.error.HTTPError as error:
            error.close()


def _families(url: str) -> dict[str, tuple[str, set[str]]]:
    """The families of C{url}/metrics: name -> (type, label names of its samples)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode("utf-8")
    out: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        labels: set[str] = set()
        for sample in family.samples:
            labels.update(name for name in sample.labels if name != "le")
        out[family.name] = (family.type, labels)
    return out


class EtcdNamesTests(SynchronousTestCase):
    """minietcd's etcd-named metrics against real etcd 3.4's /metrics."""

    def test_etcd_names_exist_in_etcd(self) -> None:
        """Every etcd_* metric of minietcd is in etcd, with its type and labels."""
        etcd = RealEtcd().start()
        self.addCleanup(etcd.stop)
        mini = MiniEtcdProcess().start()
        self.addCleanup(mini.stop)
        for server in (etcd, mini):
            _traffic(server.url)
        theirs = _families(etcd.url)
        ours = _families(mini.url)
        etcd_named = sorted(name for name in ours if name.startswith("etcd_"))
        self.assertTrue(etcd_named)
        for name in etcd_named:
            self.assertIn(name, theirs, f"{name} is not a metric of etcd 3.4")
            self.assertEqual(ours[name], theirs[name], name)
        others = _names_not_etcd(ours)
        self.assertEqual(others, [n for n in others if n.startswith("minietcd_")])


def _names_not_etcd(families: Iterable[str]) -> list[str]:
    return [name for name in families if not name.startswith("etcd_")]
