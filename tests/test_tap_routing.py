"""The clusternode options of routed calls and the registry's authority: --transport,
--no-transport, --capacity, --call-timeout, --app and --trust-hello-address."""

from __future__ import annotations

import sys
import types

from twisted.trial.unittest import SynchronousTestCase

from tests.harness.fakes import MemoryUDPReactor
from tests.test_tap import node_of, parse, usage_error
from twistednode.tap import makeService

STATIC = ("--no-etcd", "--peer", "127.0.0.1:5000", "--udp-port", "0")


def build(*args: str) -> object:
    reactor = MemoryUDPReactor()
    reactor.advance(1_790_000_000)
    return makeService(parse(*args), reactor=reactor)


class TransportOptionTests(SynchronousTestCase):
    def test_default_transport_is_any_port_on_the_udp_interface(self) -> None:
        """Without --transport the node runs one on a free port of --udp-interface."""
        node = node_of(build(*STATIC, "--udp-interface", "127.0.0.7"))
        self.assertEqual(node.transport, "auto")
        node.startService()
        self.addCleanup(node.stopService)
        assert node.transport_url is not None
        self.assertTrue(node.transport_url.startswith("http://127.0.0.7:"))

    def test_bare_port_listens_on_the_udp_interface(self) -> None:
        """--transport 7001 is tcp:7001 on the UDP socket's interface."""
        options = parse(*STATIC, "--udp-interface", "10.0.0.5", "--transport", "7001")
        self.assertEqual(options["transport"], "tcp:7001:interface=10.0.0.5")

    def test_no_transport(self) -> None:
        """--no-transport: the node has none, calls run only where the key lives."""
        node = node_of(build(*STATIC, "--no-transport"))
        self.assertIsNone(node.transport)

    def test_transport_bind_failure_is_named_by_its_option(self) -> None:
        """The program knows the transport's listener as --transport."""
        program = build(*STATIC, "--transport", "tcp:7001")
        wheres = [where for _, where in program.listeners]  # type: ignore[attr-defined]
        self.assertIn("--transport tcp:7001", wheres)

    def test_mistakes_name_the_option(self) -> None:
        """A bad endpoint, capacity or timeout is one line naming its option."""
        self.assertIn("--transport", usage_error(*STATIC, "--transport", "nope:1"))
        for bad in ("0", "-1", "inf", "2e6"):
            self.assertIn("--capacity", usage_error(*STATIC, "--capacity", bad))
        self.assertIn("--capacity", usage_error(*STATIC, "--capacity", "x"))
        self.assertIn("--call-timeout", usage_error(*STATIC, "--call-timeout", "0"))

    def test_capacity_and_call_timeout_reach_the_node(self) -> None:
        node = node_of(build(*STATIC, "--capacity", "2.5", "--call-timeout", "1.5"))
        self.assertEqual((node.capacity, node.call_timeout), (2.5, 1.5))

    def test_trust_hello_address_reaches_the_node(self) -> None:
        self.assertFalse(node_of(build(*STATIC)).trust_hello_address)
        self.assertTrue(
            node_of(build(*STATIC, "--trust-hello-address")).trust_hello_address
        )


class AppOptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.installed: list[object] = []
        module = types.ModuleType("tn_test_app")
        module.install = self.installed.append  # type: ignore[attr-defined]
        module.value = 3  # type: ignore[attr-defined]
        sys.modules["tn_test_app"] = module
        self.addCleanup(sys.modules.pop, "tn_test_app")

    def test_app_is_called_with_the_node_before_it_starts(self) -> None:
        """--app MODULE:CALLABLE gets the ClusterNode, not yet running."""
        node = node_of(build(*STATIC, "--app", "tn_test_app:install"))
        self.assertEqual(self.installed, [node])
        self.assertFalse(node.running)

    def test_app_mistakes_name_the_option(self) -> None:
        """A spec without a colon, a missing module or name, a value that is not
        callable: one line naming --app."""
        for spec in (
            "tn_test_app",
            "no_such_module_here:install",
            "tn_test_app:missing",
            "tn_test_app:value",
        ):
            self.assertTrue(usage_error(*STATIC, "--app", spec).startswith("--app"))
