"""The clusternode command line: options, their validation, and the service built."""

from __future__ import annotations

from collections.abc import Mapping

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tapkit.listening import Program
from tests.harness.fakes import MemoryUDPReactor
from twistednode.etcd.v3 import Credentials
from twistednode.node import ClusterNode
from twistednode.tap import Options, makeService


def parse(*args: str, environ: Mapping[str, str] | None = None) -> Options:
    options = Options(environ={} if environ is None else environ)
    options.parseOptions(list(args))
    return options


def usage_error(*args: str, environ: Mapping[str, str] | None = None) -> str:
    """The one line a bad command line gets."""
    try:
        parse(*args, environ=environ)
    except usage.UsageError as e:
        return str(e)
    raise AssertionError(f"{args} parsed")


def node_of(program: object) -> ClusterNode:
    assert isinstance(program, Program)
    assert isinstance(program.service, ClusterNode)
    return program.service


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
            (["--node-timeout", "1", "--check-interval", "2"], "--node-timeout"),
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

    def test_typed_options_name_themselves(self) -> None:
        """A value of the wrong type names its option, not 'Parameter type ...'."""
        self.assertEqual(
            usage_error("--udp-port", "abc"), "--udp-port: 'abc' is not an integer"
        )
        self.assertEqual(
            usage_error("--weight", "abc"), "--weight: 'abc' is not a number"
        )
        self.assertEqual(usage_error("--ttl", "x"), "--ttl: 'x' is not an integer")
        self.assertEqual(
            usage_error("--masters-required", "1.5"),
            "--masters-required: '1.5' is not an integer",
        )

    def test_settings_errors_use_option_names(self) -> None:
        """An inconsistent pair of timings is told with the flags' names."""
        self.assertEqual(
            usage_error("--check-interval", "2", "--node-timeout", "1"),
            "--node-timeout (1.0 s) must be >= --check-interval (2.0 s), "
            "as node-discover requires",
        )
        self.assertIn(
            "--master-timeout (1.5 s) must be >= --node-timeout",
            usage_error("--node-timeout", "3", "--master-timeout", "1.5"),
        )

    def test_http_bare_port_is_local(self) -> None:
        """--http 8085 listens on 127.0.0.1:8085 only."""
        self.assertEqual(
            parse("--http", "8085")["http"], "tcp:8085:interface=127.0.0.1"
        )
        self.assertEqual(
            parse("--http", "tcp:0:interface=0.0.0.0")["http"],
            "tcp:0:interface=0.0.0.0",
        )

    def test_http_not_an_endpoint(self) -> None:
        """A --http that is no endpoint is one line naming --http and the forms."""
        error = usage_error("--http", "localhost:8085")
        self.assertTrue(error.startswith("--http 'localhost:8085' is not an endpoint"))
        self.assertIn("tcp:PORT:interface=ADDR", error)
        self.assertEqual(
            usage_error("--http", "70000"), "--http 70000: a port is 0-65535"
        )

    def test_help_examples_bind_localhost(self) -> None:
        """--help shows --http binding 127.0.0.1 and how to open it to all."""
        text = str(Options())
        self.assertIn("tcp:8080:interface=127.0.0.1", text.replace("\n", " "))
        self.assertIn("interface=0.0.0.0 opens it to every", " ".join(text.split()))
        self.assertNotRegex(text, r"tcp:8080(?!:)")

    def test_advertisement_is_json(self) -> None:
        """--advertisement is parsed as JSON."""
        self.assertEqual(
            parse("--advertisement", '{"svc": "api"}')["advertisement"], {"svc": "api"}
        )


class EtcdPasswordTests(SynchronousTestCase):
    """--etcd-user takes its password inline, from a file or from the environment."""

    def password_file(self, text: str) -> str:
        path = str(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_inline(self) -> None:
        """--etcd-user USER:PASSWORD, as before."""
        self.assertEqual(parse("--etcd-user", "u:p:q")["auth"], Credentials("u", "p:q"))

    def test_file(self) -> None:
        """--etcd-password-file gives the password: its first line, no newline."""
        path = self.password_file("s3cret\nignored\n")
        options = parse("--etcd-user", "u", "--etcd-password-file", path)
        self.assertEqual(options["auth"], Credentials("u", "s3cret"))

    def test_environment(self) -> None:
        """Without a file, $ETCDCTL_PASSWORD gives the password, as for etcdctl."""
        options = parse("--etcd-user", "u", environ={"ETCDCTL_PASSWORD": "env"})
        self.assertEqual(options["auth"], Credentials("u", "env"))

    def test_file_beats_environment(self) -> None:
        """An explicit --etcd-password-file wins over the environment."""
        path = self.password_file("file\n")
        options = parse(
            "--etcd-user",
            "u",
            "--etcd-password-file",
            path,
            environ={"ETCDCTL_PASSWORD": "env"},
        )
        self.assertEqual(options["auth"], Credentials("u", "file"))

    def test_mistakes(self) -> None:
        """Each mistake is one line naming the option."""
        missing = self.mktemp()
        self.assertEqual(
            usage_error("--etcd-user", "u", "--etcd-password-file", missing),
            f"--etcd-password-file {missing}: No such file or directory",
        )
        self.assertEqual(
            usage_error("--etcd-user", "u"),
            "--etcd-user u: no password; give USER:PASSWORD, --etcd-password-file "
            "or $ETCDCTL_PASSWORD",
        )
        empty = self.password_file("\n")
        self.assertIn(
            "the first line is empty",
            usage_error("--etcd-user", "u", "--etcd-password-file", empty),
        )
        self.assertEqual(
            usage_error("--etcd-password-file", empty),
            "--etcd-password-file needs --etcd-user",
        )
        self.assertIn(
            "both give a password",
            usage_error("--etcd-user", "u:p", "--etcd-password-file", empty),
        )
        self.assertIn("--etcd-user must be USER", usage_error("--etcd-user", ":p"))


class ElectionOptionTests(SynchronousTestCase):
    def test_default_is_auto_with_a_two_second_master_key(self) -> None:
        options = parse()
        self.assertEqual(options["election"], "auto")
        self.assertEqual(options["master-ttl"], 2)

    def test_mistakes_name_the_option(self) -> None:
        self.assertEqual(
            usage_error("--election", "raft"),
            "--election must be auto, lease or node-discover, not 'raft'",
        )
        self.assertEqual(
            usage_error("--master-ttl", "1"), "--master-ttl must be at least 2 seconds"
        )
        self.assertEqual(
            usage_error("--master-ttl", "2.5"), "--master-ttl: '2.5' is not an integer"
        )
        self.assertEqual(
            usage_error("--election", "lease", "--no-etcd", "--peer", "h"),
            "--election lease needs a registry (not --no-etcd)",
        )
        self.assertIn(
            "use --election node-discover",
            usage_error("--election", "lease", "--masters-required", "2"),
        )

    def test_node_runs_the_election_asked_for(self) -> None:
        reactor = MemoryUDPReactor()
        reactor.advance(1_790_000_000)
        cases = [
            ((), "lease"),
            (("--election", "node-discover"), "node-discover"),
            (("--masters-required", "2"), "node-discover"),
            (("--no-etcd", "--peer", "h"), "node-discover"),
            (("--election", "lease", "--master-ttl", "5"), "lease"),
        ]
        for args, mode in cases:
            node = node_of(makeService(parse(*args), reactor=reactor))
            self.assertEqual(node.election_mode, mode, args)
        node = node_of(makeService(parse("--master-ttl", "5"), reactor=reactor))
        self.assertEqual(node.master_ttl, 5)


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
        node = node_of(makeService(options, reactor=reactor))
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
        node = node_of(makeService(parse("--no-etcd", "--peer", "h"), reactor=reactor))
        self.assertEqual(node.settings.weight, -0.17326296)

    def test_listeners_are_named_by_their_options(self) -> None:
        """The Program knows the UDP server as --udp-port, the site as --http and
        the node-to-node transport as --transport."""
        reactor = MemoryUDPReactor()
        reactor.advance(1_790_000_000)
        program = makeService(
            parse("--no-etcd", "--peer", "h", "--udp-port", "0", "--http", "8085"),
            reactor=reactor,
        )
        self.assertEqual(
            [where for _, where in program.listeners],
            [
                "--udp-port 0",
                "--http tcp:8085:interface=127.0.0.1",
                "--transport auto",
            ],
        )
