"""minietcd's watches through StubTreq: long polls, streams, disconnects, expiry."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import Callable

from treq import collect, content
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import Request

from minietcd.api import KeysAPI
from minietcd.gohttp import BoundedRequest
from minietcd.longpoll import STREAM_BACKLOG
from minietcd.render import event_json
from minietcd.store import Store
from minietcd.tap import serving_site
from tests.harness.etcdtesting import NOW, APITestCase


class WatchTests(APITestCase):
    """Long polls and streams."""

    def test_long_poll_answered_by_a_later_put(self) -> None:
        """Headers come at once; the event comes with the PUT that matches."""
        # X-Etcd-Index is the store's index at registration.
        response = self.successResultOf(self.send("GET", "/v2/keys/k?wait=true"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"x-etcd-index"), [b"3"])
        self.assertEqual(self.store.watcher_count, 1)
        body = content(response)
        self.assertNoResult(body)
        self.call("PUT", "/v2/keys/other", b"value=1")
        self.stub.flush()
        self.assertNoResult(body)
        self.call("PUT", "/v2/keys/k", b"value=2")
        self.stub.flush()
        self.assertEqual(
            self.successResultOf(body),
            b'{"action":"set","node":{"key":"/k","value":"2","modifiedIndex":5,"createdIndex":5}}\n',
        )
        self.assertEqual(self.store.watcher_count, 0)

    def test_many_watchers_one_put(self) -> None:
        """Many long polls on one key are all answered by one PUT."""
        bodies = [
            content(self.successResultOf(self.send("GET", "/v2/keys/hot?wait=true")))
            for _ in range(50)
        ]
        self.call("PUT", "/v2/keys/hot", b"value=1")
        self.stub.flush()
        answers = {self.successResultOf(body) for body in bodies}
        self.assertEqual(len(answers), 1)

    def test_history_hit(self) -> None:
        """A waitIndex in the history is answered at once, X-Etcd-Index current."""
        self.call("PUT", "/v2/keys/k", b"value=1")
        self.call("PUT", "/v2/keys/k", b"value=2")
        answer = self.call("GET", "/v2/keys/k?wait=true&waitIndex=4")
        self.assertEqual(
            (answer.json["node"]["value"], answer.headers["x-etcd-index"]), ("1", "5")
        )

    def test_outdated_wait_index(self) -> None:
        """A waitIndex older than the 1000-event window is 400/401."""
        for i in range(1000):
            self.store.set("/k", str(i), NOW)
        answer = self.call("GET", "/v2/keys/k?wait=true&waitIndex=2")
        self.assertError(
            answer, 400, 401, "the requested history has been cleared [4/2]", 1003
        )

    def test_disconnect_unregisters_the_watcher(self) -> None:
        """A client going away cancels its watch: the watcher count returns to 0."""
        response = self.successResultOf(
            self.send("GET", "/v2/keys/k?wait=true&recursive=true")
        )
        self.assertEqual(self.store.watcher_count, 1)
        leaver = _Leaver()
        response.deliverBody(leaver)
        leaver.leave()
        self.stub.flush()
        self.assertEqual(self.store.watcher_count, 0)
        self.call("PUT", "/v2/keys/k/x", b"value=1")
        self.stub.flush()
        self.assertEqual(self.store.watcher_count, 0)

    def test_stream(self) -> None:
        """stream=true sends every matching event as its own line and stays open."""
        response = self.successResultOf(
            self.send("GET", "/v2/keys/s?wait=true&stream=true&recursive=true")
        )
        lines: list[bytes] = []
        done = collect(response, lines.append)
        for value in ("1", "2"):
            self.call("PUT", "/v2/keys/s/x", b"value=" + value.encode())
            self.stub.flush()
        self.assertEqual(
            [json.loads(line)["node"]["value"] for line in lines], ["1", "2"]
        )
        self.assertTrue(all(line.endswith(b"\n") for line in lines))
        self.assertNoResult(done)
        self.assertEqual(self.store.watcher_count, 1)
        self.api.stop()
        self.stub.flush()
        self.successResultOf(done)
        self.assertEqual(self.store.watcher_count, 0)

    def test_stream_from_history_goes_on(self) -> None:
        """A stream from an old waitIndex sends the history hits, then live events."""
        self.call("PUT", "/v2/keys/s", b"value=1")
        self.call("PUT", "/v2/keys/s", b"value=2")
        response = self.successResultOf(
            self.send("GET", "/v2/keys/s?wait=true&stream=true&waitIndex=4")
        )
        lines: list[bytes] = []
        collect(response, lines.append)
        self.call("PUT", "/v2/keys/s", b"value=3")
        self.stub.flush()
        values = [
            json.loads(line)["node"]["value"]
            for chunk in lines
            for line in chunk.splitlines()
        ]
        self.assertEqual(values, ["1", "2", "3"])

    def test_stop_ends_open_watches(self) -> None:
        """stop() answers open long polls with an empty body."""
        body = content(self.successResultOf(self.send("GET", "/v2/keys/k?wait=true")))
        self.api.stop()
        self.stub.flush()
        self.assertEqual(self.successResultOf(body), b"")
        self.assertEqual(self.store.watcher_count, 0)


class ExpiryTests(APITestCase):
    """TTL sweeps run on the injected clock."""

    def test_expiry_sends_expire_to_a_watcher(self) -> None:
        """Advancing the clock past a TTL expires the key and wakes its watcher."""
        self.call("PUT", "/v2/keys/t?ttl=2", b"value=v")
        body = content(self.successResultOf(self.send("GET", "/v2/keys/t?wait=true")))
        self.clock.advance(1.9)
        self.stub.flush()
        self.assertNoResult(body)
        self.clock.advance(0.2)
        self.stub.flush()
        event = json.loads(self.successResultOf(body))
        self.assertEqual(event["action"], "expire")
        self.assertEqual(
            event["node"], {"key": "/t", "modifiedIndex": 5, "createdIndex": 4}
        )
        self.assertEqual(event["prevNode"]["value"], "v")
        self.assertEqual(self.call("GET", "/v2/keys/t").code, 404)

    def test_sweep_is_scheduled_near_the_deadline(self) -> None:
        """One timer runs within 0.5 s after the next expiry and moves with writes."""
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.call("PUT", "/v2/keys/a?ttl=10", b"value=v")
        [call] = self.clock.getDelayedCalls()
        self.assertTrue(NOW + 10 <= call.getTime() <= NOW + 10.5)
        self.call("PUT", "/v2/keys/b?ttl=3", b"value=v")
        [call] = self.clock.getDelayedCalls()
        self.assertTrue(NOW + 3 <= call.getTime() <= NOW + 3.5)
        self.call("PUT", "/v2/keys/b?prevExist=true", b"value=v")
        self.call("DELETE", "/v2/keys/a")
        self.clock.advance(4)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_dir_expiry(self) -> None:
        """An expiring dir removes its subtree and reaches watchers inside it."""
        self.call("PUT", "/v2/keys/d?dir=true&ttl=1")
        self.call("PUT", "/v2/keys/d/k", b"value=v")
        body = content(self.successResultOf(self.send("GET", "/v2/keys/d/k?wait=true")))
        self.clock.advance(1.5)
        self.stub.flush()
        self.assertEqual(json.loads(self.successResultOf(body))["node"]["key"], "/d")


class _Leaver(Protocol):
    """A response body reader that hangs up."""

    def leave(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        pass


class StreamBacklogTests(APITestCase):
    """A stream whose client stops reading is ended, as etcd drops such watchers."""

    def test_stream_behind_by_too_much_is_ended(self) -> None:
        """A stream over 100 events behind is ended; one that keeps up loses none."""
        # Behind: the connection's send buffer is full.
        response = self.successResultOf(
            self.send("GET", "/v2/keys/s?wait=true&stream=true")
        )
        lines: list[bytes] = []
        done = collect(response, lines.append)
        [poll] = self.api._polls
        assert poll.pacer is not None
        poll.pacer.pauseProducing()
        for i in range(STREAM_BACKLOG):
            self.store.set("/s", str(i), NOW)
        self.stub.flush()
        self.assertNoResult(done)
        self.assertEqual(self.store.watcher_count, 1)
        self.store.set("/s", "one too many", NOW)
        self.stub.flush()
        self.successResultOf(done)
        self.assertEqual(self.store.watcher_count, 0)
        self.assertEqual(self.api._polls, set())
        body = b"".join(lines)
        self.assertEqual(body.count(b"\n"), STREAM_BACKLOG)

    def test_resumed_stream_starts_a_new_backlog(self) -> None:
        """Once the client reads again the count starts over."""
        response = self.successResultOf(
            self.send("GET", "/v2/keys/s?wait=true&stream=true")
        )
        done = collect(response, lambda data: None)
        [poll] = self.api._polls
        assert poll.pacer is not None
        for _ in range(3):
            poll.pacer.pauseProducing()
            for i in range(STREAM_BACKLOG):
                self.store.set("/s", str(i), NOW)
            poll.pacer.resumeProducing()
        self.stub.flush()
        self.assertNoResult(done)
        self.assertEqual(self.store.watcher_count, 1)


class ServerSiteWatchTests(SynchronousTestCase):
    """Watches on the site twistd serves, whose requests say when a client left."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = Store()
        self.api = KeysAPI(clock=self.clock, store=self.store)
        self.addCleanup(self.api.stop)
        self.site = serving_site(self.api, self.clock)
        self.requests: list[weakref.ref[Request]] = []
        make: Callable[..., Request] = self.site.requestFactory

        def recorded(*args: object) -> Request:
            request = make(*args)
            self.requests.append(weakref.ref(request))
            return request

        self.site.requestFactory = recorded  # type: ignore[assignment]

    def connect(self, target: bytes) -> tuple[IProtocol, StringTransport]:
        """A connection that has sent C{GET target}; its request is remembered."""
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert channel is not None
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")
        return channel, transport

    def test_requests_are_the_servers_own(self) -> None:
        """The site makes the request class that tells a poll its client left."""
        self.connect(b"/v2/keys/k?wait=true")
        [request] = self.requests
        self.assertIsInstance(request(), BoundedRequest)

    def test_connections_have_no_idle_timer(self) -> None:
        """As etcd's server, the site schedules no idle timeout on a connection."""
        self.connect(b"/v2/keys/k?wait=true")
        self.store.set("/k", "v", NOW)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_answer_follows_the_headers_in_one_piece(self) -> None:
        """Headers go at once; the answer is the event's chunk and the last chunk."""
        channel, transport = self.connect(b"/v2/keys/k?wait=true")
        head = transport.value()
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertIn(b"Transfer-Encoding: chunked\r\n", head)
        self.assertTrue(head.endswith(b"\r\n\r\n"))
        transport.clear()
        event = self.store.set("/k", "v", NOW)
        body = event_json(event)
        self.assertEqual(
            transport.value(), b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        )
        self.assertEqual((self.store.watcher_count, self.api._polls), (0, set()))

    def test_client_leaving_unregisters_the_watcher(self) -> None:
        """A client gone before the event leaves no watcher and gets no write."""
        for target, key in (
            (b"/v2/keys/d?wait=true&recursive=true", "/d/x"),
            (b"/v2/keys/s?wait=true&stream=true", "/s"),
        ):
            channel, transport = self.connect(target)
            self.assertEqual(self.store.watcher_count, 1)
            transport.clear()
            channel.connectionLost(Failure(ConnectionDone()))
            self.assertEqual((self.store.watcher_count, self.api._polls), (0, set()))
            self.store.set(key, "v", NOW)
            self.assertEqual(transport.value(), b"")

    def test_answered_poll_leaves_no_cycle(self) -> None:
        """An answered poll's request is freed at once, with no garbage collection."""
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        channel, transport = self.connect(b"/v2/keys/k?wait=true")
        self.store.set("/k", "v", NOW)
        channel.connectionLost(Failure(ConnectionDone()))
        del channel, transport
        [request] = self.requests
        self.assertIsNone(request())
