"""Tests for tapkit.guardedsite: a headers deadline, a connection limit and a
debug access log on a twisted.web Site."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tapkit.guardedsite import WARN_EVERY, GuardedSite

ADDRESS = IPv4Address("TCP", "127.0.0.1", 40000)
GET = b"GET /ok HTTP/1.1\r\nHost: node\r\n\r\n"


class _Pages(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Request] = []

    def render_GET(self, request: Request) -> Any:
        if request.path == b"/slow":
            self.pending.append(request)
            return NOT_DONE_YET
        return b"ok"


class GuardedSiteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.pages = _Pages()
        self.site = GuardedSite(
            self.pages, max_connections=2, header_timeout=5.0, reactor=self.clock
        )
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)

    def observe(self) -> list[dict[str, Any]]:
        """Every log event from now on, for the test's duration."""
        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return events

    def connect(self) -> tuple[Any, StringTransport]:
        channel = self.site.buildProtocol(ADDRESS)
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport

    def test_headers_that_do_not_arrive_in_time_close_the_connection(self) -> None:
        """A client sending a header line now and then is cut at the deadline,
        however often it sends."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET /ok HTTP/1.1\r\n")
        for _ in range(4):
            self.clock.advance(1.2)
            channel.dataReceived(b"X-Slow: 1\r\n")
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.5)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.site.timed_out, 1)

    def test_a_request_in_time_is_answered_and_the_idle_connection_closes(
        self,
    ) -> None:
        """Headers in time are served; on a kept-alive connection the deadline
        starts again after the response, so an idle connection is closed."""
        channel, transport = self.connect()
        self.clock.advance(4.0)
        channel.dataReceived(GET)
        self.assertIn(b"200 OK", transport.value())
        self.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)

    def test_a_long_response_is_never_cut(self) -> None:
        """A request being answered (a stream, a slow call) outlives the deadline."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET /slow HTTP/1.1\r\nHost: node\r\n\r\n")
        self.clock.advance(60.0)
        self.assertFalse(transport.disconnecting)
        request = self.pages.pending.pop()
        request.write(b"late")
        request.finish()
        self.assertIn(b"late", transport.value())

    def test_connections_over_the_limit_are_refused_with_one_warning(self) -> None:
        """The third connection of two allowed is closed at once (no protocol),
        said once per WARN_EVERY; a closed one makes room again."""
        events = self.observe()
        first, _ = self.connect()
        self.connect()
        self.assertIsNone(self.site.buildProtocol(ADDRESS))
        self.assertIsNone(self.site.buildProtocol(ADDRESS))
        self.assertEqual((self.site.refused, self.site.open_connections), (2, 2))
        warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.clock.advance(WARN_EVERY)
        self.assertIsNone(self.site.buildProtocol(ADDRESS))
        warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 2)
        first.connectionLost(None)
        self.assertEqual(self.site.open_connections, 1)
        self.assertIsNotNone(self.site.buildProtocol(ADDRESS))

    def test_access_log_is_one_debug_event_per_request(self) -> None:
        """Each request is logged at debug level with its method, path and code;
        access_log=False logs none."""
        events = self.observe()
        channel, _ = self.connect()
        channel.dataReceived(GET)
        access = [e for e in events if e.get("uri") == "/ok"]
        self.assertEqual(len(access), 1)
        self.assertEqual(access[0]["log_level"], LogLevel.debug)
        self.assertEqual((access[0]["method"], access[0]["code"]), ("GET", 200))
        events.clear()
        self.site.access_log = False
        channel.dataReceived(GET)
        self.assertEqual([e for e in events if e.get("uri") == "/ok"], [])

    def test_bad_limits_are_refused(self) -> None:
        for kwargs in ({"max_connections": 0}, {"header_timeout": 0.0}):
            self.assertRaises(ValueError, GuardedSite, Resource(), **kwargs)

    def test_an_idle_site_sets_no_timer(self) -> None:
        """Twisted's once-a-second log-date timer is never armed: an idle server
        costs the process no wake-up."""
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(5.0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
