"""Real node-discover 1.2.1 peers for wire-compatibility tests and benchmarks.

Each L{NodeDiscoverPeer} runs C{node tests/harness/nodejs/peer.js} (a thin script around
C{new Discover(options)}) in its own process. The script prints every event as one
JSON line; a background thread reads them into a thread-safe list of L{PeerEvent}s.
Commands (send, promote, demote, advertise, members, stop, ...) go to its stdin.

Waiting comes in two flavours:

  - L{NodeDiscoverPeer.wait_for} blocks the calling thread (bounded by a timeout).
    Use it when nothing in the test needs the reactor to run meanwhile, e.g. when
    only node-discover peers and raw sockets take part.
  - L{NodeDiscoverPeer.when} returns a C{Deferred} fired from the reactor thread,
    for trial C{TestCase}s where a Twisted node in the same reactor must keep
    running while a peer reacts to it. The reader thread wakes the reactor with
    C{callFromThread}; the timeout is a C{callLater} on the given reactor.

Event times: C{PeerEvent.mono_ms} is C{process.hrtime} in ms, i.e. CLOCK_MONOTONIC,
the same clock as C{time.monotonic()} on Linux, so it can be compared with times
taken in Python (L{NodeDiscoverPeer.spawned_at_ms}).

Ports: each peer binds its own free UDP port on 127.0.0.1 (L{free_udp_ports});
peers never share a port (wire spec section 4). By default the peer binds without
SO_REUSEADDR (node-discover's default is on), so an accidental port collision fails
loudly instead of silently splitting the cluster; it does not change the wire.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from attrs import define, field, frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime

from tests.harness.childprocess import Backstop, end, signal_and_wait
from tests.harness.requirements import missing, require_binary

NODEJS_DIR = Path(__file__).resolve().parent / "nodejs"
PEER_SCRIPT = NODEJS_DIR / "peer.js"
NODE_DISCOVER_PACKAGE = NODEJS_DIR / "node_modules" / "node-discover" / "package.json"

#: Short timers for tests whose point is not the default timing (ms).
FAST_TIMERS: Mapping[str, int] = {
    "helloInterval": 200,
    "checkInterval": 400,
    "nodeTimeout": 800,
}

#: How many recent events an assertion message shows.
_RECENT = 25
#: How long a SIGKILLed peer may take to be reaped.
_KILL_WAIT = 10.0

JSON = Any
Predicate = Callable[["PeerEvent"], bool]


@frozen
class PeerEvent:
    """One JSON line printed by peer.js."""

    kind: str
    wall_ms: float
    mono_ms: float
    fields: Mapping[str, JSON]
    #: Python's time.monotonic() in ms when the line was read.
    read_ms: float

    def __getitem__(self, key: str) -> JSON:
        return self.fields[key]

    def get(self, key: str, default: JSON = None) -> JSON:
        """Return field C{key} or C{default}."""
        return self.fields.get(key, default)

    @property
    def node_id(self) -> str | None:
        """The record id of an added/removed/master event, else None."""
        node = self.fields.get("node")
        if isinstance(node, dict):
            value = node.get("id")
            return value if isinstance(value, str) else None
        return None

    def __str__(self) -> str:
        return f"{self.mono_ms:.1f} {self.kind} {json.dumps(dict(self.fields))}"


def free_udp_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return C{count} distinct UDP ports on C{host} that were free a moment ago."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_udp_port(host: str = "127.0.0.1") -> int:
    """Return a UDP port on C{host} that was free a moment ago."""
    return free_udp_ports(1, host)[0]


#: Peers a test forgot are killed at exit. A peer also stops by itself when its stdin
#: closes, which happens when the test process dies in any way.
_backstop: Backstop[NodeDiscoverPeer] = Backstop(lambda peer: peer.kill())


def require_node_discover() -> str:
    """Return the path of C{node}, or skip/fail if node or node-discover is missing."""
    node = require_binary("node", "nodejs")
    if not NODE_DISCOVER_PACKAGE.exists():
        missing("node-discover not installed: run npm ci --prefix tests/harness/nodejs")
    return node


@define(eq=False)
class _Waiter:
    predicate: Predicate
    since: int
    deferred: Deferred[PeerEvent]
    reactor: IReactorFromThreads
    description: str
    timeout_call: Any = None


@define(eq=False)
class NodeDiscoverPeer:
    """One node-discover 1.2.1 process on 127.0.0.1, driven over stdin/stdout.

    C{options} are node-discover options, passed through unchanged (camelCase, as
    node-discover spells them); C{port} and C{address} are filled in. Create with
    L{NodeDiscoverPeer.create} (keyword options), then L{start}, or use
    L{spawn_peer}/L{spawn_mesh}, which also wait for C{started}.
    """

    options: dict[str, JSON]
    channels: Sequence[str] = ()
    verbose: bool = False
    env: Mapping[str, str] | None = None

    _process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _events: list[PeerEvent] = field(factory=list, init=False)
    _cond: threading.Condition = field(factory=threading.Condition, init=False)
    _stderr: deque[str] = field(factory=lambda: deque(maxlen=200), init=False)
    _readers: list[threading.Thread] = field(factory=list, init=False)
    _eof: bool = field(default=False, init=False)
    _seq: int = field(default=0, init=False)
    _waiters: list[_Waiter] = field(factory=list, init=False)
    spawned_at_ms: float | None = field(default=None, init=False)

    @classmethod
    def create(
        cls,
        port: int | None = None,
        *,
        unicast: Sequence[str] | str | None = None,
        key: str | None = None,
        weight: float | None = None,
        hello_interval: int | None = None,
        check_interval: int | None = None,
        node_timeout: int | None = None,
        master_timeout: int | None = None,
        masters_required: int | None = None,
        client: bool = False,
        advertisement: JSON = None,
        hostname: str | None = None,
        address: str = "127.0.0.1",
        reuse_addr: bool = False,
        fast: bool = False,
        channels: Sequence[str] = (),
        verbose: bool = False,
        extra_options: Mapping[str, JSON] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> NodeDiscoverPeer:
        """Build a peer (not started). C{fast} applies L{FAST_TIMERS} first.

        node-discover treats falsy values as "default": C{weight=0} runs with the
        default weight, exactly as a Node application would.
        """
        options: dict[str, JSON] = dict(FAST_TIMERS) if fast else {}
        options["port"] = free_udp_port(address) if port is None else port
        options["address"] = address
        options["reuseAddr"] = reuse_addr
        given: dict[str, JSON] = {
            "unicast": list(unicast) if isinstance(unicast, (list, tuple)) else unicast,
            "key": key,
            "weight": weight,
            "helloInterval": hello_interval,
            "checkInterval": check_interval,
            "nodeTimeout": node_timeout,
            "masterTimeout": master_timeout,
            "mastersRequired": masters_required,
            "advertisement": advertisement,
            "hostname": hostname,
        }
        options.update({k: v for k, v in given.items() if v is not None})
        if client:
            options["client"] = True
        options.update(extra_options or {})
        return cls(options=options, channels=tuple(channels), verbose=verbose, env=env)

    # -- process lifetime --

    @property
    def port(self) -> int:
        """The UDP port this peer binds (and sends from)."""
        return int(self.options["port"])

    @property
    def address(self) -> str:
        """The address this peer binds."""
        return str(self.options.get("address", "0.0.0.0"))

    @property
    def endpoint(self) -> str:
        """C{address:port}, as an entry of a unicast list."""
        return f"{self.address}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The OS pid of the node process, once started."""
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status of the node process, or None while it runs."""
        return None if self._process is None else self._process.poll()

    def start(self) -> None:
        """Spawn the node process; returns at once (see L{wait_started})."""
        if self._process is not None:
            raise RuntimeError("peer already started")
        node = require_node_discover()
        env = dict(os.environ)
        env.update(self.env or {})
        argv = [node, str(PEER_SCRIPT), json.dumps(self._script_options())]
        self.spawned_at_ms = time.monotonic() * 1000.0
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(NODEJS_DIR),
        )
        _backstop.add(self)
        assert self._process.stdout is not None and self._process.stderr is not None
        out = threading.Thread(
            target=self._read_stdout,
            args=(self._process.stdout,),
            name=f"nodediscover-stdout-{self.port}",
            daemon=True,
        )
        err = threading.Thread(
            target=self._read_stderr,
            args=(self._process.stderr,),
            name=f"nodediscover-stderr-{self.port}",
            daemon=True,
        )
        self._readers = [out, err]
        out.start()
        err.start()

    def _script_options(self) -> dict[str, JSON]:
        options = dict(self.options)
        options["channels"] = list(self.channels)
        options["verbose"] = self.verbose
        return options

    def wait_started(self, timeout: float = 10.0) -> PeerEvent:
        """Block until the peer has bound its socket; return the C{started} event."""
        return self.wait_for(lambda e: e.kind == "started", timeout, "started")

    @property
    def started_event(self) -> PeerEvent:
        """The C{started} event (the peer must have started)."""
        found = self.events("started")
        if not found:
            raise AssertionError(f"peer on port {self.port} has not started")
        return found[0]

    @property
    def iid(self) -> str:
        """node-discover's instance id: the node id peers see."""
        return str(self.started_event["iid"])

    @property
    def process_uuid(self) -> str:
        """node-discover's per-process id (the envelope's C{pid})."""
        return str(self.started_event["pid"])

    @property
    def weight(self) -> float:
        """The weight this peer runs with."""
        return float(self.started_event["weight"])

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop gracefully (stop command, stdin EOF, SIGTERM, then SIGKILL)."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            try:
                self._write({"cmd": "stop"})
                assert process.stdin is not None
                process.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                end(process, timeout)
        return self._reap()

    def kill(self) -> int | None:
        """SIGKILL the node process (a crash: no goodbye, socket just closes)."""
        process = self._process
        if process is None:
            return None
        signal_and_wait(process, signal.SIGKILL, _KILL_WAIT)
        return self._reap()

    def _reap(self) -> int | None:
        process = self._process
        assert process is not None
        for reader in self._readers:
            reader.join(5.0)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        _backstop.discard(self)
        return process.returncode

    def __enter__(self) -> NodeDiscoverPeer:
        if self._process is None:
            self.start()
        self.wait_started()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- output --

    def _read_stdout(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self._append(self._parse(raw))
        with self._cond:
            self._eof = True
            self._cond.notify_all()
        self._wake_reactors()

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _parse(self, raw: bytes) -> PeerEvent:
        now_ms = time.monotonic() * 1000.0
        text = raw.decode("utf-8", "replace").rstrip("\n")
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str):
            return PeerEvent("stdout", now_ms, now_ms, {"line": text}, now_ms)
        return PeerEvent(
            kind=obj.pop("kind"),
            wall_ms=float(obj.pop("t", 0.0)),
            mono_ms=float(obj.pop("mono", now_ms)),
            fields=obj,
            read_ms=now_ms,
        )

    def _append(self, event: PeerEvent) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()
        self._wake_reactors()

    def _wake_reactors(self) -> None:
        with self._cond:
            reactors = {id(w.reactor): w.reactor for w in self._waiters}
        for reactor in reactors.values():
            reactor.callFromThread(self._service_waiters)

    def events(self, kind: str | None = None, since: int = 0) -> list[PeerEvent]:
        """A copy of the events so far (of one C{kind}, from index C{since})."""
        with self._cond:
            found = self._events[since:]
        return [e for e in found if kind is None or e.kind == kind]

    def mark(self) -> int:
        """The number of events so far: pass it as C{since} to wait for newer ones."""
        with self._cond:
            return len(self._events)

    def stderr_tail(self) -> list[str]:
        """The last lines node wrote to stderr."""
        return list(self._stderr)

    def _find(self, predicate: Predicate, since: int) -> PeerEvent | None:
        for event in self._events[since:]:
            if predicate(event):
                return event
        return None

    def describe(self) -> str:
        """A multi-line summary for assertion messages: state, events, stderr."""
        with self._cond:
            recent = self._events[-_RECENT:]
            total = len(self._events)
        lines = [
            f"node-discover peer {self.endpoint} (os pid {self.pid}, "
            f"exit {self.returncode}), last {len(recent)} of {total} events:"
        ]
        lines.extend("  " + str(e) for e in recent)
        tail = self.stderr_tail()[-10:]
        if tail:
            lines.append("  stderr:")
            lines.extend("    " + line for line in tail)
        return "\n".join(lines)

    def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float = 5.0,
        description: str = "condition",
    ) -> None:
        """Block until C{condition()} is true, re-checking it after every event.

        Raises AssertionError, with the recent events, after C{timeout} seconds or
        as soon as the process has exited with the condition still false.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition():
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "peer exited" if self._eof else f"timed out after {timeout} s"
                    raise AssertionError(
                        f"{why} waiting for {description}\n{self.describe()}"
                    )
                self._cond.wait(remaining)

    def wait_for(
        self,
        predicate: Predicate,
        timeout: float = 5.0,
        description: str = "event",
        *,
        since: int = 0,
    ) -> PeerEvent:
        """Block until an event (index >= C{since}) matches C{predicate}; return it.

        Raises AssertionError, with the recent events, after C{timeout} seconds or
        as soon as the process has exited without a matching event.
        """
        found: list[PeerEvent] = []

        def matched() -> bool:
            event = self._find(predicate, since)
            if event is not None:
                found.append(event)
            return event is not None

        self.wait_until(matched, timeout, description)
        return found[0]

    def wait_for_kind(
        self, kind: str, timeout: float = 5.0, *, since: int = 0
    ) -> PeerEvent:
        """Block until an event of C{kind} arrives; return it."""
        return self.wait_for(lambda e: e.kind == kind, timeout, kind, since=since)

    def when(
        self,
        predicate: Predicate,
        reactor: IReactorTime,
        timeout: float = 5.0,
        description: str = "event",
        *,
        since: int = 0,
    ) -> Deferred[PeerEvent]:
        """Like L{wait_for} but fires a Deferred from C{reactor}'s thread.

        The Deferred fails with AssertionError on timeout or exit; cancelling it
        removes the waiter. It never blocks the reactor. C{reactor} must also
        provide IReactorFromThreads (every real reactor does; task.Clock does not).
        """
        from_threads = IReactorFromThreads(reactor)

        def cancel(d: Deferred[PeerEvent]) -> None:
            self._drop_waiter(waiter)

        waiter = _Waiter(predicate, since, Deferred(cancel), from_threads, description)
        waiter.timeout_call = reactor.callLater(timeout, self._expire, waiter, timeout)
        with self._cond:
            self._waiters.append(waiter)
        self._service_waiters()
        return waiter.deferred

    def _drop_waiter(self, waiter: _Waiter) -> bool:
        with self._cond:
            if waiter not in self._waiters:
                return False
            self._waiters.remove(waiter)
        if waiter.timeout_call is not None and waiter.timeout_call.active():
            waiter.timeout_call.cancel()
        return True

    def _service_waiters(self) -> None:
        with self._cond:
            waiters = list(self._waiters)
            eof = self._eof
        for waiter in waiters:
            with self._cond:
                found = self._find(waiter.predicate, waiter.since)
            if found is not None:
                if self._drop_waiter(waiter):
                    waiter.deferred.callback(found)
            elif eof and self._drop_waiter(waiter):
                waiter.deferred.errback(
                    AssertionError(
                        f"peer exited waiting for {waiter.description}\n"
                        + self.describe()
                    )
                )

    def _expire(self, waiter: _Waiter, timeout: float) -> None:
        waiter.timeout_call = None
        if self._drop_waiter(waiter):
            waiter.deferred.errback(
                AssertionError(
                    f"timed out after {timeout:.1f} s waiting for "
                    f"{waiter.description}\n{self.describe()}"
                )
            )

    # -- commands --

    def _write(self, command: Mapping[str, JSON]) -> None:
        process = self._process
        if process is None or process.stdin is None:
            raise RuntimeError("peer not started")
        line = json.dumps(dict(command), separators=(",", ":")) + "\n"
        process.stdin.write(line.encode("utf-8"))
        process.stdin.flush()

    def send_command(
        self, command: Mapping[str, JSON], timeout: float = 5.0
    ) -> PeerEvent:
        """Send one command to peer.js and block until its reply; return the reply."""
        with self._cond:
            self._seq += 1
            seq = self._seq
        self._write({**command, "seq": seq})
        return self.wait_for(
            lambda e: e.kind == "reply" and e.get("seq") == seq,
            timeout,
            f"reply to {command!r}",
        )

    def send(self, channel: str, data: JSON) -> bool:
        """Send C{data} on C{channel}; False if node-discover refused the name."""
        return bool(
            self.send_command({"cmd": "send", "channel": channel, "data": data})["ok"]
        )

    def promote(self) -> None:
        """Call C{promote()} on the peer."""
        self.send_command({"cmd": "promote"})

    def demote(self, permanent: bool = False) -> None:
        """Call C{demote(permanent)} on the peer."""
        self.send_command({"cmd": "demote", "permanent": permanent})

    def advertise(self, data: JSON) -> None:
        """Call C{advertise(data)}; it goes out with the next hello."""
        self.send_command({"cmd": "advertise", "data": data})

    def hello(self) -> None:
        """Make the peer send one extra hello now."""
        self.send_command({"cmd": "hello"})

    def join(self, channel: str) -> bool:
        """Join C{channel}; received messages become C{message} events."""
        return bool(self.send_command({"cmd": "join", "channel": channel})["ok"])

    def leave(self, channel: str) -> bool:
        """Leave C{channel}."""
        return bool(self.send_command({"cmd": "leave", "channel": channel})["ok"])

    def members(self) -> list[dict[str, JSON]]:
        """The peer's current node table (records incl. isMaster, id, lastSeen)."""
        nodes = self.send_command({"cmd": "members"})["nodes"]
        return [dict(n) for n in nodes]

    def is_master(self) -> bool:
        """Whether the peer itself is master right now."""
        return bool(self.send_command({"cmd": "members"})["isMaster"])

    # -- views over the events --

    def added_ids(self, since: int = 0) -> set[str]:
        """Ids of every node this peer emitted C{added} for."""
        return {e.node_id for e in self.events("added", since) if e.node_id}

    def removed_ids(self, since: int = 0) -> set[str]:
        """Ids of every node this peer emitted C{removed} for."""
        return {e.node_id for e in self.events("removed", since) if e.node_id}


def spawn_peer(timeout: float = 10.0, **options: Any) -> NodeDiscoverPeer:
    """Create a peer with L{NodeDiscoverPeer.create}, start it, wait for C{started}."""
    peer = NodeDiscoverPeer.create(**options)
    peer.start()
    try:
        peer.wait_started(timeout)
    except BaseException:
        peer.kill()
        raise
    return peer


def spawn_mesh(
    count: int,
    *,
    extra_unicast: Sequence[str] = (),
    timeout: float = 10.0,
    wait: bool = True,
    stagger: bool = False,
    **options: Any,
) -> list[NodeDiscoverPeer]:
    """Start C{count} peers on distinct 127.0.0.1 ports, each listing all of them.

    By default the processes are spawned back to back (as in the spec's baseline),
    then, if C{wait}, each is waited for until C{started}. Peers created in the same
    millisecond get equal default weights, which node-discover never resolves; with
    C{stagger} each peer is started only after the previous one reported
    C{started}, so the weights strictly decrease in list order and C{peers[0]} is
    the oldest, i.e. the master-to-be. C{extra_unicast} entries (e.g. a Python node)
    are appended to every list. Stop them with L{stop_all}.
    """
    ports = free_udp_ports(count)
    unicast = [f"127.0.0.1:{p}" for p in ports] + list(extra_unicast)
    peers = [
        NodeDiscoverPeer.create(port, unicast=unicast, **options) for port in ports
    ]
    try:
        for peer in peers:
            peer.start()
            if stagger:
                peer.wait_started(timeout)
        if wait:
            for peer in peers:
                peer.wait_started(timeout)
    except BaseException:
        for peer in peers:
            peer.kill()
        raise
    return peers


def stop_all(peers: Sequence[NodeDiscoverPeer]) -> None:
    """Stop every peer (kill any that do not stop in time)."""
    for peer in peers:
        peer.stop()


def iter_events(peers: Sequence[NodeDiscoverPeer], kind: str) -> Iterator[PeerEvent]:
    """Every event of C{kind} from every peer, in peer order."""
    for peer in peers:
        yield from peer.events(kind)


def masters_agreed(peers: Sequence[NodeDiscoverPeer]) -> str | None:
    """The iid every live peer takes as the only master, or None if they disagree.

    Asks each peer for its table: a peer that is master itself counts its own iid.
    """
    views: list[set[str]] = []
    for peer in peers:
        table = peer.send_command({"cmd": "members"})
        masters = {str(n["id"]) for n in table["nodes"] if n.get("isMaster")}
        if table["isMaster"]:
            masters.add(str(table["iid"]))
        views.append(masters)
    if views and all(len(v) == 1 for v in views) and len(set.union(*views)) == 1:
        return next(iter(views[0]))
    return None
