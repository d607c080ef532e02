# -*- test-case-name: tests.test_node,tests.integration.test_cluster -*-
"""ClusterNode: the registry, the UDP hellos and the election, wired as one service.

The node binds its UDP socket first (so it knows the port it registers), then writes
its record to the registry, which lists and watches the members directory. Every
peer the registry announces becomes a hello destination and gets a hello at once;
every registry view goes to the election (L{Membership.registry_view}), which is what
lets a registry-only cluster elect before node-discover's first check. A clean stop
sends the leave hellos and a goodbye, then deletes the record.

Who is master depends on C{election}: "lease" (the default with a registry) makes the
holder of the registry's master key master (L{twistednode.election}); the hellos then
say what the lease says. "node-discover" keeps node-discover's own election, decided
from the hellos alone (the only one without a registry, and for mixed clusters).

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
from base64 import b64encode
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from attrs import define, evolve, field, frozen
from twisted.application.internet import UDPServer
from twisted.application.service import MultiService
from twisted.internet.base import ReactorBase
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistednode.discovery.authority import ListedPeer, RegistryAuthority
from twistednode.discovery.events import EXTENSION_KEY
from twistednode.discovery.legacykey import LegacyKey
from twistednode.discovery.membership import (
    Added,
    Demotion,
    MasterSeen,
    Member,
    Membership,
    MembershipEvent,
    Promotion,
    Removed,
)
from twistednode.discovery.protocol import HelloProtocol
from twistednode.discovery.settings import Settings
from twistednode.discovery.wire import (
    MAX_DATAGRAM,
    PRACTICAL_DATAGRAM,
    PROCESS_PID,
    EncodeError,
    Envelope,
    MessageTooLarge,
)
from twistednode.election.lease import MIN_TTL, Holder
from twistednode.localaddress import local_address_towards
from twistednode.registry.record import MemberRecord
from twistednode.routing.ownership import (
    Candidate,
    Key,
    OwnershipChanged,
    OwnershipView,
)
from twistednode.routing.router import DEFAULT_TIMEOUT, Handler, Router
from twistednode.trust.keyring import Keyring
from twistednode.trust.seal import Sealer

if TYPE_CHECKING:
    from twisted.web.iweb import IRequest

    from twistednode.election.campaign import LeaseCampaign
    from twistednode.etcd.tls import ClientTLS
    from twistednode.etcd.v3 import Credentials
    from twistednode.metrics.exposition import NodeMetrics
    from twistednode.registry.backends import SelectedBackend
    from twistednode.registry.service import Registry, RemovalReason
    from twistednode.transport.client import TransportClient
    from twistednode.transport.server import TransportService
    from twistednode.trust.reload import KeyringFile
    from twistednode.web.status import StatusAPI, StatusDocument

EventName = Literal["added", "removed", "master", "promotion", "demotion", "ownership"]
EVENT_NAMES: tuple[EventName, ...] = (
    "added",
    "removed",
    "master",
    "promotion",
    "demotion",
    "ownership",
)
_EVENT_TYPES: dict[type, EventName] = {
    Added: "added",
    Removed: "removed",
    MasterSeen: "master",
    Promotion: "promotion",
    Demotion: "demotion",
}

Observer = Callable[[Any], None]
#: Our extension fields in hellos: the transport's scheme and port, the capacity.
TRANSPORT_FIELD = "tx"
CAPACITY_FIELD = "cap"
ElectionMode = Literal["lease", "node-discover"]
ELECTION_MODES: tuple[str, ...] = ("auto", "lease", "node-discover")
#: How much earlier than the next lighter candidate the heavier one campaigns.
HEAD_START_STEP = 0.025
HEAD_START_STEPS = 4
#: node-discover election with a registry: no promotion before the first listing
#: for this many record TTLs after the bind (a registry outage at start-up).
LISTING_WAIT_TTLS = 3


@frozen
class Leadership:
    """Who leads, as this node knows it at one moment (L{ClusterNode.leadership}).

    @ivar mode: "lease" or "node-discover".
    @ivar is_master: whether this node is master now.
    @ivar epoch: our term's fencing epoch while we are master (lease mode), or None.
    @ivar valid_for: seconds our term is still valid without a renewal (0 if none).
    @ivar master: the master's id as this node sees it, or None.
    @ivar master_epoch: the master's term epoch (lease mode), or None.
    """

    mode: ElectionMode
    is_master: bool
    epoch: int | None
    valid_for: float
    master: str | None
    master_epoch: int | None


ChannelHandler = Callable[[object, Envelope, tuple[str, int]], None]


def _capacity_of(member: Member) -> float:
    """The capacity a member's hellos say (1 when absent or not a usable number)."""
    marker = member.data.get(EXTENSION_KEY)
    value = marker.get(CAPACITY_FIELD) if isinstance(marker, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 1.0
    return float(value) if math.isfinite(value) and 0 < value <= 1e6 else 1.0


def default_host_name() -> str:
    """node-discover's choice: C{DISCOVERY_HOSTNAME}, else the OS host name."""
    return os.environ.get("DISCOVERY_HOSTNAME") or socket.gethostname()


@define(eq=False)
class ClusterNode(MultiService):
    """One node of a cluster, for embedding in a Twisted application.

    @ivar reactor: the reactor (UDP, TCP, time); tests pass their own.
    @ivar settings: the discovery settings (intervals, weight, client, key).
    @ivar etcd_urls: the registry's URLs, in fail-over order; empty runs on static
        peers alone (node-discover's unicast mode).
    @ivar static_peers: C{(host, port)} destinations, port None = our UDP port.
    @ivar udp_port: the UDP port (0 = any free port; the bound one is registered).
    @ivar advertise: the address peers reach us at; default: the local address
        this host uses to reach the registry.
    @ivar http: an endpoint string for the status API and live page, or None.
    @ivar pid: node-discover's per-process id; nodes sharing one are deaf to each
        other (rule R4), so several nodes in one process need their own.
    @ivar etcd_api: "auto" (ask the server), "v2" or "v3"; see L{make_backend}.
    @ivar etcd_tls: client TLS for https:// etcd URLs (L{tls_from_options}).
    @ivar etcd_auth: a v3 user and password.
    @ivar election: "lease", "node-discover", or "auto": lease with a registry and
        one master required, node-discover otherwise (no registry, or
        C{masters_required} above one, which a single lease cannot give).
    @ivar master_ttl: the master key's time to live (lease mode), whole seconds
        >= 2: how long a crashed master keeps the key.
    @ivar monotonic: the clock terms are judged on; default C{time.monotonic} on a
        real reactor, the reactor's own C{seconds} on a test clock.
    @ivar keyring: seal every datagram with its first key and accept only datagrams
        sealed with one of its keys and this cluster's name (docs/sealed-datagrams.md).
        None (and no C{cluster_key_file}): node-discover's unsealed wire.
    @ivar cluster_key_file: a keyring file (one base64 key a line, the first seals),
        read when the node is made (L{KeyringError} if unusable), re-read when it
        changes and on L{reload_keyring}.
    @ivar transport: the node-to-node transport's endpoint string (L{call} and
        large L{publish}); "auto": any free TCP port on C{udp_interface}; an
        C{ssl:} endpoint serves https; None: no transport (calls run only here).
    @ivar transport_tls: client TLS for peers' https transports (None: the
        platform's trust store).
    @ivar capacity: this node's relative share of the keys (1 = as its peers).
    @ivar call_timeout: how long a L{call} tries before it fails, in seconds.
    @ivar trust_hello_address: in a registry cluster, accept a listed peer's hellos
        from any address (its record's port still counts): peers behind NAT whose
        record names an address their datagrams do not come from.
    @ivar http_max_connections: open connections the status server takes at once
        (a new one above it is closed).
    @ivar http_header_timeout: seconds a request's headers may take to arrive at
        the status server (slowloris), from the connection's opening or the last
        response's end.
    @ivar http_access_log: log each status server request (at debug level).
    """

    log = Logger()

    reactor: Any
    settings: Settings
    cluster: str = "default"
    etcd_urls: tuple[str, ...] = ()
    static_peers: tuple[tuple[str, int | None], ...] = ()
    udp_port: int = 12345
    udp_interface: str = "0.0.0.0"
    advertise: str | None = None
    advertisement: object = None
    ttl: int = 10
    http: str | None = None
    node_id: str = field(factory=lambda: str(uuid.uuid4()))
    host_name: str = field(factory=default_host_name)
    started_at: float = field(default=0.0)
    pid: str = PROCESS_PID
    etcd_api: str = "auto"
    etcd_tls: ClientTLS | None = None
    etcd_auth: Credentials | None = None
    election: str = "auto"
    master_ttl: int = MIN_TTL
    monotonic: Callable[[], float] | None = None
    keyring: Keyring | None = None
    cluster_key_file: str | None = None
    transport: str | None = "auto"
    transport_tls: ClientTLS | None = None
    capacity: float = 1.0
    call_timeout: float = DEFAULT_TIMEOUT
    trust_hello_address: bool = False
    http_max_connections: int = 512
    http_header_timeout: float = 10.0
    http_access_log: bool = False

    _membership: Membership = field(init=False)
    _hello: HelloProtocol = field(init=False)
    _registry: Registry | None = field(default=None, init=False)
    _backend: SelectedBackend | None = field(default=None, init=False)
    _status: StatusAPI | None = field(default=None, init=False)
    _metrics: NodeMetrics | None = field(default=None, init=False)
    _observers: dict[EventName, list[Observer]] = field(init=False)
    _registry_peers: dict[str, tuple[str, int]] = field(factory=dict, init=False)
    _static: set[tuple[str, int]] = field(factory=set, init=False)
    _address: str = field(default="127.0.0.1", init=False)
    _mode: ElectionMode = field(default="node-discover", init=False)
    _campaign: LeaseCampaign | None = field(default=None, init=False)
    _sealer: Sealer | None = field(default=None, init=False)
    _keyring_file: KeyringFile | None = field(default=None, init=False)
    _router: Router = field(init=False)
    _ownership: OwnershipView = field(factory=lambda: OwnershipView(0, ()), init=False)
    _ownership_changes: int = field(default=0, init=False)
    _transport_service: TransportService | None = field(default=None, init=False)
    _transport_client: TransportClient | None = field(default=None, init=False)
    _transport_url: str | None = field(default=None, init=False)
    _own_listed: bool = field(default=False, init=False)
    _listed_index: int = field(default=0, init=False)
    #: The peers' records as the registry announced them (peer_added and after).
    _listed_records: dict[str, MemberRecord] = field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        MultiService.__init__(self)
        if not self.started_at:
            self.started_at = self.reactor.seconds()
        self._observers = {name: [] for name in EVENT_NAMES}
        self._mode = self._election_mode()
        if self.monotonic is None:
            self.monotonic = (
                time.monotonic
                if isinstance(self.reactor, ReactorBase)
                else self.reactor.seconds
            )
        self._membership = Membership(
            iid=self.node_id,
            settings=self.settings,
            started_at=self.reactor.seconds(),
            static_peers=bool(self.static_peers),
            external_election=self._mode == "lease",
            listing_wait=LISTING_WAIT_TTLS * self.ttl if self.etcd_urls else None,
            authority=(
                RegistryAuthority(trust_hello_address=self.trust_hello_address)
                if self.etcd_urls
                else None
            ),
        )
        key = (
            None
            if self.settings.key is None
            else LegacyKey.from_password(self.settings.key)
        )
        self._sealer = self._make_sealer()
        if self._sealer is not None and key is not None:
            raise ValueError("a keyring and the legacy key cannot be used together")
        if key is not None:
            self.log.warn(
                "the legacy key is not security (node-discover's createCipher: an MD5 "
                "key, a static IV, no integrity: anyone can forge or replay hellos), "
                "and node-discover on Node.js 22 or later cannot use it; use a "
                "cluster key file instead",
                legacy_key=True,
            )
        self._hello = HelloProtocol(
            membership=self._membership,
            clock=self.reactor,
            pid=self.pid,
            host_name=self.host_name,
            key=key,
            sealer=self._sealer,
            observer=self._on_event,
            master_flag=self._lease_master if self._mode == "lease" else None,
        )
        if self._keyring_file is not None:
            self._keyring_file.setServiceParent(self)
        if self.advertisement is not None:
            self._membership.set_advertisement(self.advertisement)
        if self.capacity != 1.0:
            self._membership.set_extension(CAPACITY_FIELD, self.capacity)
        self._make_router()
        UDPServer(
            self.udp_port,
            self._hello,
            interface=self.udp_interface,
            maxPacketSize=65535,
            reactor=self.reactor,
        ).setServiceParent(self)
        if self.etcd_urls:
            # The registry's clients (treq, twisted.web.client) load only for a
            # node that has a registry; the election's with them.
            from twistednode.election.campaign import LeaseCampaign
            from twistednode.registry.backends import make_backend
            from twistednode.registry.service import Registry

            self._backend = make_backend(
                self.reactor,
                self.etcd_urls,
                api=self.etcd_api,
                tls=self.etcd_tls,
                auth=self.etcd_auth,
            )
            self._registry = Registry(
                backend=self._backend,
                cluster=self.cluster,
                listener=self,
                clock=self.reactor,
                ttl=self.ttl,
            )
            self._registry.setServiceParent(self)
            if self._mode == "lease":
                # Not a child: it resigns before the others stop (stopService).
                self._campaign = LeaseCampaign(
                    backend=self._backend,
                    cluster=self.cluster,
                    node_id=self.node_id,
                    clock=self.reactor,
                    monotonic=self.monotonic,
                    listener=self,
                    ttl=self.master_ttl,
                    eligible=not self.settings.client,
                    head_start=self._head_start,
                )
        if self.http is not None:
            from twisted.application.strports import service as stream_service

            from tapkit.guardedsite import GuardedSite
            from twistednode.web.status import StatusAPI  # Klein, only when asked for

            self._status = StatusAPI(
                provider=self.status_document,
                clock=self.reactor,
                metrics=self._render_metrics,
                owner=self._owner_document,
                route=self.call,
            )
            site = GuardedSite(
                self._status.resource(),
                max_connections=self.http_max_connections,
                header_timeout=self.http_header_timeout,
                access_log=self.http_access_log,
                reactor=self.reactor,
            )
            stream_service(self.http, site, reactor=self.reactor).setServiceParent(self)

    def _render_metrics(self, request: IRequest) -> bytes:
        """C{GET /metrics}; prometheus_client and the registry are made on the
        first scrape, so that a node nobody scrapes never imports them."""
        if self._metrics is None:
            from twistednode.metrics.exposition import NodeMetrics

            requests = None if self._backend is None else self._backend.stats
            self._metrics = NodeMetrics(
                self.status_document, self._hello.stats, requests
            )
        return self._metrics.render(request)

    def _make_router(self) -> None:
        Candidate(self.node_id, self.capacity)  # ValueError for a bad capacity
        self._router = Router(
            node_id=self.node_id,
            clock=self.reactor,
            monotonic=self.monotonic,  # type: ignore[arg-type]
            view=lambda: self._ownership,
            endpoint_of=self._endpoint_of,
            timeout=self.call_timeout,
        )
        self._router.handle("echo", self._echo)
        if self.transport is None:
            return
        # Before the UDP server: it listens first, so the first hello names it.
        from twistednode.transport.client import TransportClient
        from twistednode.transport.proof import ProofChecker
        from twistednode.transport.server import TransportResource, TransportService

        self._transport_client = TransportClient(
            self.reactor, self.cluster, lambda: self.keyring, tls=self.transport_tls
        )
        self._router.send = self._transport_client.call
        endpoint = self.transport
        if endpoint == "auto":
            endpoint = f"tcp:0:interface={self.udp_interface or '0.0.0.0'}"
        resource = TransportResource(
            node_id=self.node_id,
            receive=self._router.receive,
            publish=self._large_message,
            checker=ProofChecker(lambda: self.keyring, self.cluster),
            clock=self.reactor,
        )
        self._transport_service = TransportService(
            self.reactor, endpoint, resource, self._transport_listening
        )
        self._transport_service.setServiceParent(self)

    def _transport_listening(self, port: int, secure: bool) -> None:
        scheme = "https" if secure else "http"
        host = f"[{self._address}]" if ":" in self._address else self._address
        self._transport_url = f"{scheme}://{host}:{port}"
        self._membership.set_extension(TRANSPORT_FIELD, [scheme, port])

    def _make_sealer(self) -> Sealer | None:
        if self.cluster_key_file is not None:
            if self.keyring is not None:
                raise ValueError("give a keyring or a cluster_key_file, not both")
            from twistednode.trust.reload import KeyringFile

            self._keyring_file = KeyringFile(
                self.cluster_key_file, self.reactor, self._keyring_changed
            )
            self.keyring = self._keyring_file.keyring
        if self.keyring is None:
            return None
        return Sealer(self.keyring, self.cluster)

    def _keyring_changed(self, keyring: Keyring) -> None:
        self.keyring = keyring
        if self._sealer is not None:
            self._sealer.set_keyring(keyring)
        self._changed()

    def reload_keyring(self) -> bool:
        """Re-read the C{cluster_key_file} now (twistd's clusternode calls it on
        SIGHUP); whether the keys changed. A file that no longer parses is logged
        and the keys in use stay."""
        if self._keyring_file is None:
            return False
        return self._keyring_file.reload()

    def set_keyring(self, keyring: Keyring) -> None:
        """Seal with C{keyring}'s first key from now on and accept any of its keys
        (a node made with a keyring; the rotation procedure is in the README)."""
        if self._sealer is None:
            raise ValueError("this node was made without a keyring")
        self._keyring_changed(keyring)

    # -- what an application reads -------------------------------------------------

    @property
    def id(self) -> str:
        """This node's id (its node-discover iid)."""
        return self.node_id

    @property
    def members(self) -> tuple[Member, ...]:
        """The other nodes this node has heard, as frozen values."""
        return self._membership.members

    @property
    def master(self) -> str | None:
        """The id of the master as this node sees it (possibly itself), or None."""
        if self._campaign is None:
            return self._membership.master
        holder = self._campaign.election.holder
        if holder is None or (holder.node_id == self.node_id and not self.is_master):
            return None
        return holder.node_id

    @property
    def is_master(self) -> bool:
        """Whether this node is master now.

        Under the leased election this reads the term's deadline on the monotonic
        clock every time, so it is already False in code that runs after a pause.
        """
        if self._campaign is not None:
            return self._campaign.is_master()
        return self._membership.is_master

    @property
    def election_mode(self) -> ElectionMode:
        """ "lease" or "node-discover"."""
        return self._mode

    @property
    def leadership(self) -> Leadership:
        """Who leads now: our mastership, its fencing epoch and how long it holds."""
        campaign = self._campaign
        if campaign is None:
            return Leadership(
                "node-discover", self.is_master, None, 0.0, self.master, None
            )
        is_master = campaign.is_master()
        holder = campaign.election.holder
        return Leadership(
            mode="lease",
            is_master=is_master,
            epoch=campaign.election.epoch if is_master else None,
            valid_for=campaign.valid_for(),
            master=self.master,
            master_epoch=None if holder is None else holder.epoch,
        )

    @property
    def address(self) -> str:
        """The address this node advertises."""
        return self._address

    @property
    def port(self) -> int | None:
        """The bound UDP port, once running."""
        transport = self._hello.transport
        return None if transport is None else int(transport.getHost().port)

    @property
    def registry(self) -> Registry | None:
        """The registry service, or None when running on static peers alone."""
        return self._registry

    def on(self, event: EventName, observer: Observer) -> Callable[[], None]:
        """Call C{observer(event)} on added, removed, master, promotion or demotion.

        Returns a function that removes the observer.
        """
        if event not in self._observers:
            raise ValueError(f"unknown event {event!r}; expected one of {EVENT_NAMES}")
        self._observers[event].append(observer)
        observers = self._observers[event]

        def remove() -> None:
            if observer in observers:
                observers.remove(observer)

        return remove

    def publish(self, channel: str, payload: object) -> None:
        """Send C{payload} to every peer on C{channel} (fire and forget).

        A message larger than one safe datagram goes over the node-to-node
        transport to every member that has one (any size); the others, and every
        smaller message, get node-discover's datagram, so node-discover peers
        keep hearing what fits in UDP.
        """
        envelope = Envelope(channel, self.pid, self.node_id, self.host_name, payload)
        try:
            size = len(self._hello.datagram(envelope))
        except MessageTooLarge:
            size = MAX_DATAGRAM + 1
        except EncodeError:
            size = 0  # publish below raises the reason
        if size <= PRACTICAL_DATAGRAM or self._transport_client is None:
            self._hello.publish(channel, payload)
            return
        self._publish_large(channel, payload, size)

    def _publish_large(self, channel: str, payload: object, size: int) -> None:
        from twistednode.discovery.protocol import check_channel

        check_channel(channel)
        client = self._transport_client
        assert client is not None
        sender = {"from": self.node_id, "hostName": self.host_name, "pid": self.pid}
        by_datagram = []
        for member in self.members:
            url = self._endpoint_of(member.id)
            if url is None:
                by_datagram.append((member.address, member.port))
                continue
            sent = client.publish(url, channel, sender, payload)
            sent.addErrback(self._large_failed, channel, member.id)
        if by_datagram and size <= MAX_DATAGRAM:
            self._hello.publish(channel, payload, to=by_datagram)

    def _large_failed(self, failure: Failure, channel: str, member_id: str) -> None:
        self.log.warn(
            "a large message on {channel} to {member} failed: {error}",
            channel=channel,
            member=member_id,
            error=failure.getErrorMessage(),
        )

    def _large_message(
        self, channel: str, payload: object, sender: dict[str, Any]
    ) -> bool:
        member = self._membership.member(sender["from"])
        source = ("", 0) if member is None else (member.address, member.port)
        envelope = Envelope(
            channel, sender["pid"], sender["from"], sender["hostName"], payload
        )
        return self._hello.deliver(envelope, source)

    def subscribe(self, channel: str, handler: ChannelHandler) -> Callable[[], None]:
        """Call C{handler(payload, envelope, source)} for messages on C{channel}."""
        return self._hello.subscribe(channel, handler)

    # -- who owns a key, and calls sent to the owner ----------------------------

    @property
    def ownership(self) -> OwnershipView:
        """The member set keys are spread over now, and its version (the registry
        view's index at its last change; a local counter on static peers)."""
        return self._ownership

    def owner(self, key: Key) -> str | None:
        """The id of the node that owns C{key} (str or bytes), or None if none may."""
        return self._ownership.owner(key)

    def owners(self, key: Key, n: int) -> tuple[str, ...]:
        """The C{n} nodes that hold C{key}, its owner first (replicas)."""
        return self._ownership.owners(key, n)

    def owns(self, key: Key) -> bool:
        """Whether this node owns C{key} now."""
        return self._ownership.owns(self.node_id, key)

    def handle(self, service: str, handler: Handler) -> Callable[[], None]:
        """Run C{handler(key, payload)} for L{call}s to C{service} whose key this
        node owns; it returns a JSON answer or a Deferred of one. Returns a
        function that removes it."""
        return self._router.handle(service, handler)

    def call(
        self,
        service: str,
        key: Key,
        payload: object = None,
        timeout: float | None = None,
    ) -> Deferred[Any]:
        """The answer of C{service}'s handler on whichever node owns C{key}.

        Runs here when this node owns the key, else on the owner (forwarded once
        more if the owner's view differs). Retried on the new owner after a
        connection failure or an ownership change until C{timeout} (default
        C{call_timeout}); fails with a L{CallError}: L{NoOwner}, L{CallTimedOut},
        L{HandlerFailed}, L{UnknownService}.
        """
        return self._router.call(service, key, payload, timeout)

    @property
    def transport_url(self) -> str | None:
        """The node-to-node transport's URL, once listening (None without one)."""
        return self._transport_url

    def _echo(self, key: Key, payload: object) -> dict[str, object]:
        shown = key if isinstance(key, str) else {"base64": b64encode(key).decode()}
        return {"handledBy": self.node_id, "key": shown, "payload": payload}

    def _endpoint_of(self, member_id: str) -> str | None:
        if member_id == self.node_id:
            return self._transport_url
        if self._registry is not None:
            record = self._listed_records.get(member_id)
            if record is not None and record.transport is not None:
                return record.transport
        member = self._membership.member(member_id)
        if member is None:
            return None
        marker = member.data.get(EXTENSION_KEY)
        field_ = marker.get(TRANSPORT_FIELD) if isinstance(marker, dict) else None
        if (
            not isinstance(field_, list)
            or len(field_) != 2
            or field_[0] not in ("http", "https")
            or isinstance(field_[1], bool)
            or not isinstance(field_[1], int)
            or not 0 < field_[1] < 65536
        ):
            return None
        host = f"[{member.address}]" if ":" in member.address else member.address
        return f"{field_[0]}://{host}:{field_[1]}"

    def _candidates(self) -> list[Candidate]:
        if self._registry is not None:
            records = list(self._listed_records.values())
            own = self._registry.record
            # Our record as the view holds it (view_changed's own_index), not the
            # write's confirmation: the view may show it first, and only a view
            # change refreshes the ownership.
            if own is not None and self._own_listed:
                records.append(own)
            return [Candidate(r.id, r.capacity) for r in records if not r.client]
        candidates = [
            Candidate(m.id, _capacity_of(m))
            for m in self.members
            if m.is_master_eligible
        ]
        if not self.settings.client:
            candidates.append(Candidate(self.node_id, self.capacity))
        return candidates

    def _refresh_ownership(self) -> None:
        old = self._ownership
        candidates = tuple(sorted(self._candidates(), key=lambda c: c.id))
        if candidates == old.candidates:
            return
        if self._registry is not None:
            version = self._listed_index
        else:
            self._ownership_changes += 1
            version = self._ownership_changes
        self._ownership = OwnershipView(version, candidates)
        self._deliver("ownership", OwnershipChanged.between(old, self._ownership))

    def set_advertisement(self, value: object) -> None:
        """Change what this node advertises, in its hellos and its registry record."""
        self._hello.set_advertisement(value)
        self.advertisement = value
        if self._registry is not None and self._registry.record is not None:
            self._registry.set_record(
                evolve(self._registry.record, advertisement=value)
            )
        self._changed()

    def promote(self) -> None:
        """Become master now (node-discover's manual C{promote()}).

        Not under the leased election: there the registry decides.
        """
        if self._campaign is not None:
            raise ValueError("under the lease election the registry picks the master")
        self._hello.promote()

    def demote(self, permanent: bool = False) -> None:
        """Stop being master (permanently: never eligible again).

        Under the leased election: resign the master key; the next candidate takes
        it (this node too, unless C{permanent}).
        """
        campaign = self._campaign
        if campaign is None:
            self._hello.demote(permanent)
            return
        now = campaign.monotonic()
        campaign.apply(campaign.election.step_down(now))
        if permanent:
            campaign.apply(campaign.election.set_eligible(now, False))

    # -- service -----------------------------------------------------------------

    def startService(self) -> None:
        # Static peers first, so that the hello sent at bind already reaches them;
        # "HOST" alone means our own port, known only after binding to port 0.
        later = []
        for host, port in self.static_peers:
            if port is None and self.udp_port == 0:
                later.append(host)
            else:
                self._add_static((host, self.udp_port if port is None else port))
        self._address = self._choose_address()
        MultiService.startService(self)
        for host in later:
            assert self.port is not None
            self._add_static((host, self.port))
            self._hello.hello_to((host, self.port))
        self._refresh_ownership()
        if self._registry is not None:
            self._registry.set_record(self._record())
        if self._campaign is not None:
            self._campaign.startService()
        if self._status is not None:
            self._status.start()
        self.log.info(
            "node {node_id} of cluster {cluster} on {address}:{port} (udp), "
            "registry {registry}",
            node_id=self.node_id,
            cluster=self.cluster,
            address=self._address,
            port=self.port,
            registry=",".join(self.etcd_urls) or "none",
        )

    def stopService(self) -> Deferred[None]:
        """Leave cleanly: resign the master key (lease mode), leave hellos and
        goodbye, then delete the record."""
        campaign = self._campaign
        if campaign is None or not campaign.running:
            return self._stop()
        resigned = campaign.stopService()
        return resigned.addCallback(lambda _: self._stop())

    def _stop(self) -> Deferred[None]:
        if self._hello.transport is not None:
            self._hello.leave()
        if self._status is not None:
            self._status.stop()
        stopped = maybeDeferred(MultiService.stopService, self)
        client = self._transport_client
        if client is not None:
            stopped.addCallback(lambda _: client.close())
        return stopped

    def _election_mode(self) -> ElectionMode:
        if self.election not in ELECTION_MODES:
            raise ValueError(
                f"election must be one of {', '.join(ELECTION_MODES)}, "
                f"not {self.election!r}"
            )
        if self.election == "node-discover" or (
            self.election == "auto"
            and (not self.etcd_urls or self.settings.masters_required != 1)
        ):
            return "node-discover"
        if not self.etcd_urls:
            raise ValueError("the lease election needs a registry (etcd URLs)")
        if self.settings.masters_required != 1:
            raise ValueError(
                "the lease election has exactly one master; masters_required "
                f"{self.settings.masters_required} needs the node-discover election"
            )
        if (
            isinstance(self.master_ttl, bool)
            or not isinstance(self.master_ttl, int)
            or self.master_ttl < MIN_TTL
        ):
            raise ValueError(
                f"the master TTL must be a whole number of seconds >= {MIN_TTL}, "
                f"not {self.master_ttl!r}"
            )
        return "lease"

    # -- the leased election (CampaignListener) -----------------------------------

    def _lease_master(self) -> bool:
        return self._campaign is not None and self._campaign.is_master()

    def _head_start(self) -> float:
        """Lighter candidates wait longer: one step per eligible registry member
        that beats us (node-discover's order: heavier weight, then lower id)."""
        if self._registry is None:
            return 0.0
        holder = None if self._campaign is None else self._campaign.election.holder
        mine = (self.settings.weight, self.node_id)
        rank = sum(
            1
            for record in self._registry.peers.values()
            if not record.client
            and record.id != self.node_id
            and (holder is None or record.id != holder.node_id)
            and (
                record.weight > mine[0]
                or (record.weight == mine[0] and record.id < mine[1])
            )
        )
        return HEAD_START_STEP * min(rank, HEAD_START_STEPS)

    def elected(self, epoch: int) -> None:
        self._hello.apply(self._membership.set_master(True))
        self._deliver("promotion", Promotion(self._membership.me(), "lease", epoch))

    def stepped_down(self, epoch: int, reason: str) -> None:
        self._hello.apply(self._membership.set_master(False))
        self._deliver("demotion", Demotion(self._membership.me(), reason, epoch))

    def master_changed(self, holder: Holder | None) -> None:
        self._changed()
        if holder is None or holder.node_id == self.node_id:
            return
        member = self._member_named(holder.node_id)
        self._deliver("master", MasterSeen(member, epoch=holder.epoch))

    def _member_named(self, member_id: str) -> Member:
        """The member value for C{member_id}: heard, else from its registry record."""
        member = self._membership.member(member_id)
        if member is not None:
            return member
        record = None if self._registry is None else self._registry.peers.get(member_id)
        if record is None:
            return Member(
                id=member_id,
                address="",
                port=0,
                host_name=None,
                is_master=True,
                is_master_eligible=True,
                weight=-math.inf,
                advertisement=None,
                last_seen=-math.inf,
                is_ours=True,
                data={},
            )
        return Member(
            id=record.id,
            address=record.address,
            port=record.port,
            host_name=record.host_name,
            is_master=True,
            is_master_eligible=not record.client,
            weight=record.weight,
            advertisement=record.advertisement,
            last_seen=-math.inf,
            is_ours=True,
            data={},
        )

    def _add_static(self, destination: tuple[str, int]) -> None:
        self._static.add(destination)
        self._hello.add_destination(*destination, source="static")

    def _choose_address(self) -> str:
        if self.advertise is not None:
            return self.advertise
        if self.udp_interface not in ("0.0.0.0", "", "::"):
            return self.udp_interface
        if self.etcd_urls:
            try:
                return local_address_towards(self.etcd_urls[0])
            except ValueError as e:
                self.log.warn(
                    "cannot tell the local address towards {url}: {error}; "
                    "advertising 127.0.0.1 (use --advertise)",
                    url=self.etcd_urls[0],
                    error=str(e),
                )
        return "127.0.0.1"

    def _record(self) -> MemberRecord:
        return MemberRecord(
            id=self.node_id,
            address=self._address,
            port=self.port or self.udp_port,
            host_name=self.host_name,
            weight=self.settings.weight,
            advertisement=self.advertisement,
            started_at=self.started_at,
            client=self.settings.client,
            transport=self._transport_url,
            capacity=self.capacity,
        )

    # -- what the registry tells us (RegistryListener) -----------------------------

    def peer_added(self, record: MemberRecord, created_index: int) -> None:
        self._listed_records[record.id] = record
        destination = (record.address, record.port)
        self._registry_peers[record.id] = destination
        self._hello.add_destination(*destination, source="registry")
        self._hello.hello_to(destination)
        self._changed()

    def peer_changed(self, record: MemberRecord) -> None:
        self._listed_records[record.id] = record
        old = self._registry_peers.get(record.id)
        new = (record.address, record.port)
        if old == new:
            return
        if old is not None:
            self._hello.remove_destination(*old, source="registry")
        self._registry_peers[record.id] = new
        self._hello.add_destination(*new, source="registry")
        self._hello.hello_to(new)

    def peer_removed(self, record_id: str, reason: RemovalReason) -> None:
        self._listed_records.pop(record_id, None)
        destination = self._registry_peers.pop(record_id, None)
        if destination is not None:
            self._hello.remove_destination(*destination, source="registry")
        if reason == "deleted":
            self._hello.peer_left(record_id)
        self._changed()

    def view_changed(
        self, members: Mapping[str, int], view_index: int, own_index: int | None
    ) -> None:
        clients = () if self._registry is None else self._registry_clients()
        records = {} if self._registry is None else self._registry.peers
        peers = {
            member_id: ListedPeer(r.address, r.port, (members[member_id], r.started_at))
            for member_id, r in records.items()
            if member_id in members
        }
        self._own_listed = own_index is not None
        self._listed_index = view_index
        self._hello.registry_view(members, view_index, own_index, clients, peers)
        self._refresh_ownership()

    def _registry_clients(self) -> tuple[str, ...]:
        assert self._registry is not None
        return tuple(i for i, r in self._registry.peers.items() if r.client)

    # -- events --------------------------------------------------------------------

    def _on_event(self, event: MembershipEvent) -> None:
        name = _EVENT_TYPES.get(type(event))
        if name is None:
            return
        if self._campaign is not None and name in ("master", "promotion", "demotion"):
            return  # the lease decides those (elected, stepped_down, master_changed)
        self._deliver(name, event)
        if self._registry is None and name in ("added", "removed"):
            self._refresh_ownership()

    def _deliver(self, name: EventName, event: Any) -> None:
        if isinstance(event, Promotion) and event.reason == "unlisted":
            self.log.warn(
                "promotion without the registry: node {node_id} has not listed it "
                "in {seconds} s, and takes the node-discover rules alone",
                node_id=self.node_id,
                seconds=self._membership.listing_wait,
            )
        elif name in ("promotion", "demotion"):
            self.log.info("{event}: node {node_id}", event=name, node_id=self.node_id)
        for observer in list(self._observers[name]):
            try:
                observer(event)
            except Exception:
                self.log.failure("observer failed on {event}", event=name)
        self._changed()

    def _changed(self) -> None:
        if self._status is not None:
            self._status.changed()

    # -- status ---------------------------------------------------------------------

    def status_document(self) -> StatusDocument:
        """The document C{GET /status} serves and the live page draws."""
        now = self.reactor.seconds()
        me = self._membership.me()
        registry: dict[str, Any] = {"state": "disabled", "api": None, "url": None}
        if self._registry is not None:
            registry = self._registry.status()
            registry["api"] = None if self._backend is None else self._backend.api
            registry["url"] = self._registry.endpoint
        registry["cluster"] = self.cluster
        return {
            "cluster": self.cluster,
            "now": now,
            "self": {
                "id": self.node_id,
                "address": self._address,
                "port": self.port,
                "isMaster": self.is_master,
                "isMasterEligible": self._membership.is_master_eligible,
                "weight": self.settings.weight,
                "hostName": self.host_name,
                "advertisement": me.get("advertisement"),
                "startedAt": self.started_at,
            },
            "master": self.master,
            "members": [
                {
                    "id": m.id,
                    "address": m.address,
                    "port": m.port,
                    "isMaster": m.is_master,
                    "isMasterEligible": m.is_master_eligible,
                    "weight": m.weight if math.isfinite(m.weight) else None,
                    "hostName": m.host_name,
                    "lastSeen": round(max(0.0, now - m.last_seen), 3),
                    "advertisement": m.advertisement,
                    "source": self._source_of(m),
                }
                for m in self.members
            ],
            "registry": registry,
            "election": self._election_status(),
            "dropped": dict(self._membership.dropped),
            "keyring": None if self.keyring is None else self.keyring.ids(),
            "ownership": self._ownership_status(),
        }

    def _ownership_status(self) -> dict[str, Any]:
        view = self._ownership
        stats = self._router.stats
        return {
            "view": view.version,
            "owners": [{"id": c.id, "capacity": c.capacity} for c in view.candidates],
            "transport": self._transport_url,
            "calls": {
                "local": stats.local,
                "forwarded": stats.forwarded,
                "received": stats.received,
                "retries": stats.retries,
                "failed": dict(stats.failed),
            },
        }

    def _owner_document(self, key: str, n: int) -> dict[str, Any]:
        view = self._ownership
        document: dict[str, Any] = {
            "key": key,
            "owner": view.owner(key),
            "view": view.version,
        }
        if n > 1:
            document["owners"] = list(view.owners(key, n))
        return document

    def _election_status(self) -> dict[str, Any]:
        lead = self.leadership
        status: dict[str, Any] = {
            "mode": lead.mode,
            "registryListed": self._membership.listed,
            "epoch": lead.epoch,
            "validFor": round(lead.valid_for, 3),
            "masterEpoch": lead.master_epoch,
        }
        if self._campaign is not None:
            election = self._campaign.election
            status.update(
                ttl=self.master_ttl,
                listed=election.listed,
                terms=election.terms,
                stepDowns=election.step_downs,
            )
        return status

    def _source_of(self, member: Member) -> str:
        if member.id in self._registry_peers:
            return "registry"
        if (member.address, member.port) in self._static:
            return "static"
        return "learned"
