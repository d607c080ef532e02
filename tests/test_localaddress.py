"""Tests for twistednode.localaddress: the address a node advertises by default."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twistednode.localaddress import local_address_towards, udp_source_address


class LocalAddressTests(SynchronousTestCase):
    """The default advertised address is the route's source towards the registry."""

    def test_uses_url_host_and_port(self) -> None:
        """The connect function gets the URL's host and port (default 80/443)."""
        calls: list[tuple[str, int]] = []

        def connect(host: str, port: int) -> str:
            calls.append((host, port))
            return "10.1.2.3"

        self.assertEqual(
            local_address_towards("http://etcd.example:2379", connect), "10.1.2.3"
        )
        local_address_towards("http://etcd.example", connect)
        local_address_towards("https://[::1]/", connect)
        self.assertEqual(
            calls, [("etcd.example", 2379), ("etcd.example", 80), ("::1", 443)]
        )

    def test_errors(self) -> None:
        """No host, a bad port, no route or a non-IP answer are clear ValueErrors."""

        def unreachable(host: str, port: int) -> str:
            raise OSError(101, "Network is unreachable")

        with self.assertRaises(ValueError):
            local_address_towards("http://:2379", lambda h, p: "1.2.3.4")
        with self.assertRaises(ValueError):
            local_address_towards("http://a:99999", lambda h, p: "1.2.3.4")
        with self.assertRaises(ValueError) as caught:
            local_address_towards("http://a:1", unreachable)
        self.assertIn("Network is unreachable", str(caught.exception))
        with self.assertRaises(ValueError):
            local_address_towards("http://a:1", lambda h, p: "hostname")

    def test_loopback_route(self) -> None:
        """The real UDP trick finds 127.0.0.1 towards a loopback server."""
        self.assertEqual(udp_source_address("127.0.0.1", 2379), "127.0.0.1")
        self.assertIn(udp_source_address("localhost", 2379), ("127.0.0.1", "::1"))
