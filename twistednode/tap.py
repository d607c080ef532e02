# -*- test-case-name: tests.test_tap -*-
"""``twistd -n clusternode``: command-line options and the service they build.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import uuid
from collections.abc import Mapping
from typing import Any

from twisted.application.service import IService, IServiceCollection
from twisted.python import usage

from tapkit.endpoints import stream_endpoint
from tapkit.listening import Program
from tapkit.notls import without_tls
from tapkit.version import version_line
from twistednode.discovery.settings import Settings, make_settings
from twistednode.election.lease import MIN_TTL
from twistednode.etcd.credentials import PASSWORD_VARIABLE, credentials_from
from twistednode.registry.record import check_cluster_name

DEFAULT_ETCD = "http://127.0.0.1:2379"
#: Where an --etcd-user without a password finds it, as etcdctl does.
#: The options behind make_settings' parameters, for its messages.
SETTING_OPTIONS = {
    "hello_interval": "--hello-interval",
    "check_interval": "--check-interval",
    "node_timeout": "--node-timeout",
    "master_timeout": "--master-timeout",
    "masters_required": "--masters-required",
    "weight": "--weight",
}


def _parse_peer(text: str) -> tuple[str, int | None]:
    """Parse ``HOST`` or ``HOST:PORT``, as in node-discover's unicast list."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host, port_text = port_text, ""
    if not host or any(c.isspace() for c in host):
        raise usage.UsageError(f"--peer {text!r}: expected HOST or HOST:PORT")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise usage.UsageError(f"--peer {text!r}: port must be 1-65535")
    return host, int(port_text)


def _positive_seconds(name: str) -> Any:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise usage.UsageError(
                f"--{name} must be a number of seconds, not {text!r}"
            ) from None
        if not math.isfinite(value) or value <= 0:
            raise usage.UsageError(f"--{name} must be a positive number of seconds")
        return value

    return convert


def _integer(name: str) -> Any:
    def convert(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise usage.UsageError(f"--{name}: {text!r} is not an integer") from None

    return convert


def _number(name: str) -> Any:
    def convert(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise usage.UsageError(f"--{name}: {text!r} is not a number") from None

    return convert


def _load_app(text: str) -> Any:
    """The callable C{MODULE:NAME} names, for C{--app} (one-line errors)."""
    module_name, sep, name = text.partition(":")
    if not sep or not module_name or not name:
        raise usage.UsageError(f"--app {text!r}: expected MODULE:CALLABLE")
    import importlib

    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise usage.UsageError(
            f"--app {text!r}: cannot import {module_name}: {type(e).__name__}: {e}"
        ) from None
    value: Any = module
    for part in name.split("."):
        value = getattr(value, part, None)
        if value is None:
            raise usage.UsageError(f"--app {text!r}: {module_name} has no {name}")
    if not callable(value):
        raise usage.UsageError(f"--app {text!r}: {name} is not callable")
    return value


def _in_option_names(message: str) -> str:
    """A settings message with its parameter names as the options that set them."""
    pattern = r"\b(" + "|".join(SETTING_OPTIONS) + r")\b"
    return re.sub(pattern, lambda match: SETTING_OPTIONS[match.group(1)], message)


class Options(usage.Options):
    """Options of one cluster node; intervals are in seconds (node-discover uses ms)."""

    synopsis = "[options]"
    longdesc = (
        "Run one node of a cluster: register in etcd (or minietcd), learn every peer "
        "from the registry, exchange node-discover 1.2.1 UDP hellos with them and "
        "agree on one master: by default the holder of a leased, fenced key in the "
        "registry (--election)."
    )
    optFlags = [
        [
            "no-etcd",
            None,
            "Run on static --peer entries alone (node-discover unicast).",
        ],
        ["client", None, "Client only: never master-eligible, sends no hellos."],
        [
            "no-early-election",
            None,
            "Always wait one --check-interval before the first election, as "
            "node-discover does (needed when node-discover peers list us but we "
            "do not list them).",
        ],
        [
            "trust-hello-address",
            None,
            "In a registry cluster, accept a listed peer's hellos from any address "
            "(its record's port still counts): for peers behind NAT whose record "
            "names another address than their datagrams come from.",
        ],
        [
            "http-access-log",
            None,
            "Log each --http request (at debug level: twist shows it with "
            "--log-level debug, twistd always).",
        ],
        [
            "no-transport",
            None,
            "No node-to-node transport: calls run only here, large messages "
            "cannot be published.",
        ],
    ]
    optParameters: list[list[Any]] = [
        [
            "etcd",
            None,
            DEFAULT_ETCD,
            "etcd URL(s), comma-separated; fails over in order.",
        ],
        ["etcd-api", None, "auto", "Registry API: auto, v2 or v3."],
        [
            "cluster",
            None,
            "default",
            "Cluster name (registry dir /twistednode/<name>).",
        ],
        [
            "udp-port",
            None,
            12345,
            "UDP port for hellos (0 = any free port).",
            _integer("udp-port"),
        ],
        ["udp-interface", None, "0.0.0.0", "Address to bind the UDP socket to."],
        [
            "http",
            None,
            None,
            "Serve the status API and live page: a port (8080 listens on 127.0.0.1 "
            "only, as tcp:8080:interface=127.0.0.1) or an endpoint string; "
            "tcp:8080:interface=0.0.0.0 opens it to every interface.",
        ],
        [
            "http-max-connections",
            None,
            512,
            "Connections the --http server holds open at once; one more is "
            "closed at once.",
            _integer("http-max-connections"),
        ],
        [
            "http-header-timeout",
            None,
            10.0,
            "Seconds a request's headers may take to reach the --http server "
            "(slow clients are cut off); also how long a kept-alive connection "
            "may idle.",
            _positive_seconds("http-header-timeout"),
        ],
        ["advertise", None, None, "Address peers use to reach this node."],
        ["advertisement", None, None, "JSON value advertised to peers."],
        [
            "weight",
            None,
            None,
            "Election weight (higher wins; default: older wins).",
            _number("weight"),
        ],
        [
            "masters-required",
            None,
            1,
            "How many masters the cluster aims for.",
            _integer("masters-required"),
        ],
        [
            "hello-interval",
            None,
            None,
            "Seconds between hellos [default: 1].",
            _positive_seconds("hello-interval"),
        ],
        [
            "check-interval",
            None,
            None,
            "Seconds between election checks [default: 2].",
            _positive_seconds("check-interval"),
        ],
        [
            "node-timeout",
            None,
            None,
            "Seconds of silence before a node is removed [default: 2].",
            _positive_seconds("node-timeout"),
        ],
        [
            "master-timeout",
            None,
            None,
            "Seconds of silence before a master is removed (default: --node-timeout).",
            _positive_seconds("master-timeout"),
        ],
        ["ttl", None, 10, "Registry record TTL in seconds.", _integer("ttl")],
        [
            "election",
            None,
            "auto",
            "Who picks the master: lease (the holder of the registry's master "
            "key; one master, fenced by an epoch), node-discover (node-discover's "
            "hello rules), or auto (lease with a registry and one master, else "
            "node-discover).",
        ],
        [
            "master-ttl",
            None,
            2,
            "Lease election: seconds a crashed master keeps the key (>= 2).",
            _integer("master-ttl"),
        ],
        [
            "legacy-key",
            None,
            None,
            "Deprecated: node-discover's 'key' (MD5 key, static IV, no integrity: "
            "not security; node-discover on Node.js 22+ cannot use it). Use "
            "--cluster-key-file.",
        ],
        [
            "cluster-key-file",
            None,
            None,
            "Keyring file: one base64 32-byte key a line (make one with --new-key); "
            "the first seals every datagram (AES-256-GCM), every one is accepted. "
            "Re-read on SIGHUP and when it changes. Unsealed datagrams are dropped, "
            "so node-discover peers cannot join.",
        ],
        [
            "transport",
            None,
            "auto",
            "Node-to-node transport endpoint for calls and large messages "
            "(auto: a free TCP port on --udp-interface; ssl:... serves https).",
        ],
        [
            "capacity",
            None,
            1.0,
            "This node's relative share of the keys (1 = as its peers).",
            _number("capacity"),
        ],
        [
            "call-timeout",
            None,
            None,
            "Seconds a call keeps trying on the key's owner before it fails "
            "[default: 5].",
            _positive_seconds("call-timeout"),
        ],
        ["node-id", None, None, "Node id (a UUID; default: a new random one)."],
        ["etcd-cacert", None, None, "CA file to verify an https:// etcd."],
        ["etcd-cert", None, None, "Client certificate file for etcd."],
        ["etcd-key", None, None, "Client key file for etcd."],
        [
            "etcd-user",
            None,
            None,
            "etcd v3 user, as USER:PASSWORD, or USER with the password from "
            f"--etcd-password-file or ${PASSWORD_VARIABLE} (as etcdctl reads it).",
        ],
        [
            "etcd-password-file",
            None,
            None,
            "File whose first line is the --etcd-user password (keeps it out of ps).",
        ],
    ]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self["peers"] = []
        self["apps"] = []
        self._environ = os.environ if environ is None else environ

    def opt_peer(self, value: str) -> None:
        """Add a static peer HOST[:PORT] (repeatable; port defaults to --udp-port)."""
        self["peers"].append(_parse_peer(value))

    def opt_app(self, value: str) -> None:
        """Call MODULE:CALLABLE with the node before it starts, to register the
        application's handlers and channels (repeatable)."""
        self["apps"].append((value, _load_app(value)))

    def opt_new_key(self) -> None:
        """Print a new random key (a keyring line for --cluster-key-file), then exit."""
        from twistednode.trust.keyring import new_key

        sys.stdout.write(new_key() + "\n")
        sys.exit(0)

    def opt_version(self) -> None:
        """Print the project's version and Twisted's, then exit."""
        sys.stdout.write(version_line("clusternode"))
        sys.exit(0)

    def postOptions(self) -> None:
        if self["etcd-api"] not in ("auto", "v2", "v3"):
            raise usage.UsageError("--etcd-api must be auto, v2 or v3")
        if not 0 <= self["udp-port"] <= 65535:
            raise usage.UsageError("--udp-port must be 0-65535")
        if self["ttl"] < 2:
            raise usage.UsageError("--ttl must be at least 2 seconds")
        if self["masters-required"] < 1:
            raise usage.UsageError("--masters-required must be at least 1")
        if self["weight"] is not None and not math.isfinite(self["weight"]):
            raise usage.UsageError("--weight must be a finite number")
        if self["http-max-connections"] < 1:
            raise usage.UsageError("--http-max-connections must be at least 1")
        if not (math.isfinite(self["capacity"]) and 0 < self["capacity"] <= 1e6):
            raise usage.UsageError("--capacity must be above 0 and at most 1e6")
        if self["no-etcd"]:
            self["etcd-urls"] = []
        else:
            urls = [u.strip() for u in self["etcd"].split(",") if u.strip()]
            for url in urls:
                if not url.startswith(("http://", "https://")):
                    raise usage.UsageError(
                        f"--etcd {url!r}: expected http(s)://HOST:PORT"
                    )
            if not urls:
                raise usage.UsageError("--etcd needs at least one URL (or --no-etcd)")
            self["etcd-urls"] = urls
        if self["no-etcd"] and not self["peers"]:
            raise usage.UsageError("--no-etcd needs at least one --peer")
        self._check_election()
        self._check_keyring()
        if self["advertisement"] is not None:
            try:
                self["advertisement"] = json.loads(self["advertisement"])
            except (ValueError, RecursionError) as e:
                raise usage.UsageError(f"--advertisement is not valid JSON: {e}") from e
        if self["node-id"] is not None:
            try:
                self["node-id"] = str(uuid.UUID(self["node-id"]))
            except ValueError:
                raise usage.UsageError("--node-id must be a UUID") from None
        try:
            check_cluster_name(self["cluster"])
        except ValueError as e:
            raise usage.UsageError(f"--cluster: {e}") from None
        try:
            settings_from_options(self, epoch_ms=1)
        except ValueError as e:
            raise usage.UsageError(_in_option_names(str(e))) from None
        files = (self["etcd-cacert"], self["etcd-cert"], self["etcd-key"])
        https = any(url.startswith("https://") for url in self["etcd-urls"])
        http_tls = (self["http"] or "").split(":", 1)[0].lower() == "ssl"
        transport_tls = self["transport"].split(":", 1)[0].lower() == "ssl"
        served_tls = http_tls or (transport_tls and not self["no-transport"])
        if not https and not served_tls and files == (None, None, None):
            without_tls()  # first: what follows loads the reactor's modules
        if self["http"] is not None:
            self["http"] = stream_endpoint("--http", self["http"])
        if self["transport"] != "auto" and not self["no-transport"]:
            transport = self["transport"]
            if transport.isdigit():  # a bare port: on the UDP socket's interface
                transport = f"tcp:{transport}:interface={self['udp-interface']}"
            self["transport"] = stream_endpoint("--transport", transport)
        self["tls"] = None
        if files != (None, None, None):
            # Only then: the registry's client (treq, twisted.web.client) is not
            # what a node on static peers should pay for at every start.
            from twistednode.registry.backends import tls_from_options

            try:
                self["tls"] = tls_from_options(*files)
            except (OSError, ValueError) as e:
                raise usage.UsageError(f"etcd TLS: {e}") from None
        self["auth"] = self._credentials()

    def _check_election(self) -> None:
        """Refuse an --election the other options cannot give."""
        if self["election"] not in ("auto", "lease", "node-discover"):
            raise usage.UsageError(
                f"--election must be auto, lease or node-discover, "
                f"not {self['election']!r}"
            )
        if self["master-ttl"] < MIN_TTL:
            raise usage.UsageError(f"--master-ttl must be at least {MIN_TTL} seconds")
        if self["election"] != "lease":
            return
        if self["no-etcd"]:
            raise usage.UsageError("--election lease needs a registry (not --no-etcd)")
        if self["masters-required"] != 1:
            raise usage.UsageError(
                "--election lease has exactly one master: drop --masters-required "
                "or use --election node-discover"
            )

    def _check_keyring(self) -> None:
        """Read the keyring file now, so a bad one is one usage line."""
        path = self["cluster-key-file"]
        if path is None:
            return
        if self["legacy-key"] is not None:
            raise usage.UsageError(
                "--cluster-key-file and --legacy-key cannot be used together"
            )
        from twistednode.trust.keyring import KeyringError, read_keyring

        try:
            read_keyring(path)
        except KeyringError as e:
            raise usage.UsageError(f"--cluster-key-file: {e}") from None

    def _credentials(self) -> Any:
        """The etcd v3 Credentials of --etcd-user and its password, or None."""
        try:
            return credentials_from(
                self["etcd-user"],
                self["etcd-password-file"],
                self["etcd-api"],
                self._environ,
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None


def settings_from_options(config: Mapping[str, Any], epoch_ms: int) -> Settings:
    """The discovery settings the options ask for (ValueError if inconsistent)."""
    return make_settings(
        epoch_ms=epoch_ms,
        hello_interval=config["hello-interval"],
        check_interval=config["check-interval"],
        node_timeout=config["node-timeout"],
        master_timeout=config["master-timeout"],
        masters_required=config["masters-required"],
        weight=config["weight"],
        client=bool(config["client"]),
        key=config["legacy-key"],
        early_election=not config["no-early-election"],
    )


def makeService(config: Options, reactor: Any = None) -> Program:
    """Build the node's service tree from parsed options, as a L{Program}: a port
    it cannot listen on ends twistd or twist with one line."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    from twistednode.node import ClusterNode

    settings = settings_from_options(config, epoch_ms=int(reactor.seconds() * 1000))
    extra: dict[str, Any] = {}
    if config["node-id"] is not None:
        extra["node_id"] = config["node-id"]
    if config["call-timeout"] is not None:
        extra["call_timeout"] = config["call-timeout"]
    node = ClusterNode(
        reactor=reactor,
        settings=settings,
        cluster=config["cluster"],
        etcd_urls=tuple(config["etcd-urls"]),
        static_peers=tuple(config["peers"]),
        udp_port=config["udp-port"],
        udp_interface=config["udp-interface"],
        advertise=config["advertise"],
        advertisement=config["advertisement"],
        ttl=config["ttl"],
        http=config["http"],
        etcd_api=config["etcd-api"],
        etcd_tls=config["tls"],
        etcd_auth=config["auth"],
        election=config["election"],
        master_ttl=config["master-ttl"],
        cluster_key_file=config["cluster-key-file"],
        transport=None if config["no-transport"] else config["transport"],
        capacity=config["capacity"],
        trust_hello_address=bool(config["trust-hello-address"]),
        http_max_connections=config["http-max-connections"],
        http_header_timeout=config["http-header-timeout"],
        http_access_log=bool(config["http-access-log"]),
        **extra,
    )
    for _name, install in config["apps"]:
        install(node)
    if config["cluster-key-file"] is not None:
        from twistednode.trust.reload import SighupReload

        SighupReload(node.reload_keyring, reactor).setServiceParent(node)
    return Program("clusternode", node, _listeners(node, config))


def _listeners(node: IService, config: Options) -> list[tuple[object, str]]:
    """The node's listening services, each with the option and value it binds."""
    from twisted.application.internet import StreamServerEndpointService, UDPServer

    named: list[tuple[object, str]] = []
    for child in IServiceCollection(node):
        if isinstance(child, UDPServer):
            named.append((child, f"--udp-port {config['udp-port']}"))
        elif isinstance(child, StreamServerEndpointService):
            named.append((child, f"--http {config['http']}"))
    transport = sys.modules.get("twistednode.transport.server")
    if transport is not None:  # loaded by the node only when it runs a transport
        for child in IServiceCollection(node):
            if isinstance(child, transport.TransportService):
                named.append((child, f"--transport {config['transport']}"))
    return named
