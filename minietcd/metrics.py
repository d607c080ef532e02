# -*- test-case-name: tests.minietcd.test_metrics -*-
"""What C{GET /metrics} shows: the store's counters and the keys API's requests.

Names are etcd 3.4's own where etcd has the metric (C{etcd_debugging_store_*},
C{etcd_http_*}), with its labels and help texts, and C{minietcd_*} otherwise. Nothing
is counted here as it happens: L{RequestStats} is plain counts kept by the API, and
L{MiniEtcdCollector} reads them and the store's L{StoreStats} when scraped, into a
registry of the server's own (never the process-wide default one).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable

from attrs import Factory, define, field
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from minietcd.store import Store

#: etcd's text format (the one C{generate_latest} writes).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4.encode("ascii")
#: etcd's buckets for C{etcd_http_successful_duration_seconds}: 0.5 ms doubling
#: up to 2.048 s.
DURATION_BUCKETS = tuple(0.0005 * 2**power for power in range(13))
#: Methods counted by name in C{minietcd_http_requests_total}; others are "other".
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"}
)


def method_label(method: bytes) -> str:
    """The C{method} label of a request (unknown methods share one label)."""
    text = method.decode("latin-1")
    return text if text in KNOWN_METHODS else "other"


@define
class Durations:
    """A histogram's data: a count per bucket (the last is +Inf) and the sum."""

    counts: list[int] = Factory(lambda: [0] * (len(DURATION_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration."""
        self.total += seconds
        for number, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.counts[number] += 1
                return
        self.counts[-1] += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """The buckets as Prometheus has them: C{(le, count at or below)}."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(
            (*(repr(b) for b in DURATION_BUCKETS), "+Inf"), self.counts, strict=True
        ):
            running += count
            out.append((bound, running))
        return out


@define
class RequestStats:
    """What the API counts of the requests it answers.

    C{received}, C{failed} and C{durations} are etcd's keys-handler metrics: a
    keys request whose parameters parsed, that is not a watch, by etcd's method
    name (C{QGET} for a quorum GET); C{answered} is every request, by method and
    status code.
    """

    received: dict[str, int] = Factory(dict)
    failed: dict[tuple[str, str], int] = Factory(dict)
    durations: dict[str, Durations] = Factory(dict)
    answered: dict[tuple[str, str], int] = Factory(dict)

    def answer(self, method: bytes, code: int) -> None:
        """Count an answered request."""
        label = (method_label(method), str(code))
        self.answered[label] = self.answered.get(label, 0) + 1

    def receive(self, method: str) -> None:
        """Count a keys request that reaches the store."""
        self.received[method] = self.received.get(method, 0) + 1

    def fail(self, method: str, status: int) -> None:
        """Count a keys request the store refused, with its HTTP status."""
        label = (method, str(status))
        self.failed[label] = self.failed.get(label, 0) + 1

    def succeed(self, method: str, seconds: float) -> None:
        """Count how long a successful keys request took."""
        durations = self.durations.get(method)
        if durations is None:
            durations = self.durations[method] = Durations()
        durations.observe(max(0.0, seconds))


_READS = "Total number of reads action by (get/getRecursive), local to this member."
_WRITES = "Total number of writes (e.g. set/compareAndDelete) seen by this member."
_RECEIVED = (
    "Counter of requests received into the system (successfully parsed and authd)."
)
_FAILED = (
    "Counter of handle failures of requests (non-watches), by method (GET/PUT etc.) "
    "and code (400, 500 etc.)."
)
_DURATION = (
    "Bucketed histogram of processing time (s) of successfully handled requests "
    "(non-watches), by method (GET/PUT etc.)."
)


@define(eq=False)
class MiniEtcdCollector:
    """A Prometheus collector that reads C{store} and C{requests} when scraped."""

    store: Store
    requests: RequestStats

    def describe(self) -> Iterable[Metric]:
        """The metrics this collector makes (for the registry's name check)."""
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        """Every metric, as it stands now."""
        yield from self._store_metrics()
        yield from self._request_metrics()

    def _store_metrics(self) -> Iterable[Metric]:
        store = self.store
        stats = store.stats
        reads = CounterMetricFamily(
            "etcd_debugging_store_reads", _READS, labels=["action"]
        )
        gets = stats.gets_success + stats.gets_fail
        reads.add_metric(["get"], gets - stats.recursive_gets)
        reads.add_metric(["getRecursive"], stats.recursive_gets)
        yield reads
        writes = CounterMetricFamily(
            "etcd_debugging_store_writes", _WRITES, labels=["action"]
        )
        for action, success, fail in (
            ("set", stats.sets_success, stats.sets_fail),
            ("create", stats.create_success, stats.create_fail),
            ("update", stats.update_success, stats.update_fail),
            ("delete", stats.delete_success, stats.delete_fail),
            (
                "compareAndSwap",
                stats.compare_and_swap_success,
                stats.compare_and_swap_fail,
            ),
            (
                "compareAndDelete",
                stats.compare_and_delete_success,
                stats.compare_and_delete_fail,
            ),
        ):
            writes.add_metric([action], success + fail)
        yield writes
        failures = CounterMetricFamily(
            "minietcd_store_failures",
            "Store operations that failed, by action (also counted in "
            "etcd_debugging_store_reads_total or _writes_total).",
            labels=["action"],
        )
        for action, count in (
            ("get", stats.gets_fail),
            ("set", stats.sets_fail),
            ("create", stats.create_fail),
            ("update", stats.update_fail),
            ("delete", stats.delete_fail),
            ("compareAndSwap", stats.compare_and_swap_fail),
            ("compareAndDelete", stats.compare_and_delete_fail),
        ):
            failures.add_metric([action], count)
        yield failures
        yield CounterMetricFamily(
            "etcd_debugging_store_expires",
            "Total number of expired keys.",
            value=stats.expire_count,
        )
        yield CounterMetricFamily(
            "etcd_debugging_store_watch_requests",
            "Total number of incoming watch requests (new or reestablished).",
            value=stats.watch_requests,
        )
        yield GaugeMetricFamily(
            "etcd_debugging_store_watchers",
            "Count of currently active watchers.",
            value=store.watcher_count,
        )
        files, dirs = store.node_count()
        keys = GaugeMetricFamily(
            "minietcd_store_keys",
            "Keys in the store (hidden ones included, the root not), by type.",
            labels=["type"],
        )
        keys.add_metric(["file"], files)
        keys.add_metric(["dir"], dirs)
        yield keys
        yield GaugeMetricFamily(
            "minietcd_store_index",
            "The store's current index (X-Etcd-Index).",
            value=store.index,
        )

    def _request_metrics(self) -> Iterable[Metric]:
        requests = self.requests
        received = CounterMetricFamily(
            "etcd_http_received", _RECEIVED, labels=["method"]
        )
        for method, count in sorted(requests.received.items()):
            received.add_metric([method], count)
        yield received
        failed = CounterMetricFamily(
            "etcd_http_failed", _FAILED, labels=["code", "method"]
        )
        for (method, code), count in sorted(requests.failed.items()):
            failed.add_metric([code, method], count)
        yield failed
        durations = HistogramMetricFamily(
            "etcd_http_successful_duration_seconds", _DURATION, labels=["method"]
        )
        for method, data in sorted(requests.durations.items()):
            durations.add_metric([method], data.cumulative(), data.total)
        yield durations
        answered = CounterMetricFamily(
            "minietcd_http_requests",
            "Requests answered on the client listener, by method and status code "
            "(a watch counts when its headers go out).",
            labels=["method", "code"],
        )
        for (method, code), count in sorted(requests.answered.items()):
            answered.add_metric([method, code], count)
        yield answered


@define(eq=False)
class ServerMetrics:
    """One server's registry, holding its L{MiniEtcdCollector}."""

    store: Store
    requests: RequestStats = Factory(RequestStats)
    registry: CollectorRegistry = field(init=False, factory=CollectorRegistry)

    def __attrs_post_init__(self) -> None:
        self.registry.register(MiniEtcdCollector(self.store, self.requests))

    def exposition(self, accept_encoding: bytes | None) -> tuple[bytes, bool]:
        """The text format of every metric, gzipped if the client accepts it (as
        etcd's C{promhttp} does); and whether it is gzipped."""
        text = generate_latest(self.registry)
        if accepts_gzip(accept_encoding):
            return gzip.compress(text, mtime=0), True
        return text, False


def accepts_gzip(accept_encoding: bytes | None) -> bool:
    """C{promhttp}'s test of C{Accept-Encoding}: a part that starts with gzip."""
    if not accept_encoding:
        return False
    return any(part.strip().startswith(b"gzip") for part in accept_encoding.split(b","))
