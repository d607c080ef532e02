"""Real ``twistd -n clusternode`` processes for benchmarks, observed without polling.

L{ClusterNodeProcess} spawns one node on 127.0.0.1 (UDP port 0, status API on a free
TCP port) and reads its log from stdout: the moment it is ready (the "node ... of
cluster" line, written once its sockets are bound), the "registered" line and every
"promotion"/"demotion" line, each stamped with our wall clock when read.

Membership is observed through the node's own event stream (C{GET /events}): the node
pushes its status document the moment anything changes (a member added or removed, a
master seen, a promotion or demotion, a registry change), so a benchmark learns of
every change without polling, and every document carries C{now}, the node's clock
(C{reactor.seconds()}, i.e. wall time) when it was rendered. Event times are those
C{now}s, not our read times, so scheduling delays in the benchmark process do not
count. The stream also pushes once a second; the idle measurement closes the streams
first.

L{ClusterView} collects the documents of every node and answers "when did this
condition first hold on every node of a set" by replaying them in C{now} order.
"""

from __future__ import annotations

import atexit
import calendar
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import IO, Any

from attrs import define, field, frozen

from tests.harness.servers import free_port, twistd_path

_PR_SET_PDEATHSIG = 1
_LIBC: Any
try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def _die_with_parent() -> None:
    """In the child: SIGKILL when the benchmark dies, even by SIGKILL (Linux)."""
    if _LIBC is not None and hasattr(_LIBC, "prctl"):
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def bytecode_env(cache_dir: str) -> dict[str, str]:
    """Our environment, but caching bytecode in C{cache_dir}, as an install would.

    A node installed from a wheel starts from compiled bytecode; a checkout run with
    C{PYTHONDONTWRITEBYTECODE} compiles every module of the project at every start
    (about a quarter of a second of CPU), which is not what a deployment pays. With
    a cache prefix Python keeps all bytecode there (the standard library's too), so
    start one node first (L{ClusterNodeProcess} with this C{env}) to fill it.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = cache_dir
    return env


@frozen
class StatusSample:
    """One status document pushed by one node, reduced to what the benchmark needs."""

    node_id: str
    #: The node's clock (wall seconds) when it rendered the document.
    now: float
    #: Our wall clock when we parsed it.
    read: float
    members: frozenset[str]
    master: str | None
    is_master: bool
    #: The first document of this stream (taken when we attached).
    first: bool


Condition = Callable[[Mapping[str, StatusSample]], bool]


def meshed(nodes: Collection[str]) -> Condition:
    """Every node in C{nodes} lists every other one as a member."""
    wanted = frozenset(nodes)

    def holds(latest: Mapping[str, StatusSample]) -> bool:
        return all(wanted - {n} <= latest[n].members for n in wanted)

    return holds


def seen_by(nodes: Collection[str], newcomer: str) -> Condition:
    """Every node in C{nodes} (other than C{newcomer}) lists C{newcomer}."""
    others = frozenset(nodes) - {newcomer}

    def holds(latest: Mapping[str, StatusSample]) -> bool:
        return all(newcomer in latest[n].members for n in others)

    return holds


def agreed_master(latest: Mapping[str, StatusSample]) -> str | None:
    """The master every node names, if they all name the same one of them."""
    masters = {s.master for s in latest.values()}
    if len(masters) != 1:
        return None
    master = masters.pop()
    if master is None or master not in latest or not latest[master].is_master:
        return None
    return master


def removed_everywhere(nodes: Collection[str], gone: str) -> Condition:
    """No node in C{nodes} lists C{gone} any more."""
    wanted = frozenset(nodes)

    def holds(latest: Mapping[str, StatusSample]) -> bool:
        return all(gone not in latest[n].members for n in wanted)

    return holds


@define(eq=False)
class ClusterView:
    """Every status document of every node, and when conditions first held.

    The stream threads hand in documents as they came (L{add_raw}); they are parsed
    when asked for, so that the observer's JSON work does not take the cores from
    the nodes while they are being timed (the documents carry the nodes' clocks).
    """

    _samples: list[StatusSample] = field(factory=list)
    _raw: list[tuple[str, bytes, bool]] = field(factory=list)
    _count: int = 0
    _cond: threading.Condition = field(factory=threading.Condition)

    def add(self, sample: StatusSample) -> None:
        """Record one document (called from stream threads)."""
        with self._cond:
            self._samples.append(sample)
            self._count += 1
            self._cond.notify_all()

    def add_raw(self, node_id: str, data: bytes, first: bool) -> None:
        """Record one document's JSON, to be parsed when the documents are asked for."""
        with self._cond:
            self._raw.append((node_id, data, first))
            self._count += 1
            self._cond.notify_all()

    def _parsed(self) -> list[StatusSample]:
        """Every document, the pending ones parsed (call with the lock held)."""
        pending, self._raw = self._raw, []
        self._samples.extend(
            _sample(node_id, json.loads(data), first)
            for node_id, data, first in pending
        )
        return self._samples

    def samples(self, node_id: str | None = None) -> list[StatusSample]:
        """A copy of the documents so far (of one node)."""
        with self._cond:
            return [s for s in self._parsed() if node_id in (None, s.node_id)]

    def first_time(
        self, nodes: Collection[str], condition: Condition, after: float
    ) -> float | None:
        """The first C{now} >= C{after} at which C{condition} held over C{nodes}.

        Replays the documents of C{nodes} in C{now} order, each replacing its node's
        previous one; the condition is only asked once every node has a document.
        """
        wanted = frozenset(nodes)
        with self._cond:
            ordered = sorted(
                (s for s in self._parsed() if s.node_id in wanted), key=lambda s: s.now
            )
        latest: dict[str, StatusSample] = {}
        for sample in ordered:
            latest[sample.node_id] = sample
            if sample.now >= after and len(latest) == len(wanted) and condition(latest):
                return sample.now
        return None

    def max_masters(self, nodes: Collection[str], start: float, end: float) -> int:
        """The most of C{nodes} claiming mastership at one time in a window."""
        wanted = frozenset(nodes)
        with self._cond:
            ordered = sorted(
                (s for s in self._parsed() if s.node_id in wanted), key=lambda s: s.now
            )
        claiming: set[str] = set()
        most = 0
        for sample in ordered:
            if sample.is_master:
                claiming.add(sample.node_id)
            else:
                claiming.discard(sample.node_id)
            if start <= sample.now <= end:
                most = max(most, len(claiming))
        return most

    def wait(
        self,
        nodes: Collection[str],
        condition: Condition,
        after: float,
        timeout: float,
        description: str,
    ) -> float:
        """Block until C{condition} has held over C{nodes} since C{after}; its time."""
        deadline = time.monotonic() + timeout
        seen = -1
        while True:
            with self._cond:
                count = self._count
                if count == seen:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(
                            f"timed out after {timeout:.0f} s waiting for {description}"
                        )
                    self._cond.wait(min(remaining, 0.05))
                    continue
            seen = count
            found = self.first_time(nodes, condition, after)
            if found is not None:
                return found

    def latest(self, nodes: Collection[str]) -> dict[str, StatusSample]:
        """The newest document of each of C{nodes} that has one."""
        latest: dict[str, StatusSample] = {}
        for sample in sorted(self.samples(), key=lambda s: s.now):
            if sample.node_id in nodes:
                latest[sample.node_id] = sample
        return latest


def _sample(node_id: str, document: Mapping[str, Any], first: bool) -> StatusSample:
    me = document["self"]
    return StatusSample(
        node_id=node_id,
        now=float(document["now"]),
        read=time.time(),
        members=frozenset(str(m["id"]) for m in document["members"]),
        master=None if document["master"] is None else str(document["master"]),
        is_master=bool(me["isMaster"]),
        first=first,
    )


@define(eq=False)
class StatusStream:
    """A reader of one node's C{GET /events} stream, feeding a L{ClusterView}."""

    node_id: str
    port: int
    view: ClusterView
    _sock: socket.socket | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    error: str | None = field(default=None, init=False)

    def open(self, timeout: float = 5.0) -> None:
        """Connect and start reading in a daemon thread."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        sock.settimeout(None)
        # HTTP/1.0: no chunked framing, the node closes the stream when it stops.
        sock.sendall(
            b"GET /events HTTP/1.0\r\nHost: 127.0.0.1\r\n"
            b"Accept: text/event-stream\r\n\r\n"
        )
        self._sock = sock
        self._thread = threading.Thread(
            target=self._read, name=f"sse-{self.port}", daemon=True
        )
        self._thread.start()

    def _read(self) -> None:
        # Our own reference: close() sets self._sock to None from another thread.
        sock = self._sock
        assert sock is not None
        buffer = b""
        header_done = False
        first = True
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                if not header_done:
                    head, sep, rest = buffer.partition(b"\r\n\r\n")
                    if not sep:
                        continue
                    if b" 200 " not in head.split(b"\r\n", 1)[0]:
                        self.error = head.decode("latin-1")
                        return
                    header_done, buffer = True, rest
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    for line in event.split(b"\n"):
                        if line.startswith(b"data: "):
                            self.view.add_raw(self.node_id, line[6:], first)
                            first = False
        except OSError as e:
            if self._sock is not None:
                self.error = str(e)

    def close(self) -> None:
        """Hang up (the node forgets the stream) and wait for the reader."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if self._thread is not None:
            self._thread.join(5.0)


_live: set[ClusterNodeProcess] = set()
_live_lock = threading.Lock()


@define(eq=False)
class ClusterNodeProcess:
    """One C{twistd -n clusternode} on 127.0.0.1 with a known id and status port."""

    etcd_url: str
    cluster: str
    view: ClusterView
    node_id: str
    extra_args: Sequence[str] = ()
    http_port: int = field(factory=free_port)
    #: The record TTL (seconds); the default, passed explicitly.
    ttl: int = 10
    #: The environment of the process (default: ours).
    env: Mapping[str, str] | None = None
    #: Open the event stream as soon as the node says it is ready.
    follow: bool = True

    spawned_at: float | None = field(default=None, init=False)
    ready_at: float | None = field(default=None, init=False)
    registered_at: float | None = field(default=None, init=False)
    exited_at: float | None = field(default=None, init=False)
    promotions: list[float] = field(factory=list, init=False)
    demotions: list[float] = field(factory=list, init=False)
    stream: StatusStream | None = field(default=None, init=False)
    _lines: list[str] = field(factory=list, init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _reader: threading.Thread | None = field(default=None, init=False)
    _workdir: str = field(factory=lambda: tempfile.mkdtemp(prefix="clusterbench-"))
    _ready: threading.Event = field(factory=threading.Event, init=False)

    def argv(self) -> list[str]:
        """The command line: defaults except where the benchmark must fix things."""
        return [
            twistd_path(),
            "-n",
            "--pidfile=",
            "clusternode",
            "--etcd",
            self.etcd_url,
            "--cluster",
            self.cluster,
            "--node-id",
            self.node_id,
            "--udp-port",
            "0",
            "--udp-interface",
            "127.0.0.1",
            "--http",
            f"tcp:{self.http_port}:interface=127.0.0.1",
            "--ttl",
            str(self.ttl),
            *self.extra_args,
        ]

    @property
    def pid(self) -> int:
        """The OS pid of the twistd process."""
        assert self._process is not None
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the process runs."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Spawn the process; returns at once."""
        in_main = threading.current_thread() is threading.main_thread()
        self.spawned_at = time.time()
        self._process = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self._workdir,
            env=None if self.env is None else dict(self.env),
            start_new_session=True,
            preexec_fn=_die_with_parent if in_main else None,
        )
        with _live_lock:
            _live.add(self)
        assert self._process.stdout is not None
        self._reader = threading.Thread(
            target=self._read_log,
            args=(self._process.stdout,),
            name=f"clusternode-log-{self.http_port}",
            daemon=True,
        )
        self._reader.start()

    def _read_log(self, stdout: IO[bytes]) -> None:
        for raw in stdout:
            now = time.time()
            text = raw.decode("utf-8", "replace").rstrip("\n")
            self._lines.append(text)
            if "] promotion: node " in text:
                self.promotions.append(now)
            elif "] demotion: node " in text:
                self.demotions.append(now)
            elif self.registered_at is None and "] registered /twistednode/" in text:
                self.registered_at = now
            elif self.ready_at is None and f"] node {self.node_id} of cluster" in text:
                self.ready_at = now
                if self.follow:
                    self.attach()
                self._ready.set()
        self._ready.set()

    def attach(self) -> None:
        """Open the event stream (again); errors are kept in C{stream.error}."""
        stream = StatusStream(self.node_id, self.http_port, self.view)
        try:
            stream.open()
        except OSError as e:
            stream.error = f"cannot connect: {e}"
        self.stream = stream

    def detach(self) -> None:
        """Close the event stream."""
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def wait_ready(self, timeout: float) -> float:
        """Block until the node is ready; its ready time (wall)."""
        if not self._ready.wait(timeout) or self.ready_at is None:
            raise RuntimeError(
                f"clusternode {self.node_id} not ready after {timeout:.0f} s "
                f"(exit {self.returncode}):\n" + self.output()
            )
        return self.ready_at

    @property
    def returncode(self) -> int | None:
        """The exit status, or None while running."""
        return None if self._process is None else self._process.poll()

    def output(self, last: int = 30) -> str:
        """The last lines of the log."""
        return "\n".join(self._lines[-last:])

    def signal(self, sig: int) -> float:
        """Send C{sig}; return when it was sent (wall)."""
        assert self._process is not None
        sent = time.time()
        try:
            self._process.send_signal(sig)
        except ProcessLookupError:
            pass
        return sent

    def wait_exit(self, timeout: float = 10.0) -> int | None:
        """Wait for the process to exit (SIGKILL after C{timeout})."""
        process = self._process
        if process is None:
            return None
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self.exited_at is None:
            self.exited_at = time.time()
        return process.returncode

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly (SIGTERM, then SIGKILL), close the stream, remove files."""
        if self.running:
            self.signal(signal.SIGTERM)
        self.wait_exit(timeout)
        self.detach()
        if self._reader is not None:
            self._reader.join(5.0)
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()
        shutil.rmtree(self._workdir, ignore_errors=True)
        with _live_lock:
            _live.discard(self)


def stop_nodes(nodes: Sequence[ClusterNodeProcess]) -> None:
    """SIGTERM every running node at once, then wait for each to exit."""
    for node in nodes:
        if node.running:
            node.signal(signal.SIGTERM)
    for node in nodes:
        node.stop()


@atexit.register
def _stop_leftovers() -> None:
    with _live_lock:
        leftovers = list(_live)
    stop_nodes(leftovers)


def parse_expiration(text: str) -> float:
    """Epoch seconds of an etcd C{expiration} (RFC 3339, UTC, up to 9 digits)."""
    if not text.endswith("Z"):
        raise ValueError(f"not a UTC time: {text!r}")
    whole, _, fraction = text[:-1].partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds + (float("0." + fraction) if fraction else 0.0)


@frozen
class Written:
    """When the registry wrote a key: by its own clock, and when a watch told us."""

    #: The registry's clock at the write: the record's expiration minus its TTL.
    at: float
    #: Our wall clock when the watch answer was read (later by our scheduling).
    seen: float


def watch_for_key(
    etcd_url: str, directory: str, suffix: str, ttl: float, timeout: float
) -> Callable[[], Written | None]:
    """Long-poll the registry directory until a key ending in C{suffix} is written.

    Starts a thread at once and returns a function that waits for it and tells when
    the write happened (None if it never did). The write time is the registry's own
    (expiration - C{ttl}), so a busy benchmark process does not delay it.
    """
    base = f"{etcd_url}/v2/keys{urllib.parse.quote(directory)}"
    with urllib.request.urlopen(base, timeout=5) as response:
        index = int(response.headers["X-Etcd-Index"]) + 1
    result: list[Written] = []

    def run() -> None:
        nonlocal index
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            url = f"{base}?wait=true&recursive=true&waitIndex={index}"
            try:
                with urllib.request.urlopen(
                    url, timeout=max(0.1, deadline - time.monotonic())
                ) as response:
                    # Headers come at once; the body when the write happens.
                    body = response.read()
                    arrived = time.time()
                event = json.loads(body)
            except OSError:
                return
            node = event.get("node", {})
            if str(node.get("key", "")).endswith(suffix) and event.get("action") in (
                "create",
                "set",
            ):
                at = parse_expiration(str(node["expiration"])) - ttl
                result.append(Written(at, arrived))
                return
            index = int(node.get("modifiedIndex", index)) + 1

    thread = threading.Thread(target=run, name="registry-watch", daemon=True)
    thread.start()

    def wait() -> Written | None:
        thread.join(timeout)
        return result[0] if result else None

    return wait
