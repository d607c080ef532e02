# -*- test-case-name: tests.metrics.test_collector -*-
"""L{NodeCollector}: a node's numbers as Prometheus metrics, read when scraped.

Nothing is counted here. The node already keeps what an operator wants to see: the
status document (members and how each was learned, the election, the registry's
state and counters, the datagrams dropped by reason), the socket's hello counts
(L{twistednode.discovery.protocol.HelloStats}) and the registry calls' costs
(L{twistednode.registry.timing.RequestStats}). The collector reads them at each
scrape and turns them into metric families named C{twistednode_*}, units in the
names (C{_seconds}, C{_total}). It imports no other part: what it reads is
described by the protocols below, and the node hands it the objects.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from attrs import define
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

#: How a member can be known (the status document's C{source}).
SOURCES = ("registry", "static", "learned")
#: The registry's states (the status document's C{registry.state}).
REGISTRY_STATES = ("disabled", "stopped", "unreachable", "registering", "watching")
#: The registry's counters (C{registry.counters}) that become metrics: the key, the
#: metric name (without C{_total}) and its help.
REGISTRY_COUNTERS = (
    (
        "watch_restarts",
        "twistednode_registry_watch_restarts",
        "Times the members directory was listed again after its watch ended, "
        "failed or timed out.",
    ),
    (
        "recreations",
        "twistednode_registry_record_recreations",
        "Times this node's record was written again after it expired or was deleted.",
    ),
    ("lists", "twistednode_registry_listings", "Listings of the members directory."),
    ("events", "twistednode_registry_watch_events", "Changes seen by the watch."),
    ("refreshes", "twistednode_registry_record_refreshes", "TTL refreshes."),
    ("rewrites", "twistednode_registry_record_rewrites", "Rewrites of the record."),
    (
        "rejected",
        "twistednode_registry_rejected_records",
        "Values under the members directory ignored as not a valid record.",
    ),
)


class HelloCounts(Protocol):
    """What the socket counted (L{twistednode.discovery.protocol.HelloStats})."""

    @property
    def sent(self) -> int: ...

    @property
    def received(self) -> int: ...


class LatencyBuckets(Protocol):
    """One operation's durations (L{twistednode.registry.timing.Latency})."""

    @property
    def total(self) -> float: ...

    def cumulative(self) -> Sequence[tuple[float, int]]: ...


class RequestCounts(Protocol):
    """The registry calls (L{twistednode.registry.timing.RequestStats})."""

    @property
    def requests(self) -> Mapping[str, int]: ...

    @property
    def errors(self) -> Mapping[tuple[str, str], int]: ...

    @property
    def latency(self) -> Mapping[str, LatencyBuckets]: ...


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


@define(eq=False)
class NodeCollector:
    """A Prometheus collector over one node's status document and counters.

    @ivar document: returns the node's status document (C{ClusterNode.status_document}).
    @ivar hellos: the socket's hello counts.
    @ivar requests: the registry calls' costs, None without a registry.
    """

    document: Callable[[], Mapping[str, Any]]
    hellos: HelloCounts
    requests: RequestCounts | None = None

    def collect(self) -> Iterable[Metric]:
        """Every metric, as the node stands now."""
        status = self.document()
        yield from self._node(status)
        yield from self._members(status)
        yield from self._election(status)
        yield from self._hellos(status)
        yield from self._registry(status)
        yield from self._requests()

    def _node(self, status: Mapping[str, Any]) -> Iterable[Metric]:
        me = status["self"]
        registry = status.get("registry") or {}
        election = status.get("election") or {}
        info = InfoMetricFamily(
            "twistednode_node",
            "This node: its id, cluster, election mode and registry API.",
        )
        info.add_metric(
            [],
            {
                "node_id": str(me["id"]),
                "cluster": str(status["cluster"]),
                "election": str(election.get("mode") or ""),
                "registry_api": str(registry.get("api") or ""),
            },
        )
        yield info
        started = _number(me.get("startedAt"))
        if started is not None:
            yield GaugeMetricFamily(
                "twistednode_start_time_seconds",
                "When the node started, in seconds since the epoch.",
                value=started,
            )

    def _members(self, status: Mapping[str, Any]) -> Iterable[Metric]:
        counts = dict.fromkeys(SOURCES, 0)
        for member in status["members"]:
            source = member.get("source")
            counts[source] = counts.get(source, 0) + 1
        members = GaugeMetricFamily(
            "twistednode_members",
            "Other nodes this node has heard from, by how it learned of them "
            "(registry, static --peer, or learned from a hello).",
            labels=["source"],
        )
        for source, count in counts.items():
            members.add_metric([str(source)], count)
        yield members

    def _election(self, status: Mapping[str, Any]) -> Iterable[Metric]:
        me = status["self"]
        election = status.get("election") or {}
        yield GaugeMetricFamily(
            "twistednode_master",
            "1 while this node is master, else 0.",
            value=1 if me.get("isMaster") else 0,
        )
        yield GaugeMetricFamily(
            "twistednode_master_eligible",
            "1 while this node may become master, else 0 (a client node).",
            value=1 if me.get("isMasterEligible") else 0,
        )
        epoch = _number(election.get("masterEpoch"))
        if epoch is not None:
            yield GaugeMetricFamily(
                "twistednode_election_epoch",
                "The fencing epoch of the master's term, as this node sees it "
                "(lease election).",
                value=epoch,
            )
        valid = _number(election.get("validFor"))
        if valid is not None and election.get("mode") == "lease":
            yield GaugeMetricFamily(
                "twistednode_election_term_valid_seconds",
                "Seconds this node's term stays valid without a renewal (0 when "
                "not master).",
                value=valid,
            )
        for key, name, text in (
            ("terms", "twistednode_election_terms", "Terms this node has won."),
            (
                "stepDowns",
                "twistednode_election_step_downs",
                "Terms this node has ended (resigned, lost or expired).",
            ),
        ):
            value = _number(election.get(key))
            if value is not None:
                yield CounterMetricFamily(name, text, value=value)

    def _hellos(self, status: Mapping[str, Any]) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "twistednode_hellos_sent",
            "Hello datagrams sent (one per destination).",
            value=self.hellos.sent,
        )
        yield CounterMetricFamily(
            "twistednode_hellos_received",
            "Hellos received from other nodes.",
            value=self.hellos.received,
        )
        dropped = CounterMetricFamily(
            "twistednode_datagrams_dropped",
            "Datagrams dropped unprocessed, by reason (undecodable, our own, "
            "another node of this process, an unjoined channel, ...).",
            labels=["reason"],
        )
        for reason, count in sorted((status.get("dropped") or {}).items()):
            dropped.add_metric([str(reason)], count)
        yield dropped

    def _registry(self, status: Mapping[str, Any]) -> Iterable[Metric]:
        registry = status.get("registry") or {}
        current = registry.get("state")
        state = GaugeMetricFamily(
            "twistednode_registry_state",
            "1 for the registry's current state, 0 for the others.",
            labels=["state"],
        )
        for name in REGISTRY_STATES:
            state.add_metric([name], 1 if name == current else 0)
        yield state
        counters = registry.get("counters")
        if not isinstance(counters, Mapping):
            return
        for key, name, text in REGISTRY_COUNTERS:
            value = _number(counters.get(key))
            if value is not None:
                yield CounterMetricFamily(name, text, value=value)

    def _requests(self) -> Iterable[Metric]:
        stats = self.requests
        if stats is None:
            return
        requests = CounterMetricFamily(
            "twistednode_registry_requests",
            "Calls to the registry (etcd), by operation.",
            labels=["operation"],
        )
        for operation, count in sorted(stats.requests.items()):
            requests.add_metric([operation], count)
        yield requests
        errors = CounterMetricFamily(
            "twistednode_registry_request_errors",
            "Registry calls that failed, by operation and error (RecordExists on "
            "create and WatchTimedOut/WatchEnded/HistoryLost on watch are part of "
            "normal work; BackendUnavailable is etcd out of reach).",
            labels=["operation", "error"],
        )
        for (operation, error), count in sorted(stats.errors.items()):
            errors.add_metric([operation, error], count)
        yield errors
        latency = HistogramMetricFamily(
            "twistednode_registry_request_duration_seconds",
            "Time to the answer of a registry call, by operation (watches, which "
            "wait for a change, are not timed).",
            labels=["operation"],
        )
        for operation, buckets in sorted(stats.latency.items()):
            latency.add_metric(
                [operation],
                [(_bound(bound), count) for bound, count in buckets.cumulative()],
                buckets.total,
            )
        yield latency
