"""The clusternode command line: options, their validation, and the service built."""

from __future__ import annotations

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tests.harness.fakes import MemoryUDPReactor
from twistednode.node import ClusterNode
from twistednode.tap import Options, makeService


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


class OptionsTests(SynchronousTestCase):
    def test_defaults_are_node_discovers(self) -> None:
        """Without options: local etcd, cluster "default", UDP 12345, auto API."""
        options = parse()
        self.assertEqual(options["etcd-urls"], ["http://127.0.0.1:2379"])
        self.assertEqual(options["cluster"], "default")
        self.assertEqual(options["udp-port"], 12345)
        self.assertEqual(options["etcd-api"], "auto")
        self.assertIsNone(options["tls"])
        self.assertIsNone(options["auth"])

    def test_several_etcd_urls_and_peers(self) -> None:
        """--etcd takes a comma list; --peer repeats, port optional."""
        options = parse(
            "--etcd",
            "http://a:2379, http://b:2379",
            "--peer",
            "10.0.0.1:4000",
            "--peer",
            "db1",
        )
        self.assertEqual(options["etcd-urls"], ["http://a:2379", "http://b:2379"])
        self.assertEqual(options["peers"], [("10.0.0.1", 4000), ("db1", None)])

    def test_bad_options_say_what_is_wrong(self) -> None:
        """Each bad option ends with a usage error naming it."""
        cases = [
            (["--etcd", "127.0.0.1:2379"], "--etcd"),
            (["--peer", "h:99999"], "--peer"),
            (["--no-etcd"], "--peer"),
            (["--hello-interval", "abc"], "--hello-interval"),
            (["--hello-interval", "-1"], "--hello-interval"),
            (["--node-timeout", "1", "--check-interval", "2"], "node_timeout"),
            (["--advertisement", "{nope"], "--advertisement"),
            (["--advertisement", "[" * 100_000], "--advertisement"),
            (["--node-id", "x"], "--node-id"),
            (["--etcd-api", "v4"], "--etcd-api"),
            (["--cluster", "a/b"], "--cluster"),
            (["--cluster", "a b"], "--cluster"),
            (["--cluster", ""], "--cluster"),
            (["--weight", "nan"], "--weight"),
            (["--udp-port", "70000"], "--udp-port"),
            (["--etcd-user", "nocolon"], "--etcd-user"),
            (["--etcd-user", "u:p", "--etcd-api", "v2"], "--etcd-user"),
            (["--etcd-cacert", "/nonexistent/ca.pem"], "TLS"),
        ]
        for args, needle in cases:
            with self.subTest(args=args):
                error = self.assertRaises(usage.UsageError, parse, *args)
                self.assertIn(needle, str(error))

    def test_advertisement_is_json(self) -> None:
        """--advertisement is parsed as JSON."""
        self.assertEqual(
            parse("--advertisement", '{"svc": "api"}')["advertisement"], {"svc": "api"}
        )


class MakeServiceTests(SynchronousTestCase):
    def test_builds_node_from_options(self) -> None:
        """makeService gives a ClusterNode carrying what the options said."""
        reactor = MemoryUDPReactor()
        reactor.advance(1_790_000_000)
        options = parse(
            "--no-etcd",
            "--peer",
            "127.0.0.1:5000",
            "--udp-port",
            "0",
            "--weight",
            "3",
            "--hello-interval",
            "0.5",
            "--client",
            "--node-id",
            "00000000-0000-4000-8000-000000000001",
        )
        node = makeService(options, reactor=reactor)
        assert isinstance(node, ClusterNode)
        self.assertEqual(node.settings.weight, 3.0)
        self.assertEqual(node.settings.hello_interval, 0.5)
        self.assertTrue(node.settings.client)
        self.assertEqual(node.id, "00000000-0000-4000-8000-000000000001")
        self.assertIsNone(node.registry)
        node.startService()
        self.assertIsNotNone(node.port)
        node.stopService()

    def test_default_weight_is_node_discovers_formula(self) -> None:
        """Without --weight the older process weighs more, as in node-discover."""
        reactor = MemoryUDPReactor()
        reactor.advance(1_732_629_600.0)
        node = makeService(parse("--no-etcd", "--peer", "h"), reactor=reactor)
        assert isinstance(node, ClusterNode)
        self.assertEqual(node.settings.weight, -0.17326296)
