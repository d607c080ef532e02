"""twistd minietcd: options, the service tree, listening, and one real-socket run."""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import twisted.test
from twisted.application.service import IService, IServiceMaker
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, RaisingMemoryReactor
from twisted.logger import capturedLogs
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from minietcd.api import KeysAPI
from minietcd.gohttp import BoundedRequest
from minietcd.tap import APIService, Listener, Options, client_url, makeService
from tapkit.listening import ListenFailed, Program
from tests.harness.certs import Pki, make_pki


def options(*argv: str) -> Options:
    config = Options()
    config.parseOptions(list(argv))
    return config


def listeners(program: Any) -> list[Listener]:
    return [child for child in program.service if isinstance(child, Listener)]


def api_of(program: Any) -> KeysAPI:
    [api_service] = [
        child for child in program.service if isinstance(child, APIService)
    ]
    return api_service.api


def usage_error(*argv: str) -> str:
    """The one line a bad command line gets."""
    try:
        options(*argv)
    except usage.UsageError as e:
        return str(e)
    raise AssertionError(f"{argv} parsed")


class OptionsTests(SynchronousTestCase):
    """Command-line parsing."""

    def test_defaults(self) -> None:
        """Without options: one listener on 127.0.0.1:2379, no advertised URL."""
        config = options()
        self.assertEqual(config["listen"], ["tcp:2379:interface=127.0.0.1"])
        self.assertIsNone(config["advertise-client-url"])
        self.assertEqual(config["name"], "minietcd")

    def test_repeated_listen(self) -> None:
        """--listen may be given several times, in order."""
        config = options(
            "--listen",
            "tcp:0",
            "--listen",
            "tcp:4001:interface=\\:\\:1",
            "--name",
            "n1",
        )
        self.assertEqual(config["listen"], ["tcp:0", "tcp:4001:interface=\\:\\:1"])
        self.assertEqual(config["name"], "n1")

    def test_advertise_url(self) -> None:
        """--advertise-client-url takes an http(s) or unix(s) URL, as etcd's
        clientURLs may hold, and refuses anything else, naming the schemes."""
        self.assertEqual(
            options("--advertise-client-url", "https://etcd.example:2379")[
                "advertise-client-url"
            ],
            "https://etcd.example:2379",
        )
        self.assertEqual(
            options("--advertise-client-url", "unix:///run/etcd.sock")[
                "advertise-client-url"
            ],
            "unix:///run/etcd.sock",
        )
        for bad in ("etcd.example:2379", "unixfoo"):
            error = self.assertRaises(
                usage.UsageError, options, "--advertise-client-url", bad
            )
            self.assertIn("http://, https://, unix:// or unixs://", str(error))

    def test_bare_port_is_local(self) -> None:
        """--listen 2379 listens on 127.0.0.1:2379 only."""
        self.assertEqual(
            options("--listen", "2379")["listen"], ["tcp:2379:interface=127.0.0.1"]
        )

    def test_not_an_endpoint(self) -> None:
        """A --listen that is no endpoint is one line naming --listen and the forms."""
        error = usage_error("--listen", "localhost:2379")
        self.assertTrue(
            error.startswith("--listen 'localhost:2379' is not an endpoint")
        )
        self.assertIn("tcp:PORT:interface=ADDR", error)

    def test_help_examples_bind_localhost(self) -> None:
        """--help says a port binds 127.0.0.1 and how to serve every interface."""
        text = " ".join(str(Options()).split())
        self.assertIn("2379 means tcp:2379:interface=127.0.0.1", text)
        self.assertIn("tcp:2379:interface=0.0.0.0 serves every interface", text)

    def test_tls_flag_mistakes(self) -> None:
        """etcd's TLS flags, misused, each get one line saying what is missing."""
        pki = make_pki(self.mktemp_dir())
        ssl = ["--listen", "ssl:0:interface=127.0.0.1"]
        cert = ["--cert-file", pki.server_cert, "--key-file", pki.server_key]
        cases = [
            (["--client-cert-auth", *ssl, *cert], "needs --trusted-ca-file"),
            (["--trusted-ca-file", pki.ca, *ssl, *cert], "give both or neither"),
            (["--cert-file", pki.server_cert, *ssl], "go together"),
            (
                ["--client-cert-auth", "--trusted-ca-file", pki.ca, *ssl],
                "needs --cert-file and --key-file",
            ),
            (cert, "there is none"),
            (
                ["--cert-file", "/nonexistent", "--key-file", pki.server_key, *ssl],
                "--cert-file /nonexistent: No such file",
            ),
            (
                ["--cert-file", pki.server_cert, "--key-file", pki.client_key, *ssl],
                "not a PEM certificate and its key",
            ),
            (
                [
                    "--trusted-ca-file",
                    pki.server_key,
                    "--client-cert-auth",
                    *ssl,
                    *cert,
                ],
                "no PEM certificate",
            ),
            (
                ["--listen", f"ssl:0:privateKey={pki.server_key}", *cert],
                "not privateKey= or certKey=",
            ),
        ]
        for argv, needle in cases:
            with self.subTest(argv=argv):
                self.assertIn(needle, usage_error(*argv))

    def mktemp_dir(self) -> str:
        path = FilePath(self.mktemp())
        path.makedirs()
        return str(path.path)

    def test_plugin(self) -> None:
        """The twistd plugin is named minietcd and points at minietcd.tap."""
        from twisted.plugins.minietcd_plugin import minietcd

        self.assertTrue(IServiceMaker.providedBy(minietcd))
        self.assertEqual(minietcd.tapname, "minietcd")
        self.assertIs(minietcd.options, Options)


class ClientURLTests(SynchronousTestCase):
    """The URL derived from a bound address."""

    def test_addresses(self) -> None:
        """Any-addresses show as 127.0.0.1, IPv6 in brackets, ssl: as https."""
        self.assertEqual(
            client_url("tcp:0", IPv4Address("TCP", "0.0.0.0", 5)), "http://127.0.0.1:5"
        )
        self.assertEqual(
            client_url("tcp:0", IPv4Address("TCP", "10.1.2.3", 5)), "http://10.1.2.3:5"
        )
        self.assertEqual(
            client_url("tcp:0", IPv6Address("TCP", "::", 5)), "http://127.0.0.1:5"
        )
        self.assertEqual(
            client_url("tcp6:0", IPv6Address("TCP", "::1", 5)), "http://[::1]:5"
        )
        self.assertEqual(
            client_url("ssl:443:privateKey=k", IPv4Address("TCP", "127.0.0.1", 443)),
            "https://127.0.0.1:443",
        )
        self.assertIsNone(client_url("unix:/tmp/s", UNIXAddress("/tmp/s")))


class MakeServiceTests(SynchronousTestCase):
    """The service tree on a memory reactor."""

    def test_listens_on_the_endpoint(self) -> None:
        """Starting the service listens where --listen says, with the API's site."""
        reactor = MemoryReactorClock()
        reactor.advance(1_700_000_000)
        service = makeService(
            options("--listen", "tcp:2399:interface=127.0.0.1"), reactor=reactor
        )
        with capturedLogs() as events:
            service.startService()
        [(port, site, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (2399, "127.0.0.1"))
        self.assertIs(site.requestFactory, BoundedRequest)
        api = api_of(service)
        self.assertIs(site.resource, api.resource())
        self.assertEqual(api.client_urls, ["http://127.0.0.1:2399"])
        [logged] = [
            e
            for e in events
            if e.get("log_format", "").startswith("minietcd listening")
        ]
        self.assertEqual(
            (logged["url"], logged["port"]), ("http://127.0.0.1:2399", 2399)
        )
        self.successResultOf(defer.maybeDeferred(service.stopService))

    def test_several_listeners_and_advertised_url(self) -> None:
        """Every listener serves the same site; an advertised URL is kept as given."""
        reactor = MemoryReactorClock()
        config = options(
            "--listen",
            "tcp:1",
            "--listen",
            "tcp:2",
            "--advertise-client-url",
            "http://etcd:2379",
        )
        service = makeService(config, reactor=reactor)
        service.startService()
        self.assertEqual([server[0] for server in reactor.tcpServers], [1, 2])
        self.assertIs(reactor.tcpServers[0][1], reactor.tcpServers[1][1])
        self.assertEqual(api_of(service).client_urls, ["http://etcd:2379"])
        self.successResultOf(defer.maybeDeferred(service.stopService))

    def test_a_restart_starts_above_every_earlier_index(self) -> None:
        """By default a fresh store starts at the clock's milliseconds: a minietcd
        restarted empty still hands out larger indexes (and election epochs)."""
        reactor = MemoryReactorClock()
        reactor.advance(1_700_000_000.25)
        first = api_of(makeService(options("--listen", "tcp:1"), reactor=reactor))
        last = first.store.set("/k", "v", reactor.seconds()).node.modified_index
        reactor.advance(0.01)
        again = api_of(makeService(options("--listen", "tcp:1"), reactor=reactor))
        self.assertEqual(first.store.start_index, 1_700_000_000_250)
        self.assertGreater(again.store.index, last)

    def test_start_index_option(self) -> None:
        """--start-index 3 starts where a fresh etcd does; mistakes name the option."""
        reactor = MemoryReactorClock()
        config = options("--listen", "tcp:1", "--start-index", "3")
        self.assertEqual(api_of(makeService(config, reactor=reactor)).store.index, 3)
        for bad, message in [
            ("x", "--start-index: 'x' is not an integer"),
            ("0", "--start-index must be 1-9007194959773696"),
        ]:
            with self.assertRaises(usage.UsageError) as caught:
                options("--start-index", bad)
            self.assertEqual(str(caught.exception), message)

    def test_stop_cancels_the_expiry_timer(self) -> None:
        """Stopping the service stops listening and cancels pending sweeps."""
        reactor = MemoryReactorClock()
        reactor.advance(1_700_000_000)
        service = makeService(options("--listen", "tcp:1"), reactor=reactor)
        service.startService()
        api_of(service).store.set("/k", "v", reactor.seconds(), ttl=30)
        api_of(service)._schedule()
        self.assertEqual(len(reactor.getDelayedCalls()), 1)
        self.successResultOf(defer.maybeDeferred(service.stopService))
        self.assertEqual(reactor.getDelayedCalls(), [])
        self.assertFalse(IService(service).running)

    def test_listen_failure_is_one_line(self) -> None:
        """A port that cannot be bound fails startService with one line naming
        --listen (twistd exits 1)."""
        self.patch(sys, "excepthook", sys.excepthook)
        reactor = _FailingReactor(listenException=OSError(98, "Address in use"))
        stderr = io.StringIO()
        service = makeService(options("--listen", "tcp:1"), reactor=reactor)
        assert isinstance(service, Program)
        service.stderr = stderr
        error = self.assertRaises(ListenFailed, service.startService)
        self.assertEqual(str(error), "--listen tcp:1: address already in use")
        self.assertEqual(
            stderr.getvalue(), "minietcd: --listen tcp:1: address already in use\n"
        )


class _FailingReactor(RaisingMemoryReactor, Clock):
    """A reactor with a clock whose listen calls fail."""

    def __init__(self, listenException: Exception) -> None:
        RaisingMemoryReactor.__init__(self, listenException=listenException)
        Clock.__init__(self)


class _Raw(Protocol):
    """Sends one HTTP/1.0 request and collects the whole answer."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.data = b""
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.done.callback(self.data)


class LiveServerTests(TestCase):
    """Real loopback listeners on port 0."""

    @defer.inlineCallbacks
    def test_tls_listener(self) -> Any:
        """An ssl: listener serves HTTPS and advertises an https:// URL."""
        from twisted.internet import reactor
        from twisted.internet.endpoints import SSL4ClientEndpoint
        from twisted.internet.ssl import CertificateOptions

        pem = FilePath(twisted.test.__file__).sibling("server.pem").path
        listen = f"ssl:0:interface=127.0.0.1:privateKey={pem}"
        service = makeService(options("--listen", listen), reactor=reactor)
        service.startService()
        self.addCleanup(service.stopService)
        [listener] = listeners(service)
        assert listener.port is not None
        port = listener.port.getHost().port
        raw = _Raw(b"GET /v2/members HTTP/1.0\r\n\r\n")
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port, CertificateOptions())
        yield connectProtocol(endpoint, raw)
        answer = yield raw.done
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200 OK"))
        [member] = json.loads(body)["members"]
        self.assertEqual(member["clientURLs"], [f"https://127.0.0.1:{port}"])

    def tls_server(self, pki: Pki) -> int:
        """Start minietcd on an ssl: listener requiring client certs; its port."""
        from twisted.internet import reactor

        config = options(
            "--listen",
            "ssl:0:interface=127.0.0.1",
            "--cert-file",
            pki.server_cert,
            "--key-file",
            pki.server_key,
            "--client-cert-auth",
            "--trusted-ca-file",
            pki.ca,
        )
        service = makeService(config, reactor=reactor)
        service.startService()
        self.addCleanup(service.stopService)
        [listener] = listeners(service)
        assert listener.port is not None
        return int(listener.port.getHost().port)

    def tls_get(self, pki: Pki, port: int, *, with_cert: bool) -> Any:
        """GET /v2/members over TLS trusting the test CA; the raw answer."""
        from twisted.internet import reactor
        from twisted.internet.endpoints import SSL4ClientEndpoint
        from twisted.internet.ssl import (
            Certificate,
            PrivateCertificate,
            optionsForClientTLS,
        )

        def content(path: str) -> bytes:
            return FilePath(path).getContent()

        client = None
        if with_cert:
            client = PrivateCertificate.loadPEM(
                content(pki.client_cert) + b"\n" + content(pki.client_key)
            )
        tls = optionsForClientTLS(
            "127.0.0.1",
            trustRoot=Certificate.loadPEM(content(pki.ca)),
            clientCertificate=client,
        )
        raw = _Raw(b"GET /v2/members HTTP/1.0\r\n\r\n")
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port, tls)
        connected = connectProtocol(endpoint, raw)
        return connected.addCallback(lambda _: raw.done)

    @defer.inlineCallbacks
    def test_client_cert_auth_serves_a_signed_client(self) -> Any:
        """With --client-cert-auth, a client with a CA-signed certificate is served."""
        pki = make_pki(self.mktemp_dir())
        port = self.tls_server(pki)
        answer = yield self.tls_get(pki, port, with_cert=True)
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200 OK"))
        [member] = json.loads(body)["members"]
        self.assertEqual(member["clientURLs"], [f"https://127.0.0.1:{port}"])

    @defer.inlineCallbacks
    def test_client_cert_auth_refuses_a_client_without_one(self) -> Any:
        """With --client-cert-auth, a client without a certificate gets no answer."""
        pki = make_pki(self.mktemp_dir())
        port = self.tls_server(pki)
        try:
            answer = yield self.tls_get(pki, port, with_cert=False)
        except Exception as e:  # TLS 1.2 fails the handshake itself
            answer = b""
            self.assertIn("SSL", type(e).__name__ + repr(e))
        self.assertEqual(answer, b"")

    def mktemp_dir(self) -> str:
        path = FilePath(self.mktemp())
        path.makedirs()
        return str(path.path)

    @defer.inlineCallbacks
    def test_port_zero_is_advertised_and_served(self) -> Any:
        """With tcp:0 the bound port is advertised; raw HTTP gets etcd's headers."""
        from twisted.internet import reactor

        service = makeService(
            options("--listen", "tcp:0:interface=127.0.0.1", "--start-index", "3"),
            reactor=reactor,
        )
        service.startService()
        self.addCleanup(service.stopService)
        [listener] = listeners(service)
        assert listener.port is not None
        port = listener.port.getHost().port
        self.assertNotEqual(port, 0)

        def fetch(request: bytes) -> defer.Deferred[bytes]:
            raw = _Raw(request)
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
            connected = connectProtocol(endpoint, raw)
            return connected.addCallback(lambda _: raw.done)  # type: ignore[no-any-return]

        members = yield fetch(b"GET /v2/members HTTP/1.0\r\n\r\n")
        head, _, body = members.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200 OK"))
        [member] = json.loads(body)["members"]
        self.assertEqual(member["clientURLs"], [f"http://127.0.0.1:{port}"])

        put = yield fetch(
            b"PUT /v2/keys/k HTTP/1.0\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 7\r\n\r\nvalue=v"
        )
        self.assertTrue(put.startswith(b"HTTP/1.0 201 Created"))
        answer = yield fetch(b"HEAD /v2/keys/k HTTP/1.0\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.assertEqual(body, b"")
        self.assertIn(b"Content-Length: 84", lines)
        self.assertIn(b"X-Etcd-Index: 4", lines)
        self.assertFalse(
            [line for line in lines if line.lower().startswith(b"server:")]
        )
