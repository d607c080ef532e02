"""Tests for twistednode.registry.timing: what the registry calls cost, as counted by
the selected backend."""

from __future__ import annotations

import json

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from minietcd.api import KeysAPI
from minietcd.store import Store
from tests.etcd.test_v2 import RefusingHosts
from twistednode.registry.backend import RecordExists
from twistednode.registry.backends import SelectedBackend, make_backend
from twistednode.registry.timing import LATENCY_BUCKETS, Latency, RequestStats

KEY = "/twistednode/c/members/a"


class LatencyTests(SynchronousTestCase):
    """The buckets are cumulative, with +Inf last."""

    def test_buckets_are_cumulative(self) -> None:
        """A fast and a slow call fill the low bucket and every one above it."""
        latency = Latency()
        latency.observe(0.0005)
        latency.observe(3.0)
        latency.observe(60.0)
        buckets = latency.cumulative()
        self.assertEqual(buckets[0], (LATENCY_BUCKETS[0], 1))
        self.assertEqual(buckets[-2], (LATENCY_BUCKETS[-1], 2))
        self.assertEqual(buckets[-1], (float("inf"), 3))
        self.assertEqual((latency.count, latency.total), (3, 63.0005))

    def test_negative_duration_is_zero(self) -> None:
        """A clock that steps back counts as an instant answer."""
        latency = Latency()
        latency.observe(-1.0)
        self.assertEqual((latency.counts[0], latency.total), (1, 0.0))

    def test_watch_is_not_timed(self) -> None:
        """A watch is a long-poll: counted and its failures, never its duration."""
        stats = RequestStats()
        stats.started("watch")
        stats.failed("watch", TimeoutError(), 60.0)
        self.assertEqual(stats.requests, {"watch": 1})
        self.assertEqual(stats.errors, {("watch", "TimeoutError"): 1})
        self.assertEqual(stats.latency, {})


class _Slow(Resource):
    """Answers every request, after C{delay} seconds of C{clock}, as etcd answers a
    create of L{KEY}."""

    isLeaf = True

    def __init__(self, clock: Clock, delay: float) -> None:
        super().__init__()
        self.clock = clock
        self.delay = delay

    def render(self, request: Request) -> int:
        def answer() -> None:
            node = {"key": KEY, "value": "v", "modifiedIndex": 5, "createdIndex": 5}
            request.setResponseCode(201)
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"x-etcd-index", b"5")
            request.write(json.dumps({"action": "create", "node": node}).encode())
            request.finish()

        self.clock.callLater(self.delay, answer)
        return NOT_DONE_YET


class BackendCountsTests(SynchronousTestCase):
    """SelectedBackend counts every call, its failures and its time to answer."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_764_165_000)

    def backend(self, delay: float = 0.0) -> tuple[SelectedBackend, StubTreq]:
        stub = StubTreq(_Slow(self.clock, delay) if delay else _api(self.clock))
        backend = make_backend(self.clock, ["http://e1:2379"], api="v2", http=stub)
        self.addCleanup(lambda: (backend.close(), stub.flush()))
        return backend, stub

    def test_answered_call_is_timed_on_the_clock(self) -> None:
        """A create answered after 3 ms counts once, in the 4 ms bucket."""
        backend, stub = self.backend(delay=0.003)
        d = backend.create(KEY, "v", 10)
        stub.flush()
        self.clock.advance(0.003)
        stub.flush()
        self.successResultOf(d)
        stats = backend.stats
        self.assertEqual(stats.requests, {"create": 1})
        latency = stats.latency["create"]
        self.assertAlmostEqual(latency.total, 0.003)
        self.assertEqual(dict(latency.cumulative())[0.004], 1)
        self.assertEqual(dict(latency.cumulative())[0.002], 0)

    def test_failure_counts_by_error(self) -> None:
        """A create of a key that exists counts as a RecordExists error."""
        backend, stub = self.backend()
        self.successResultOf(backend.create(KEY, "v", 10))
        self.failureResultOf(backend.create(KEY, "v", 10), RecordExists)
        self.assertEqual(backend.stats.requests, {"create": 2})
        self.assertEqual(backend.stats.errors, {("create", "RecordExists"): 1})
        self.assertEqual(backend.stats.latency["create"].count, 2)

    def test_unreachable_store_counts(self) -> None:
        """A store nobody answers for counts a BackendUnavailable."""
        stub = StubTreq(_api(self.clock))
        backend = make_backend(
            self.clock,
            ["http://e1:2379"],
            api="v2",
            http=RefusingHosts(stub, {"e1"}),
        )
        self.failureResultOf(backend.list("/twistednode/c/members"))
        self.assertEqual(
            backend.stats.errors, {("list", "BackendUnavailable"): 1}, backend.stats
        )

    def test_cancelled_call_is_no_failure(self) -> None:
        """A call the caller cancels is counted made, but neither failed nor timed."""
        backend, stub = self.backend(delay=1.0)
        d = backend.list("/twistednode/c/members")
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(backend.stats.requests, {"list": 1})
        self.assertEqual((backend.stats.errors, backend.stats.latency), ({}, {}))


def _api(clock: Clock) -> IResource:
    return KeysAPI(clock=clock, store=Store()).resource()
