"""Process fixtures: real etcd 3.4 (one member or a cluster) and minietcd under twistd.

Every fixture is synchronous: it starts a subprocess on 127.0.0.1, polls it with urllib
until it answers (bounded waits), and raises L{ServerStartError} with the captured
output of the process if it does not come up. Nothing is left behind: C{stop()}
terminates the process (SIGKILL after a grace period) and removes its temporary files,
the process dies with the test process, and an C{atexit} hook stops whatever a test
forgot (L{tests.harness.childprocess}). L{ManagedProcess} is the base to build other
fixtures on (L{tests.harness.clusternodes.ClusterNodeProcess} is one).

From a trial test::

    from tests.harness.servers import MiniEtcdProcess, RealEtcd, shared_real_etcd

    class RegistryIntegrationTests(TestCase):
        def setUp(self) -> None:
            self.etcd = RealEtcd().start()          # skips if etcd is not installed
            self.addCleanup(self.etcd.stop)
            self.minietcd = MiniEtcdProcess().start()
            self.addCleanup(self.minietcd.stop)

        def test_something(self) -> None:
            url = self.etcd.url                    # "http://127.0.0.1:<port>"

or as a context manager (C{with RealEtcd() as etcd: ...}). C{RealEtcdCluster(size=3)}
starts a cluster whose C{members} can be stopped, killed and started again one by one
(the data dir survives C{kill()} and C{terminate()}; only C{stop()} removes it).

Tests that only need I{a} server and leave the keys they use under their own unique
prefix can share one per test process: C{shared_real_etcd()} and C{shared_minietcd()}
start it on first use and stop it at exit. Do not stop a shared instance.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self, TypeVar

from twisted.trial.unittest import SkipTest

from tests.harness.childprocess import Backstop, die_with_test, end, signal_and_wait
from tests.harness.requirements import require_binary

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.05


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerStartError(RuntimeError):
    """A server process exited or did not answer in time; the message has its output."""


def _temp_root() -> str:
    """Prefer a tmpfs (etcd fsyncs every write) and fall back to the default tmp dir."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return shm
    return tempfile.gettempdir()


def _answers(url: str, ok: Callable[[int], bool]) -> bool:
    """Whether a GET of C{url} gets a response whose status satisfies C{ok}."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return ok(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return ok(error.code)
    except (OSError, ValueError):
        return False


def _state(url: str) -> str | None:
    """The raft state a member reports in /v2/stats/self, or None if it does not."""
    try:
        with urllib.request.urlopen(url + "/v2/stats/self", timeout=2) as response:
            state = json.load(response).get("state")
    except (OSError, ValueError):
        return None
    return state if isinstance(state, str) else None


class ManagedProcess:
    """A subprocess with a scratch dir, an output log, a readiness probe and cleanup.

    A subclass gives C{label}, C{_argv()} and C{_ready_url()} (and C{_is_ready} if
    200 is not the answer that means ready).
    """

    label = "server"

    def __init__(self) -> None:
        self.workdir = tempfile.mkdtemp(
            prefix=f"twistednode-{self.label}-", dir=_temp_root()
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = os.path.join(self.workdir, "output.log")

    # -- to be provided by subclasses ------------------------------------------------

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ready_url(self) -> str:
        raise NotImplementedError

    def _is_ready(self, status: int) -> bool:
        return status == 200

    # -- lifecycle -------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """Whether the process has been started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        try:
            with open(self._log_path, "rb") as log:
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def launch(self) -> None:
        """Start the process without waiting for it to answer."""
        if self.running:
            raise RuntimeError(f"{self.label} is already running")
        with open(self._log_path, "ab") as log:
            self._process = subprocess.Popen(
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=die_with_test(),
            )
        _backstop.add(self)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll until the readiness URL answers; else raise L{ServerStartError}."""
        deadline = time.monotonic() + timeout
        url = self._ready_url()
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                output = self._give_up()
                raise ServerStartError(
                    f"{self.label} exited (code {code}) before answering {url}; "
                    f"command {self._argv()!r}; output:\n{output}"
                )
            if _answers(url, self._is_ready):
                return
            if time.monotonic() > deadline:
                output = self._give_up()
                raise ServerStartError(
                    f"{self.label} did not answer {url} within {timeout:.0f}s; "
                    f"command {self._argv()!r}; output:\n{output}"
                )
            time.sleep(_POLL_INTERVAL)

    def _give_up(self) -> str:
        """Stop a process that failed to start, remove its files, return its output."""
        output = self.output()[-4000:]
        self.stop()
        return output

    def start(self) -> Self:
        """Start the process and wait until it answers; return C{self}."""
        self.launch()
        self.wait_ready()
        return self

    def terminate(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait, SIGKILL if it does not exit; keep the scratch dir."""
        if self._process is not None:
            end(self._process, timeout)
        _backstop.discard(self)

    def pause(self) -> None:
        """SIGSTOP the process: a hung host, whose sockets stay open but silent."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused process."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the process (a crash) and reap it; keep the scratch dir."""
        if self._process is not None:
            signal_and_wait(self._process, signal.SIGKILL, STOP_TIMEOUT)
        _backstop.discard(self)

    def stop(self) -> None:
        """Terminate the process and remove its scratch dir (data and logs)."""
        self.terminate()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_backstop: Backstop[ManagedProcess] = Backstop(lambda process: process.stop())


class RealEtcd(ManagedProcess):
    """Debian's C{/usr/bin/etcd} (3.4) as one member of a cluster on 127.0.0.1.

    Alone (the default) it is a single-member cluster. C{RealEtcdCluster} builds members
    that share one C{initial_cluster}. C{url} is the client URL, e.g.
    C{http://127.0.0.1:41235} (C{client_host} moves it to another local address, such
    as a test bridge's); C{peer_url} is the peer URL, always on 127.0.0.1.
    """

    label = "etcd"

    def __init__(
        self,
        *,
        enable_v2: bool = True,
        name: str = "default",
        client_port: int | None = None,
        peer_port: int | None = None,
        initial_cluster: str | None = None,
        cluster_token: str | None = None,
        extra_args: Sequence[str] = (),
        client_host: str = "127.0.0.1",
    ) -> None:
        self.binary = require_binary("etcd", "etcd-server")
        super().__init__()
        self.enable_v2 = enable_v2
        self.name = name
        self.client_port = client_port if client_port is not None else free_port()
        self.peer_port = peer_port if peer_port is not None else free_port()
        self.url = f"http://{client_host}:{self.client_port}"
        self.peer_url = f"http://127.0.0.1:{self.peer_port}"
        self.initial_cluster = initial_cluster or f"{name}={self.peer_url}"
        self.cluster_token = cluster_token or f"tn-{os.getpid()}-{self.client_port}"
        self.data_dir = os.path.join(self.workdir, "data")
        self.extra_args = list(extra_args)

    def _argv(self) -> list[str]:
        return [
            self.binary,
            "--name",
            self.name,
            "--data-dir",
            self.data_dir,
            "--listen-client-urls",
            self.url,
            "--advertise-client-urls",
            self.url,
            "--listen-peer-urls",
            self.peer_url,
            "--initial-advertise-peer-urls",
            self.peer_url,
            "--initial-cluster",
            self.initial_cluster,
            "--initial-cluster-token",
            self.cluster_token,
            "--initial-cluster-state",
            "new",
            f"--enable-v2={'true' if self.enable_v2 else 'false'}",
            "--log-level",
            "warn",
            "--logger",
            "zap",
            *self.extra_args,
        ]

    def _ready_url(self) -> str:
        return self.url + "/health"


class RealEtcdCluster:
    """C{size} real etcd members on 127.0.0.1 forming one cluster.

    C{members} are L{RealEtcd} objects: each can be C{terminate()}d or C{kill()}ed and
    C{start()}ed again (it rejoins with its data dir). C{urls} lists the client URLs.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        enable_v2: bool = True,
        extra_args: Sequence[str] = (),
        client_host: str = "127.0.0.1",
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one member")
        ports = [(free_port(), free_port()) for _ in range(size)]
        names = [f"m{i}" for i in range(size)]
        initial = ",".join(
            f"{name}=http://127.0.0.1:{peer}"
            for name, (_, peer) in zip(names, ports, strict=True)
        )
        token = f"tn-cluster-{os.getpid()}-{ports[0][0]}"
        self.members = [
            RealEtcd(
                enable_v2=enable_v2,
                name=name,
                client_port=client,
                peer_port=peer,
                initial_cluster=initial,
                cluster_token=token,
                extra_args=extra_args,
                client_host=client_host,
            )
            for name, (client, peer) in zip(names, ports, strict=True)
        ]

    @property
    def urls(self) -> list[str]:
        """The client URLs of all members, running or not."""
        return [member.url for member in self.members]

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        """Launch all members at once (they need each other to elect); wait for all."""
        try:
            for member in self.members:
                member.launch()
            for member in self.members:
                member.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def leader(self, timeout: float = START_TIMEOUT) -> RealEtcd:
        """The running member that reports itself leader, once there is one.

        After the leader is killed or stopped, this waits for the others to elect a new
        one (etcd's default election timeout is one second).
        """
        deadline = time.monotonic() + timeout
        while True:
            for member in self.members:
                if member.running and _state(member.url) == "StateLeader":
                    return member
            if time.monotonic() > deadline:
                raise ServerStartError(f"no member became leader within {timeout:.0f}s")
            time.sleep(_POLL_INTERVAL)

    def stop(self) -> None:
        """Stop every member and remove all data dirs."""
        for member in self.members:
            member.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def twistd_path() -> str:
    """The C{twistd} script installed next to the running Python."""
    return os.path.join(os.path.dirname(sys.executable), "twistd")


class MiniEtcdProcess(ManagedProcess):
    """Our minietcd: C{twistd -n minietcd --listen tcp:<port>:interface=127.0.0.1}.

    C{host} moves the listener to another local address, and C{prefix} runs it
    elsewhere (C{ip netns exec NAME}: in a test's network namespace).
    """

    label = "minietcd"

    def __init__(
        self,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.port = port if port is not None else free_port()
        self.host = host
        self.prefix = list(prefix)
        self.url = f"http://{host}:{self.port}"
        self.extra_args = list(extra_args)

    def _argv(self) -> list[str]:
        return [
            *self.prefix,
            twistd_path(),
            "-n",
            "--pidfile=",
            "minietcd",
            "--listen",
            f"tcp:{self.port}:interface={self.host}",
            *self.extra_args,
        ]

    def _ready_url(self) -> str:
        return self.url + "/version"


_T = TypeVar("_T", bound=ManagedProcess)
_shared: dict[str, ManagedProcess | BaseException] = {}
_shared_lock = threading.Lock()


def shared_instance(kind: str, factory: Callable[[], _T]) -> _T:
    """The process-wide server called C{kind}, made by C{factory} (which starts it).

    A failure to start is remembered and raised again (as a new exception of the same
    meaning) on every later call, so a broken server costs one start timeout, not one
    per test. A missing binary stays a skip (or a failure in CI).
    """
    with _shared_lock:
        found = _shared.get(kind)
        if found is None:
            try:
                found = factory()
            except BaseException as error:
                _shared[kind] = error
                raise
            _shared[kind] = found
        if isinstance(found, SkipTest):
            raise SkipTest(str(found))
        if isinstance(found, BaseException):
            raise ServerStartError(f"the shared {kind} failed to start: {found}")
        if not found.running:
            raise ServerStartError(
                f"the shared {kind} exited; output:\n{found.output()[-4000:]}"
            )
        return found  # type: ignore[return-value]


def shared_real_etcd() -> RealEtcd:
    """One real etcd (v2 enabled) per test process, started on first use."""
    return shared_instance("etcd", lambda: RealEtcd().start())


def shared_minietcd() -> MiniEtcdProcess:
    """One minietcd per test process, started on first use."""
    return shared_instance("minietcd", lambda: MiniEtcdProcess().start())
