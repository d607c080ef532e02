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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from attrs import define, evolve, field, frozen
from twisted.application.internet import UDPServer
from twisted.application.service import MultiService
from twisted.internet.base import ReactorBase
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

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
from twistednode.discovery.wire import PROCESS_PID, Envelope
from twistednode.election.lease import MIN_TTL, Holder
from twistednode.localaddress import local_address_towards
from twistednode.registry.record import MemberRecord
from twistednode.trust.keyring import Keyring
from twistednode.trust.seal import Sealer

if TYPE_CHECKING:
    from twistednode.election.campaign import LeaseCampaign
    from twistednode.etcd.tls import ClientTLS
    from twistednode.etcd.v3 import Credentials
    from twistednode.registry.backends import SelectedBackend
    from twistednode.registry.service import Registry, RemovalReason
    from twistednode.trust.reload import KeyringFile
    from twistednode.web.status import StatusAPI, StatusDocument

EventName = Literal["added", "removed", "master", "promotion", "demotion"]
EVENT_NAMES: tuple[EventName, ...] = (
    "added",
    "removed",
    "master",
    "promotion",
    "demotion",
)
_EVENT_TYPES: dict[type, EventName] = {
    Added: "added",
    Removed: "removed",
    MasterSeen: "master",
    Promotion: "promotion",
    Demotion: "demotion",
}

Observer = Callable[[MembershipEvent], None]
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

    _membership: Membership = field(init=False)
    _hello: HelloProtocol = field(init=False)
    _registry: Registry | None = field(default=None, init=False)
    _backend: SelectedBackend | None = field(default=None, init=False)
    _status: StatusAPI | None = field(default=None, init=False)
    _observers: dict[EventName, list[Observer]] = field(init=False)
    _registry_peers: dict[str, tuple[str, int]] = field(factory=dict, init=False)
    _static: set[tuple[str, int]] = field(factory=set, init=False)
    _address: str = field(default="127.0.0.1", init=False)
    _mode: ElectionMode = field(default="node-discover", init=False)
    _campaign: LeaseCampaign | None = field(default=None, init=False)
    _sealer: Sealer | None = field(default=None, init=False)
    _keyring_file: KeyringFile | None = field(default=None, init=False)

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
        )
        key = (
            None
            if self.settings.key is None
            else LegacyKey.from_password(self.settings.key)
        )
        self._sealer = self._make_sealer()
        if self._sealer is not None and key is not None:
            raise ValueError("a keyring and the legacy key cannot be used together")
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
            from twisted.web.server import Site

            from twistednode.metrics.exposition import NodeMetrics
            from twistednode.web.status import StatusAPI  # Klein, only when asked for

            requests = None if self._backend is None else self._backend.stats
            metrics = NodeMetrics(self.status_document, self._hello.stats, requests)
            self._status = StatusAPI(
                provider=self.status_document,
                clock=self.reactor,
                metrics=metrics.render,
            )
            site = Site(self._status.resource())
            stream_service(self.http, site, reactor=self.reactor).setServiceParent(self)

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
        """Send C{payload} to every peer on C{channel} (fire and forget)."""
        self._hello.publish(channel, payload)

    def subscribe(self, channel: str, handler: ChannelHandler) -> Callable[[], None]:
        """Call C{handler(payload, envelope, source)} for messages on C{channel}."""
        return self._hello.subscribe(channel, handler)

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
        MultiService.startService(self)
        for host in later:
            assert self.port is not None
            self._add_static((host, self.port))
            self._hello.hello_to((host, self.port))
        self._address = self._choose_address()
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
        return maybeDeferred(MultiService.stopService, self)

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
        )

    # -- what the registry tells us (RegistryListener) -----------------------------

    def peer_added(self, record: MemberRecord, created_index: int) -> None:
        destination = (record.address, record.port)
        self._registry_peers[record.id] = destination
        self._hello.add_destination(*destination, source="registry")
        self._hello.hello_to(destination)
        self._changed()

    def peer_changed(self, record: MemberRecord) -> None:
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
        self._hello.registry_view(members, view_index, own_index, clients)

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

    def _deliver(self, name: EventName, event: MembershipEvent) -> None:
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
        }

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
