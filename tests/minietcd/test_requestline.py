"""Request lines read as Go reads them: raw bytes in the target become the key."""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from minietcd.api import KeysAPI
from minietcd.gohttp import BoundedRequest, GoSite, hex_escape_non_ascii
from minietcd.requestline import (
    GO_BAD_REQUEST,
    RequestLine,
    read_request_line,
    stand_in,
)
from minietcd.store import Store

NOW = 1_700_000_000.0


class ReadRequestLineTests(SynchronousTestCase):
    """L{read_request_line} and L{stand_in}, without any I/O."""

    def test_parts(self) -> None:
        """A line Go accepts is cut into method, raw target and version."""
        self.assertEqual(
            read_request_line(b"PUT /v2/keys/caf\xc3\xa9 HTTP/1.1"),
            RequestLine(b"PUT", b"/v2/keys/caf\xc3\xa9", b"HTTP/1.1"),
        )

    def test_high_bytes_are_accepted(self) -> None:
        """Every byte from 0x80 to 0xFF is a valid part of a target."""
        target = b"/" + bytes(range(0x80, 0x100))
        parsed = read_request_line(b"GET " + target + b" HTTP/1.1")
        assert parsed is not None
        self.assertEqual(parsed.target, target)
        self.assertTrue(parsed.non_ascii)

    def test_control_bytes_are_refused(self) -> None:
        """A control byte or DEL anywhere in the target is refused, as by Go."""
        for byte in [*range(0x20), 0x7F]:
            line = b"GET /a" + bytes((byte,)) + b"?q=1 HTTP/1.1"
            self.assertIsNone(read_request_line(line), byte)

    def test_malformed_lines_are_refused(self) -> None:
        """No second space, an empty target or a method that is no token is refused."""
        for line in (
            b"GET",
            b"GET /a",
            b"GET  /a HTTP/1.1",
            b" /a HTTP/1.1",
            b"G(T /a HTTP/1.1",
            b"G\xc3T /a HTTP/1.1",
        ):
            self.assertIsNone(read_request_line(line), line)

    def test_version(self) -> None:
        """What follows the second space must be C{HTTP/<digit>.<digit>}."""
        for version in (b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.5", b"HTTP/2.0"):
            parsed = read_request_line(b"GET /a " + version)
            assert parsed is not None
            self.assertEqual(parsed.version, version)
        for version in (b"b HTTP/1.1", b"HTTP/1.10", b"http/1.1", b"HTTP/1"):
            self.assertIsNone(read_request_line(b"GET /a " + version), version)

    def test_stand_in_is_ascii_of_the_same_length(self) -> None:
        """The stand-in replaces each byte above 0x7F with C{_}, keeping the length."""
        parsed = read_request_line(b"GET /caf\xc3\xa9?x=\xe9 HTTP/1.1")
        assert parsed is not None
        self.assertEqual(stand_in(parsed), b"GET /caf__?x=_ HTTP/1.1")

    def test_hex_escape_non_ascii(self) -> None:
        """Go's hexEscapeNonASCII writes bytes above 0x7F as lower-case %xx."""
        self.assertEqual(hex_escape_non_ascii(b"/a%C3?x=\xe9\xff"), b"/a%C3?x=%e9%ff")
        self.assertEqual(hex_escape_non_ascii(b"/plain"), b"/plain")


class GoChannelTests(SynchronousTestCase):
    """Raw requests through L{GoSite}'s channel to the keys API."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.api = KeysAPI(self.clock)
        self.site = GoSite(self.api.resource(), timeout=None, reactor=self.clock)

    def connect(self) -> tuple[object, StringTransport]:
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def send(self, *lines: bytes, body: bytes = b"") -> bytes:
        """Send one request of C{lines} (and C{body}) on a fresh connection."""
        protocol, transport = self.connect()
        head = list(lines) + [b"Host: localhost"]
        if body:
            head.append(b"Content-Type: application/x-www-form-urlencoded")
            head.append(b"Content-Length: %d" % len(body))
        protocol.dataReceived(b"\r\n".join(head) + b"\r\n\r\n" + body)  # type: ignore[attr-defined]
        value: bytes = transport.value()
        return value

    def json_body(self, response: bytes) -> dict[str, object]:
        data: dict[str, object] = json.loads(response.partition(b"\r\n\r\n")[2])
        return data

    def test_requests_are_bounded(self) -> None:
        """The site's requests are L{BoundedRequest}s (its body limit, on_lost)."""
        self.assertIs(self.site.requestFactory, BoundedRequest)

    def test_raw_utf8_put(self) -> None:
        """A raw UTF-8 key is stored under its bytes, found by its %-encoded form."""
        response = self.send(b"PUT /v2/keys/caf\xc3\xa9 HTTP/1.1", body=b"value=1")
        self.assertTrue(response.startswith(b"HTTP/1.1 201 Created\r\n"), response)
        node = self.json_body(response)["node"]
        self.assertEqual(node, {"key": "/café", "value": "1"} | node)  # type: ignore[operator]
        event = self.api.store.get("/café", NOW)
        self.assertEqual(event.node.value, "1")
        response = self.send(b"GET /v2/keys/caf%C3%A9 HTTP/1.1")
        self.assertTrue(response.startswith(b"HTTP/1.1 200 OK\r\n"), response)

    def test_raw_latin1_get_and_delete(self) -> None:
        """A raw Latin-1 byte is the key's byte; JSON shows it as U+FFFD."""
        self.send(b"PUT /v2/keys/caf%E9 HTTP/1.1", body=b"value=lat")
        response = self.send(b"GET /v2/keys/caf\xe9 HTTP/1.1")
        self.assertIn(b'"key":"/caf\\ufffd","value":"lat"', response)
        response = self.send(b"DELETE /v2/keys/caf\xe9 HTTP/1.1")
        self.assertTrue(response.startswith(b"HTTP/1.1 200 OK\r\n"), response)
        self.assertEqual(self.api.store.node_count(), (0, 0))

    def test_bytes_twisted_accepted_already(self) -> None:
        """Bytes 0x80-0xB0 (which Twisted let through) still make the same key."""
        self.send(b"PUT /v2/keys/\xa9\xb1 HTTP/1.1", body=b"value=x")
        event = self.api.store.get("/\udca9\udcb1", NOW)
        self.assertEqual(event.node.value, "x")

    def test_raw_query_value(self) -> None:
        """Raw bytes in the query are taken as the value's bytes."""
        self.send(b"PUT /v2/keys/k?value=\xe4\xb8\xad HTTP/1.1")
        self.assertEqual(self.api.store.get("/k", NOW).node.value, "中")

    def test_control_byte_is_go_400(self) -> None:
        """A control byte in the target gets Go's 400 with its body, then a close."""
        for target in (b"/v2/keys/a\x01", b"/v2/keys/a\x7f", b"/v2/keys/a?x=\x1b"):
            protocol, transport = self.connect()
            protocol.dataReceived(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")  # type: ignore[attr-defined]
            self.assertEqual(transport.value(), GO_BAD_REQUEST)
            self.assertTrue(transport.disconnecting)

    def test_malformed_line_is_go_400(self) -> None:
        """A line with an extra space gets Go's 400, not Twisted's empty one."""
        self.assertEqual(self.send(b"GET /a b HTTP/1.1"), GO_BAD_REQUEST)

    def test_bad_version_is_still_refused(self) -> None:
        """A version Twisted refuses is still a 400 (the version is Twisted's)."""
        response = self.send(b"GET /v2/keys/caf\xc3\xa9 HTTP/9.9")
        self.assertTrue(response.startswith(b"HTTP/1.1 400 Bad Request"), response)

    def test_pipelined_raw_requests(self) -> None:
        """Each request of a keep-alive connection may carry raw bytes."""
        protocol, transport = self.connect()
        protocol.dataReceived(  # type: ignore[attr-defined]
            b"PUT /v2/keys/\xc3\xa9?value=1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /v2/keys/\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        value = transport.value()
        self.assertEqual(value.count(b'"key":"/\xc3\xa9"'), 2, value)
        self.assertFalse(transport.disconnecting)

    def test_header_bytes_are_untouched(self) -> None:
        """Only the request line is read anew: header values keep their bytes."""
        response = self.send(
            b"PUT /v2/keys/h HTTP/1.1", b"X-Note: caf\xc3\xa9", body=b"value=2"
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 201 Created\r\n"), response)

    def test_redirect_escapes_raw_bytes(self) -> None:
        """A redirect's Location escapes raw path bytes as %XX, query bytes as %xx."""
        response = self.send(b"GET /v2/keys//caf\xc3\xa9?x=\xe9 HTTP/1.1")
        self.assertIn(b"\r\nLocation: /v2/keys/caf%C3%A9?x=%e9\r\n", response)
        self.assertIn(b'<a href="/v2/keys/caf%C3%A9?x=\xe9">', response)


class RawKeyOrderTests(SynchronousTestCase):
    """Sorted listings order keys by their bytes, as Go does."""

    def test_sorted_by_bytes(self) -> None:
        """A lone byte 0xFF sorts after U+E000 (EE 80 80), and 0xA9 before é."""
        store = Store()
        for name in ("\udcff", "\ue000", "é", "\udca9", "a"):
            store.set("/d/" + name, "v", NOW)
        nodes = store.get("/d", NOW, sorted=True).node.nodes
        assert nodes is not None
        self.assertEqual(
            [node.key for node in nodes],
            ["/d/a", "/d/\udca9", "/d/é", "/d/\ue000", "/d/\udcff"],
        )
