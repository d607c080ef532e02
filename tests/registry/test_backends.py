"""Tests for twistednode.registry.backends: make_backend and the "auto" API probe."""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._newclient import RequestTransmissionFailed
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from minietcd.api import KeysAPI
from tests.etcd.test_v2 import RefusingHosts
from tests.harness.fakev3 import FakeEtcdV3
from twistednode.etcd.v3 import Credentials
from twistednode.registry.backend import (
    BackendError,
    BackendUnavailable,
    RegistryBackend,
)
from twistednode.registry.backends import (
    SelectedBackend,
    make_backend,
    tls_from_options,
)
from twistednode.registry.v2 import EtcdV2Backend
from twistednode.registry.v3 import EtcdV3Backend

URLS = ["http://e1:2379", "http://e2:2379"]
DIR = "/twistednode/c/members"


class ProbeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_764_165_000)

    def over(self, resource: Any, **kwargs: Any) -> tuple[SelectedBackend, StubTreq]:
        stub = StubTreq(resource)
        self.http = RefusingHosts(stub)
        backend = make_backend(self.clock, URLS, http=self.http, **kwargs)
        self.addCleanup(self.close, backend, stub)
        return backend, stub

    def close(self, backend: SelectedBackend, stub: StubTreq) -> None:
        d = backend.close()
        stub.flush()
        self.successResultOf(d)

    def test_real_etcd_shape_gets_v3(self) -> None:
        """A member answering /v3/maintenance/status is used with the v3 API."""
        etcd = FakeEtcdV3(self.clock)
        backend, stub = self.over(etcd.resource())
        self.assertIsNone(backend.api)
        d = backend.create(DIR + "/a", "v", 10)
        stub.flush()
        self.assertEqual(self.successResultOf(d), etcd.revision)
        self.assertEqual(backend.api, "v3")
        self.assertIsInstance(backend.backend, EtcdV3Backend)
        self.assertEqual(etcd.calls[0], "v3/maintenance/status")

    def test_minietcd_gets_v2(self) -> None:
        """minietcd (404 on /v3/...) is used with the v2 API."""
        api = KeysAPI(self.clock)
        self.addCleanup(api.stop)
        backend, stub = self.over(api.resource())
        d = backend.list(DIR)
        stub.flush()
        self.assertEqual(self.successResultOf(d).entries, ())
        self.assertEqual(backend.api, "v2")
        self.assertIsInstance(backend.backend, EtcdV2Backend)

    def test_probe_skips_unreachable_member(self) -> None:
        """A refused member is skipped; the next one decides the API."""
        etcd = FakeEtcdV3(self.clock)
        backend, stub = self.over(etcd.resource())
        self.http.down.add("e1")
        d = backend.list(DIR)
        stub.flush()
        self.successResultOf(d)
        self.assertEqual(backend.api, "v3")
        self.assertEqual(backend.endpoint, URLS[1])

    def test_nobody_answers_then_retry(self) -> None:
        """With no member up the call is BackendUnavailable; the next call re-asks."""
        etcd = FakeEtcdV3(self.clock)
        backend, stub = self.over(etcd.resource())
        self.http.down.update({"e1", "e2"})
        d = backend.list(DIR)
        stub.flush()
        error = self.failureResultOf(d, BackendUnavailable).value
        self.assertIn("cannot tell which etcd API", str(error))
        self.assertIn("e2", str(error))
        self.assertIsNone(backend.api)
        self.assertEqual(backend.endpoint, URLS[0])
        self.http.down.clear()
        d = backend.list(DIR)
        stub.flush()
        self.successResultOf(d)
        self.assertEqual(backend.api, "v3")

    def test_concurrent_calls_share_one_probe(self) -> None:
        """Calls made while the probe runs all wait for it; it runs once."""
        etcd = FakeEtcdV3(self.clock)
        backend, stub = self.over(etcd.resource())
        calls: list[Deferred[Any]] = [
            backend.list(DIR),
            backend.create(DIR + "/a", "v", 10),
        ]
        stub.flush()
        for d in calls:
            self.successResultOf(d)
        self.assertEqual(etcd.calls.count("v3/maintenance/status"), 1)

    def test_hung_member_times_out(self) -> None:
        """A member that never answers the probe is given up after the timeout."""

        class Hung(Resource):
            isLeaf = True

            def render(self, request: Request) -> int:
                return NOT_DONE_YET

        backend, stub = self.over(Hung(), request_timeout=2.0)
        d = backend.list(DIR)
        stub.flush()
        self.assertNoResult(d)
        self.clock.advance(2.0)
        stub.flush()
        self.clock.advance(2.0)
        stub.flush()
        self.assertIn("EtcdTimeout", str(self.failureResultOf(d).value))

    def test_not_etcd(self) -> None:
        """A server that answers 200 with something else is not taken for etcd."""

        class Web(Resource):
            isLeaf = True

            def render(self, request: Request) -> bytes:
                return b"<html>hello</html>"

        backend, stub = self.over(Web())
        d = backend.list(DIR)
        stub.flush()
        error = self.failureResultOf(d, BackendUnavailable).value
        self.assertIn("not etcd's", str(error))

    def test_deeply_nested_answer_is_not_etcd(self) -> None:
        """JSON too deep to parse is an answer that is not etcd's, not a crash."""

        class Deep(Resource):
            isLeaf = True

            def render(self, request: Request) -> bytes:
                return b"[" * 100_000

        backend, stub = self.over(Deep())
        d = backend.list(DIR)
        stub.flush()
        error = self.failureResultOf(d, BackendUnavailable).value
        self.assertIn("not etcd's", str(error))

    def test_auth_with_v2_only_server(self) -> None:
        """Credentials against a v2-only server fail clearly, not silently."""
        api = KeysAPI(self.clock)
        self.addCleanup(api.stop)
        backend, stub = self.over(api.resource(), auth=Credentials("root", "pw"))
        d = backend.list(DIR)
        stub.flush()
        error = self.failureResultOf(d, BackendError).value
        self.assertIn("needs the v3 API", str(error))

    def test_close_while_probing(self) -> None:
        """close() cancels a probe in flight and the calls waiting for it."""

        class Hung(Resource):
            isLeaf = True

            def render(self, request: Request) -> int:
                return NOT_DONE_YET

        backend, stub = self.over(Hung())
        d = backend.list(DIR)
        stub.flush()
        closed = backend.close()
        stub.flush()
        self.successResultOf(closed)
        self.failureResultOf(d, CancelledError)


class MakeBackendTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()

    def make(self, *args: Any, **kwargs: Any) -> SelectedBackend:
        backend = make_backend(self.clock, *args, http=object(), **kwargs)
        return backend

    def test_explicit_apis(self) -> None:
        """api="v2"/"v3" builds that backend at once, with no probe."""
        v2 = self.make(URLS, api="v2")
        self.assertEqual((v2.api, type(v2.backend)), ("v2", EtcdV2Backend))
        v3 = self.make("http://a:1,http://b:2", api="v3")
        self.assertEqual((v3.api, type(v3.backend)), ("v3", EtcdV3Backend))
        self.assertEqual(v3.urls, ("http://a:1", "http://b:2"))

    def test_bad_arguments(self) -> None:
        """Unknown APIs, no URL, bad URLs and auth with v2 are ValueErrors."""
        self.assertRaises(ValueError, self.make, URLS, api="v4")
        self.assertRaises(ValueError, self.make, [])
        self.assertRaises(ValueError, self.make, "e1:2379")
        with self.assertRaises(ValueError) as caught:
            self.make(URLS, api="v2", auth=Credentials("u", "p"))
        self.assertIn("v3", str(caught.exception))

    def test_no_tls_options(self) -> None:
        """No TLS option at all means no client TLS settings."""
        self.assertIsNone(tls_from_options(None, None, None))

    def test_own_pool_closed(self) -> None:
        """Without an injected client, close() closes the pool it made."""
        backend = make_backend(self.clock, URLS, api="v3")
        self.successResultOf(backend.close())

    def test_is_a_registry_backend(self) -> None:
        """SelectedBackend satisfies RegistryBackend (checked by mypy too)."""
        backend: RegistryBackend = self.make(URLS)
        self.assertEqual(backend.endpoint, URLS[0])


def dead_connection(host: str) -> BaseException:
    """What treq fails with when a pooled connection to C{host} died while sending."""
    return RequestTransmissionFailed([Failure(ConnectionLost("closed while sending"))])


class DeadConnectionTests(SynchronousTestCase):
    """A request that could not be sent (Twisted retries no PUT/POST) moves on."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_764_165_000)

    def test_v2_put_moves_on(self) -> None:
        """A v2 create whose connection died goes to the next member."""
        api = KeysAPI(self.clock)
        self.addCleanup(api.stop)
        stub = StubTreq(api.resource())
        http = RefusingHosts(stub, {"e1"}, dead_connection)
        backend = make_backend(self.clock, URLS, api="v2", http=http)
        d = backend.create(DIR + "/a", "v", 10)
        stub.flush()
        self.assertGreater(self.successResultOf(d), 0)
        self.assertEqual(backend.endpoint, URLS[1])

    def test_v3_post_moves_on(self) -> None:
        """A v3 call whose connection died goes to the next member."""
        etcd = FakeEtcdV3(self.clock)
        stub = StubTreq(etcd.resource())
        http = RefusingHosts(stub, {"e1"}, dead_connection)
        backend = make_backend(self.clock, URLS, api="v3", http=http)
        d = backend.create(DIR + "/a", "v", 10)
        stub.flush()
        self.assertEqual(self.successResultOf(d), etcd.revision)
        self.assertEqual(backend.endpoint, URLS[1])
        closed = backend.close()
        stub.flush()
        self.successResultOf(closed)
