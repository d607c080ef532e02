# -*- test-case-name: tests.discovery.test_protocol -*-
"""The UDP adapter: node-discover hellos and channels on one socket (spec §4, §8).

L{HelloProtocol} only translates: datagrams in become L{Membership} calls, the events
that come back become datagrams out and observer calls. The node gives it to
C{reactor.listenUDP(port, proto, interface=..., maxPacketSize=65535)}, so one socket
both sends and receives and every packet's source port is the listening port.

Destinations are static peers (C{--peer}), registry members, and learned ones (the
source of every accepted hello, until that member is removed; spec §6.2 item 5).
Host names are resolved through the injected resolver, because Twisted's UDP C{write}
takes IP literals only, and re-resolved every C{resolve_interval}.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from functools import partial
from typing import Any, cast

from attrs import define, field
from twisted.internet.abstract import isIPAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from tapkit.beat import OnTheBeat, beat_after, beat_at_or_after
from twistednode.discovery import wire
from twistednode.discovery.legacykey import LegacyKey
from twistednode.discovery.membership import (
    BYE_EVENT,
    Added,
    Demotion,
    Event,
    HelloReceived,
    ListedPeer,
    MastersConflict,
    Membership,
    MembershipEvent,
    Removed,
    SendHello,
    Source,
)
from twistednode.trust.seal import Header, Sealer, SealError

Observer = Callable[[MembershipEvent], None]
Handler = Callable[[object, wire.Envelope, Source], None]
Resolver = Callable[[str], "Deferred[str]"]

#: Channel names we refuse: node-discover's reserved and internal events, and ours.
REFUSED_CHANNELS = wire.RESERVED_EVENTS | wire.INTERNAL_EVENTS | {BYE_EVENT}
_PRIVATE_PREFIX = "twistednode."
#: A removal is due just after its deadline (node-discover's test is strict).
CHECK_SLACK = 0.001
#: A check this late (seconds) means the reactor did not run meanwhile (a pause):
#: it waits one reactor turn, so the hellos queued on the socket are read first.
#: A wrong guess costs one turn, never a decision.
PAUSE_LATENESS = 0.25
#: Seconds between two log lines about dropped datagrams of one reason.
DROP_LOG_EVERY = 10.0
_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
DESTINATION_SOURCES = ("static", "registry")


def _ignore(_event: MembershipEvent) -> None:
    pass


@define
class HelloStats:
    """What the socket counted: hello datagrams written, and hellos read from
    other nodes (before the membership judges them); the drops are the
    membership's."""

    sent: int = 0
    received: int = 0


def check_channel(channel: object) -> str:
    """Return C{channel} if we may publish or subscribe on it, else raise ValueError."""
    if not isinstance(channel, str) or channel == "":
        raise ValueError("a channel name must be a non-empty string")
    if channel in REFUSED_CHANNELS or channel.startswith(_PRIVATE_PREFIX):
        raise ValueError(f"channel name {channel!r} is reserved")
    return channel


@define(eq=False)
class HelloProtocol(DatagramProtocol):
    """One UDP socket speaking node-discover 1.2.1 for a L{Membership}.

    @ivar clock: drives the hello and check loops and supplies C{now}.
    @ivar pid: the envelope C{pid} (one per process, e.g. L{wire.PROCESS_PID}).
    @ivar observer: called with every membership event (not the hello requests).
    @ivar resolver: host name to IPv4 address; defaults to C{clock.resolve}.
    The check runs when L{Membership.next_deadline} says it may act (a member's
    timeout, the start of an election phase), and at least once per
    C{check_interval}: more often than node-discover when it matters, with the same
    timeouts (spec §6.2 item 3), and not at all while nothing is due.
    """

    log = Logger()
    noisy = False  # Twisted would log the whole attrs repr at start and stop

    membership: Membership
    clock: IReactorTime
    pid: str
    host_name: str | None
    key: LegacyKey | None = None
    #: With a keyring: every datagram sealed, every unsealed one dropped ("auth").
    sealer: Sealer | None = None
    observer: Observer = _ignore
    resolver: Resolver | None = None
    resolve_interval: float = 30.0
    ignore_process: bool = True
    ignore_instance: bool = True
    #: Under the leased election: whether we are master now, read at every hello.
    master_flag: Callable[[], bool] | None = None
    stats: HelloStats = field(factory=HelloStats, init=False)
    _entries: dict[tuple[str, int], set[str]] = field(factory=dict, init=False)
    _resolved: dict[str, str] = field(factory=dict, init=False)
    _resolving: set[str] = field(factory=set, init=False)
    _learned: dict[str, Source] = field(factory=dict, init=False)
    _channels: dict[str, Handler] = field(factory=dict, init=False)
    _loops: list[OnTheBeat] = field(factory=list, init=False)
    _check_call: IDelayedCall | None = field(default=None, init=False)
    _beat: OnTheBeat | None = field(default=None, init=False)
    _drops_logged: dict[str, tuple[float, int]] = field(factory=dict, init=False)
    _running: bool = field(default=False, init=False)
    _last_check: float = field(default=0.0, init=False)
    _check_due: float = field(default=0.0, init=False)
    _paused_checks: int = field(default=0, init=False)
    _warned_size: bool = field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        if self.sealer is not None:
            # A sealed hello opens for up to the window either side of its
            # timestamp: a removed member's tombstone must outlive that.
            window = 2 * self.sealer.replay.window
            self.membership.replay_window = max(self.membership.replay_window, window)

    @property
    def iid(self) -> str:
        """Our node id."""
        return self.membership.iid

    # -- lifecycle -------------------------------------------------------------

    def startProtocol(self) -> None:
        """Bound: reset the election clock, say hello, start the loops."""
        self.membership.bound(self.clock.seconds())
        self._running = True
        self._last_check = self.clock.seconds()
        self._hello_all()
        resolve = OnTheBeat(
            self.clock, self.resolve_interval, partial(self._guarded, self._resolve_all)
        )
        resolve.start()
        self._loops.append(resolve)
        # Hellos on the exact multiples of helloInterval (tapkit.beat), where the
        # checks and the keyring poll are set too: one wake-up for all of them.
        self._beat = OnTheBeat(
            self.clock,
            self.membership.settings.hello_interval,
            partial(self._guarded, self._hello_all),
        )
        self._beat.start()
        self._schedule_check()

    def next_beat(self, now: float) -> float:
        """The first beat after C{now}: the multiples of helloInterval on the
        clock (the wall clock), the same instants on every node of the cluster."""
        return beat_after(now, self.membership.settings.hello_interval)

    def beat_at_or_after(self, when: float) -> float:
        """C{when} if it is a beat (within CHECK_SLACK), else the next beat."""
        return beat_at_or_after(
            when, self.membership.settings.hello_interval, CHECK_SLACK
        )

    def stopProtocol(self) -> None:
        """Unbound: stop the loops."""
        self._running = False
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops.clear()
        if self._beat is not None:
            self._beat.stop()
        self._beat = None
        if self._check_call is not None and self._check_call.active():
            self._check_call.cancel()
        self._check_call = None

    def _schedule_check(self) -> None:
        """Sleep until the next check: on the beat (L{next_beat}) at or after a
        member's timeout or one checkInterval after the last check
        (node-discover's cadence, so slow conditions such as a masters conflict
        are still seen), or at an election phase's exact time.

        Checks that wait for the beat run in the same reactor turn as the hellos
        sent on it, so an idle node wakes once per helloInterval to send and check
        however large the cluster, and a silent member is removed within its
        timeout plus one helloInterval.
        """
        if not self._running:
            return
        now = self.clock.seconds()
        membership = self.membership
        when = self._last_check + membership.settings.check_interval
        # Deadlines since the last check are still due, even if already past.
        timeout = membership.next_timeout(self._last_check)
        if timeout is not None:
            when = min(when, timeout + CHECK_SLACK)
        when = self.beat_at_or_after(when)
        phase = membership.next_phase(self._last_check)
        if phase is not None:
            when = min(when, phase + CHECK_SLACK)
        self._check_due = max(when, now)
        call = self._check_call
        if call is not None and call.active():
            if abs(call.getTime() - when) > CHECK_SLACK:
                call.reset(max(0.0, when - now))
            return
        self._check_call = self.clock.callLater(
            max(0.0, when - now), self._guarded, self._tick
        )

    def _guarded(self, call: Callable[[], None]) -> None:
        with self.log.failuresHandled("in the hello protocol loop {call}", call=call):
            call()

    def leave(self) -> None:
        """Leave gracefully: two hellos as a permanently demoted node, then goodbye.

        node-discover peers re-elect at their next check; ours at once.
        """
        was_master = self.membership.is_master
        events = self.membership.demote(permanent=True)
        if not was_master:
            events = [e for e in events if not isinstance(e, Demotion)]
        self.apply(events)
        if self.membership.settings.client:
            return
        self._hello_all()
        bye = wire.Envelope(
            BYE_EVENT, self.pid, self.iid, self.host_name, self.membership.bye_data()
        )
        self._send(bye, self.destinations())

    # -- destinations ----------------------------------------------------------

    def add_destination(self, host: str, port: int, source: str = "static") -> None:
        """Send hellos and channel messages to C{host:port} (an IPv4 or a name)."""
        _check_address(host, port)
        if source not in DESTINATION_SOURCES:
            raise ValueError(f"source must be one of {DESTINATION_SOURCES}")
        self._entries.setdefault((host, port), set()).add(source)
        if source == "static":
            self.membership.static_peers = True
        if not isIPAddress(host) and host not in self._resolved:
            self._resolve(host)

    def remove_destination(self, host: str, port: int, source: str = "static") -> None:
        """Undo one L{add_destination} of C{host:port} from C{source}."""
        sources = self._entries.get((host, port))
        if sources is None:
            return
        sources.discard(source)
        if not sources:
            del self._entries[(host, port)]
        if not any("static" in s for s in self._entries.values()):
            self.membership.static_peers = False

    def destinations(self) -> list[Source]:
        """Where a hello goes: resolved static and registry entries, then learned."""
        result: dict[Source, None] = {}
        for host, port in self._entries:
            address = host if isIPAddress(host) else self._resolved.get(host)
            if address is not None:
                result[(address, port)] = None
        for learned in self._learned.values():
            result[learned] = None
        return list(result)

    def hello_to(self, address: tuple[str, int]) -> None:
        """Send one hello at once to C{address} (e.g. a peer the registry announced)."""
        host, port = address
        _check_address(host, port)
        if isIPAddress(host):
            self._hello([(host, port)])
        elif host in self._resolved:
            self._hello([(self._resolved[host], port)])
        else:
            self._resolve(host).addCallback(
                lambda ip: self._hello([(ip, port)]) if ip else None
            )

    def _resolver(self) -> Resolver | None:
        if self.resolver is not None:
            return self.resolver
        resolve = getattr(self.clock, "resolve", None)
        return cast(Resolver | None, resolve)

    def _resolve(self, host: str) -> Deferred[str | None]:
        resolver = self._resolver()
        if resolver is None:
            self.log.error("cannot resolve {host}: no resolver", host=host)
            return succeed(None)
        self._resolving.add(host)

        def resolved(ip: str) -> str | None:
            if not isinstance(ip, str) or not isIPAddress(ip):
                self.log.error("{host} resolved to {ip!r}, not IPv4", host=host, ip=ip)
                return None
            if self._resolved.get(host) != ip:
                self.log.info("{host} is {ip}", host=host, ip=ip)
            self._resolved[host] = ip
            return ip

        def failed(failure: Failure) -> None:
            self.log.warn(
                "cannot resolve {host}: {error}", host=host, error=failure.value
            )

        def done(result: str | None) -> str | None:
            self._resolving.discard(host)
            return result

        d: Deferred[str | None] = resolver(host).addCallbacks(resolved, failed)
        return d.addBoth(done)

    def _resolve_all(self) -> None:
        for host in {h for h, _p in self._entries if not isIPAddress(h)}:
            if host not in self._resolving:
                self._resolve(host)

    # -- sending ---------------------------------------------------------------

    def _hello_all(self) -> None:
        self._hello(self.destinations())

    def _hello(self, destinations: list[Source]) -> None:
        if self.membership.settings.client or not destinations:
            return  # client-only nodes send no hellos
        if self.master_flag is not None:
            self.membership.set_master(self.master_flag())  # this hello says it
        envelope = wire.Envelope(
            "hello", self.pid, self.iid, self.host_name, self.membership.hello_data()
        )
        self._send(envelope, destinations)

    def datagram(self, envelope: wire.Envelope) -> bytes:
        """The datagram that carries C{envelope}: node-discover's encoding, sealed
        when there is a keyring. Raises L{wire.EncodeError} (L{wire.MessageTooLarge}
        above the UDP limit, sealing included)."""
        datagram = wire.encode(envelope, self.key)
        if self.sealer is None:
            return datagram
        sealed = self.sealer.seal(self.clock.seconds(), datagram)
        if len(sealed) > wire.MAX_DATAGRAM:
            raise wire.MessageTooLarge(len(sealed))
        return sealed

    def _send(self, envelope: wire.Envelope, destinations: Iterable[Source]) -> None:
        transport = self.transport
        if transport is None:
            return
        try:
            datagram = self.datagram(envelope)
        except (wire.EncodeError, SealError) as e:
            self.log.error(
                "not sending {event}: {error}", event=envelope.event, error=str(e)
            )
            return
        if len(datagram) > wire.PRACTICAL_DATAGRAM and not self._warned_size:
            self._warned_size = True
            self.log.warn(
                "a {event} datagram is {size} bytes; above ~{limit} it is fragmented "
                "and may be lost",
                event=envelope.event,
                size=len(datagram),
                limit=wire.PRACTICAL_DATAGRAM,
            )
        for destination in destinations:
            try:
                transport.write(datagram, destination)
                if envelope.event == "hello":
                    self.stats.sent += 1
            except (OSError, ValueError) as e:
                self.log.warn(
                    "sending {event} to {destination} failed: {error}",
                    event=envelope.event,
                    destination=destination,
                    error=str(e),
                )

    def publish(
        self, channel: str, payload: object, to: Iterable[Source] | None = None
    ) -> None:
        """Send C{payload} on C{channel} to every destination, or to C{to} (fire
        and forget).

        Raises ValueError for a reserved channel, a payload JavaScript treats as
        false (receivers drop it), a payload that is not JSON, or one too large.
        """
        check_channel(channel)
        if not wire.js_truthy(payload):
            raise ValueError(f"payload {payload!r} is falsy; receivers would drop it")
        envelope = wire.Envelope(channel, self.pid, self.iid, self.host_name, payload)
        self.datagram(envelope)  # raises EncodeError / MessageTooLarge
        self._send(envelope, self.destinations() if to is None else to)

    def deliver(self, envelope: wire.Envelope, source: Source) -> bool:
        """Hand a channel message to its subscriber (one that came in a datagram,
        or over the node-to-node transport); whether anyone had subscribed."""
        handler = self._channels.get(envelope.event)
        if handler is None:
            return False
        try:
            handler(envelope.data, envelope, source)
        except Exception:
            self.log.failure(
                "handler for channel {channel} failed", channel=envelope.event
            )
        return True

    def subscribe(self, channel: str, handler: Handler) -> Callable[[], None]:
        """Deliver C{channel} messages to C{handler(payload, envelope, source)}.

        Returns a callable that unsubscribes. Refuses reserved and joined channels.
        """
        check_channel(channel)
        if channel in self._channels:
            raise ValueError(f"channel {channel!r} is already subscribed")
        self._channels[channel] = handler

        def unsubscribe() -> None:
            if self._channels.get(channel) is handler:
                del self._channels[channel]

        return unsubscribe

    # -- membership actions ----------------------------------------------------

    def set_advertisement(self, value: object) -> None:
        """Change the advertisement and announce it at once.

        Raises ValueError if it is not JSON or the hello would be too large to send.
        """
        probe = dict(self.membership.me(), advertisement=value)
        envelope = wire.Envelope("hello", self.pid, self.iid, self.host_name, probe)
        self.datagram(envelope)
        self.membership.set_advertisement(value)
        self._hello_all()

    def promote(self) -> None:
        """Become master now (node-discover's C{promote()})."""
        self.apply(self.membership.promote())

    def demote(self, permanent: bool = False) -> None:
        """Stop being master (node-discover's C{demote(permanent)})."""
        self.apply(self.membership.demote(permanent))

    def registry_view(
        self,
        members: Mapping[str, int],
        view_index: int,
        own_index: int | None,
        clients: Collection[str] = (),
        peers: Mapping[str, ListedPeer] | None = None,
    ) -> None:
        """Pass the registry's view to the membership (L{Membership.registry_view})."""
        now = self.clock.seconds()
        self.apply(
            self.membership.registry_view(
                now, members, view_index, own_index, clients, peers
            )
        )

    def peer_left(self, member_id: str) -> None:
        """A member's registry record was deleted (L{Membership.peer_left})."""
        self.apply(self.membership.peer_left(self.clock.seconds(), member_id))

    def _log_drop(self, kind: str, format: str, **fields: object) -> None:
        """A debug line for a dropped datagram: at most one per reason every
        DROP_LOG_EVERY seconds (a flood must not become a flood of log lines; the
        counters in /status count every one), saying how many it left out."""
        now = self.clock.seconds()
        logged = self._drops_logged.get(kind)
        if logged is not None and now - logged[0] < DROP_LOG_EVERY:
            self._drops_logged[kind] = (logged[0], logged[1] + 1)
            return
        self._drops_logged[kind] = (now, 0)
        left_out = 0 if logged is None else logged[1]
        if left_out:
            format += " ({left_out} more of these since the last line)"
        self.log.debug(format, left_out=left_out, **fields)

    @property
    def paused_checks(self) -> int:
        """How many checks ran late enough to mean the process had been paused."""
        return self._paused_checks

    def _tick(self) -> None:
        now = self.clock.seconds()
        if now - self._check_due > PAUSE_LATENESS:
            # The reactor did not run for a while (SIGSTOP, a long GC, a blocked
            # callback): the hellos that came meanwhile wait unread on the socket.
            # Judge timeouts after one more reactor turn, which reads them first.
            self._paused_checks += 1
            self.log.info(
                "check {late:.3f} s late: reading waiting hellos before judging",
                late=now - self._check_due,
            )
            self._check_due = now
            self._check_call = self.clock.callLater(0, self._guarded, self._tick)
            return
        self._last_check = now
        self.apply(self.membership.tick(self._last_check))

    def apply(self, events: list[Event]) -> None:
        """Carry out membership events: send the hellos asked for, tell the observer;
        then sleep until the membership's next deadline."""
        self._carry_out(events)
        self._schedule_check()

    def _carry_out(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, SendHello):
                if event.destination is None:
                    self._hello_all()
                else:
                    self._hello([event.destination])
                continue
            if isinstance(event, Added | HelloReceived):
                self._learned[event.member.id] = event.source
            elif isinstance(event, Removed):
                self._learned.pop(event.member.id, None)
            elif isinstance(event, MastersConflict):
                self.log.warn(
                    "{count} masters for over masterTimeout: {masters}; check that "
                    "every member lists the others and uses the same settings",
                    count=len(event.masters),
                    masters=", ".join(event.masters),
                )
            try:
                self.observer(event)
            except Exception:
                self.log.failure("observer failed on {event}", event=event)

    # -- receiving -------------------------------------------------------------

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Handle one datagram; nothing a peer sends can raise out of here."""
        try:
            self._receive(datagram, (str(addr[0]), int(addr[1])))
        except Exception:
            self.membership.record_drop("internal-error")
            self.log.failure("while handling a datagram from {source}", source=addr)

    def _receive(self, datagram: bytes, source: Source) -> None:
        membership = self.membership
        boot = None
        if self.sealer is not None:
            try:
                opened = self.sealer.open(self.clock.seconds(), datagram)
                boot = Header.unpack(datagram).boot  # authenticated: it opened
                datagram = opened
            except SealError as e:
                membership.record_drop("auth")  # unsealed, foreign, forged, replayed
                self._log_drop(
                    "auth",
                    "dropped a datagram from {source}: not sealed for us ({why})",
                    source=source,
                    why=e.reason,
                    detail=e.detail,
                )
                return
        try:
            envelope = wire.decode(datagram, self.key)
        except wire.Dropped as e:
            membership.record_drop(e.reason)
            self._log_drop(
                e.reason,
                "dropped a datagram from {source}: {reason}",
                source=source,
                reason=e.reason,
                detail=e.detail,
            )
            return
        if envelope.iid == self.iid:
            if self.ignore_instance or envelope.event in ("hello", BYE_EVENT):
                membership.record_drop("own-instance")  # R5, and §2 step 1
                return
        elif self.ignore_process and envelope.pid == self.pid:
            membership.record_drop("same-process")  # R4
            return
        now = self.clock.seconds()
        if envelope.event == "hello":
            self.stats.received += 1
            self.apply(membership.hello_received(now, envelope, source, boot))
        elif envelope.event == BYE_EVENT:
            self.apply(membership.goodbye_received(now, envelope, source))
        elif envelope.event == "error":
            membership.record_drop("error-event")  # R7: never re-raised
        elif (refused := membership.message_refusal(envelope.iid, source)) is not None:
            membership.record_drop(refused)  # the registry does not know it
        elif envelope.event in self._channels:
            self.deliver(envelope, source)
        else:
            membership.record_drop("not-joined")


def _check_address(host: object, port: object) -> None:
    if not isinstance(host, str) or not (
        isIPAddress(host) or _HOST_NAME.fullmatch(host)
    ):
        raise ValueError(f"{host!r} is not an IPv4 address or a host name")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{port!r} is not a UDP port (1-65535)")
