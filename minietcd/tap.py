# -*- test-case-name: tests.minietcd.test_tap -*-
"""C{twistd minietcd}: options and the service tree (listeners around one KeysAPI)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from attrs import define, field
from twisted.application.service import IServiceCollection, MultiService, Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web.server import Site

from minietcd.gohttp import GoSite
from tapkit.endpoints import stream_endpoint
from tapkit.listening import ListenFailed, Program, reason_of
from tapkit.notls import without_tls
from tapkit.servertls import server_tls
from tapkit.version import version_line

if TYPE_CHECKING:
    from minietcd.api import KeysAPI  # Klein imports the reactor: not before options

DEFAULT_LISTEN = "tcp:2379:interface=127.0.0.1"
#: Past 2**53 a JavaScript client (node-discover's world) loses index precision.
MAX_START_INDEX = 2**53 - 2**32
log = Logger()


def is_tls(description: str) -> bool:
    """Whether the endpoint C{description} serves TLS (an C{ssl:} endpoint)."""
    return description.split(":", 1)[0].lower() == "ssl"


def as_tcp(description: str) -> str:
    """The C{tcp:} endpoint under an C{ssl:} one whose TLS the options give."""
    return "tcp:" + description.split(":", 1)[1] if ":" in description else "tcp:"


class Options(usage.Options):
    """Command-line options of C{twistd minietcd}."""

    synopsis = "[--listen ENDPOINT]... [--advertise-client-url URL] [--name NAME]"
    longdesc = (
        "Serve an etcd v2 compatible keys API (keys, directories, TTLs, watches) "
        "from memory. Listeners are Twisted endpoint strings; ssl: endpoints serve "
        "HTTPS, with privateKey= and certKey= in the string or --cert-file and "
        "--key-file; --client-cert-auth with --trusted-ca-file requires client "
        "certificates on them, as etcd does."
    )
    optFlags = [
        [
            "client-cert-auth",
            None,
            "Serve only clients with a certificate signed by --trusted-ca-file "
            "on the ssl: listeners (needs --cert-file and --key-file).",
        ],
    ]
    optParameters = [
        [
            "advertise-client-url",
            None,
            None,
            "The client URL reported by /v2/members and /v2/machines "
            "[default: from the first listener, 0.0.0.0 and :: shown as 127.0.0.1]",
        ],
        ["name", None, "minietcd", "The member name."],
        [
            "start-index",
            None,
            None,
            "The index of the fresh store (a fresh etcd: 3) [default: milliseconds "
            "since 1970, so that after a restart, which starts empty, indexes and "
            "the election epochs taken from them still only grow].",
        ],
        [
            "cert-file",
            None,
            None,
            "TLS certificate of the ssl: listeners (PEM), e.g. "
            "--listen ssl:2379:interface=127.0.0.1 --cert-file c.pem --key-file k.pem.",
        ],
        ["key-file", None, None, "TLS key of the ssl: listeners (PEM)."],
        [
            "trusted-ca-file",
            None,
            None,
            "CA certificate(s) (PEM) that sign the client certificates "
            "--client-cert-auth accepts.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """Listen on this endpoint (repeatable): a port (2379 means
        tcp:2379:interface=127.0.0.1) or an endpoint string;
        tcp:2379:interface=0.0.0.0 serves every interface [default: 2379]."""
        self["listen"].append(endpoint)

    def opt_version(self) -> None:
        """Print the project's version and Twisted's, then exit."""
        sys.stdout.write(version_line("minietcd"))
        sys.exit(0)

    def postOptions(self) -> None:
        self["start-index"] = self._start_index()
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        url = self["advertise-client-url"]
        schemes = ("http://", "https://", "unix://", "unixs://")
        if url is not None and not url.startswith(schemes):
            raise usage.UsageError(
                "--advertise-client-url must be an http://, https://, unix:// or "
                f"unixs:// URL: {url!r}"
            )
        if not any(is_tls(d) for d in self["listen"]):
            without_tls()
        self["tls"] = self._tls()
        self["listen"] = [self._endpoint(d) for d in self["listen"]]

    def _start_index(self) -> int | None:
        text = self["start-index"]
        if text is None:
            return None
        try:
            index = int(text)
        except ValueError:
            raise usage.UsageError(
                f"--start-index: {text!r} is not an integer"
            ) from None
        if not 1 <= index <= MAX_START_INDEX:
            raise usage.UsageError(f"--start-index must be 1-{MAX_START_INDEX}")
        return index

    def _endpoint(self, description: str) -> str:
        """The endpoint string of one --listen (a bare port means 127.0.0.1)."""
        if self["tls"] is None or not is_tls(description):
            return stream_endpoint("--listen", description)
        try:
            stream_endpoint("--listen", as_tcp(description))
        except usage.UsageError:
            raise usage.UsageError(
                f"--listen {description!r}: with --cert-file, an ssl: listener "
                "takes what tcp: does (PORT, interface=, backlog=), not "
                "privateKey= or certKey="
            ) from None
        return description

    def _tls(self) -> Any:
        """The CertificateOptions of --cert-file and its friends, or None."""
        cert, key = self["cert-file"], self["key-file"]
        ca, required = self["trusted-ca-file"], self["client-cert-auth"]
        if required and ca is None:
            raise usage.UsageError(
                "--client-cert-auth needs --trusted-ca-file, the CA that signs "
                "the client certificates"
            )
        if ca is not None and not required:
            raise usage.UsageError(
                "--trusted-ca-file is for --client-cert-auth: give both or neither"
            )
        if (cert is None) != (key is None):
            raise usage.UsageError("--cert-file and --key-file go together")
        if cert is None:
            if required:
                raise usage.UsageError(
                    "--client-cert-auth needs --cert-file and --key-file, the "
                    "certificate of the ssl: listeners it guards"
                )
            return None
        if not any(is_tls(d) for d in self["listen"]):
            raise usage.UsageError(
                "--cert-file and --key-file serve ssl: listeners, and there is "
                "none: add --listen ssl:2379:interface=127.0.0.1"
            )
        return server_tls(cert, key, ca)


def client_url(description: str, address: object) -> str | None:
    """The URL clients use to reach a listener bound to C{address}."""
    scheme = "https" if description.split(":", 1)[0].lower() == "ssl" else "http"
    if isinstance(address, IPv4Address):
        host = address.host if address.host != "0.0.0.0" else "127.0.0.1"
    elif isinstance(address, IPv6Address):
        host = f"[{address.host}]" if address.host not in ("::", "") else "127.0.0.1"
    else:
        return None
    return f"{scheme}://{host}:{address.port}"


@define(eq=False)
class Listener(Service):
    """Listen on one endpoint; tell C{api} its URL if it is the advertised one."""

    endpoint: IStreamServerEndpoint
    description: str
    factory: IProtocolFactory
    api: KeysAPI
    advertise: bool
    port: IListeningPort | None = field(default=None, init=False)
    _listening: Deferred[Any] | None = field(default=None, init=False)

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        listening = self.endpoint.listen(self.factory)
        self._listening = listening
        failures: list[Failure] = []
        listening.addCallbacks(self._listened, failures.append)
        if failures:
            # Let twistd report a port it cannot bind, on one line (Program), and exit.
            error = failures[0].value
            if isinstance(error, CannotListenError | OSError):
                raise ListenFailed(f"--listen {self.description}", reason_of(error))
            failures[0].raiseException()
        listening.addErrback(
            lambda failure: log.failure(
                "minietcd cannot listen on {endpoint}",
                failure,
                endpoint=self.description,
            )
        )

    def startService(self) -> None:
        if self._listening is None:
            self.privilegedStartService()
        Service.startService(self)

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        address = port.getHost()
        url = client_url(self.description, address)
        if self.advertise and url is not None:
            self.api.client_urls = [url]
        log.info(
            "minietcd listening on {url}",
            url=url,
            endpoint=self.description,
            host=getattr(address, "host", None),
            port=getattr(address, "port", None),
        )
        return port

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        listening, self._listening = self._listening, None
        if listening is None:
            return None
        listening.cancel()
        port, self.port = self.port, None
        if port is None:
            return None
        stopped: Deferred[None] = maybeDeferred(port.stopListening)  # type: ignore[call-overload]
        return stopped


@define(eq=False)
class APIService(Service):
    """Stops the API (expiry timer, open watches) when the server stops."""

    api: KeysAPI

    def stopService(self) -> None:
        Service.stopService(self)
        self.api.stop()


class QuietSite(GoSite):
    """A site without per-request access logging (etcd logs none either)."""

    def log(self, request: object) -> None:
        pass


def serving_site(api: KeysAPI, reactor: IReactorTime) -> Site:
    """The site every listener serves C{api} on, with the server's own requests.

    No idle timeout, as etcd's client server sets none: Twisted's default (12 h)
    cancels and schedules a timer on every request, which cost a long-poll
    fan-out a fifth of its time.
    """
    site = QuietSite(api.resource(), timeout=None, reactor=reactor)
    return site


def makeService(config: Options, reactor: Any = None) -> Program:
    """The minietcd service: one store and API behind every listener, as a
    L{Program}, so that a port it cannot listen on ends twistd with one line."""
    if reactor is None:
        from twisted.internet import reactor
    clock: IReactorTime = reactor
    advertised = config["advertise-client-url"]
    from minietcd.api import KeysAPI

    start_index = config["start-index"]
    if start_index is None:
        start_index = max(3, int(clock.seconds() * 1000))
    from minietcd.store import Store

    api = KeysAPI(
        clock=clock,
        store=Store(start_index=start_index),
        client_urls=[advertised] if advertised else ["http://127.0.0.1:2379"],
        name=config["name"],
    )
    # endpoints loads twisted.internet.ssl: only after without_tls() has run.
    from twisted.internet import endpoints

    site = serving_site(api, reactor)
    parent = MultiService()
    APIService(api).setServiceParent(parent)
    tls = config["tls"]
    for number, description in enumerate(config["listen"]):
        factory: IProtocolFactory = site
        endpoint_text = description
        if tls is not None and is_tls(description):
            from twisted.protocols.tls import TLSMemoryBIOFactory

            factory = TLSMemoryBIOFactory(tls, False, site)
            endpoint_text = as_tcp(description)
        listener = Listener(
            endpoints.serverFromString(reactor, endpoint_text),
            description,
            factory,
            api,
            advertise=(number == 0 and not advertised),
        )
        listener.setServiceParent(IServiceCollection(parent))
    return Program("minietcd", parent)
