"""The demo's child processes: ``twistd -n`` servers that never outlive the demo.

Every child runs in its own session (so a Ctrl-C in the terminal reaches only the
demo, which then stops the children in order) and, on Linux, with
``PR_SET_PDEATHSIG``: the kernel sends it SIGKILL when the demo dies, even by
SIGKILL. Children are started from the main thread only, because the kernel ties
that signal to the thread that forked.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


# Loaded before any fork: the child only makes the one call.
_LIBC = _load_libc()


def _die_with(parent: int) -> None:
    """In the child, between fork and exec: SIGKILL me when C{parent} dies.

    If it died before the signal was asked for (the window between fork and
    prctl), the kernel will never send it: die at once instead.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)


def twisted_command() -> list[str]:
    """How to run a Twisted plugin with the running Python.

    ``twistd -n --pidfile=`` when ``twistd`` is installed next to this interpreter
    (a venv, or the system's Python), else ``python -m twisted`` (``twist``).
    Both run in the foreground and write no pid file.
    """
    twistd = Path(sys.executable).parent / "twistd"
    if twistd.is_file():
        return [sys.executable, str(twistd), "-n", "--pidfile="]
    return [sys.executable, "-m", "twisted"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Child:
    """One child process, its output in a log file, and how it ended."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.ended: str | None = None
        """How it was ended on purpose ("killed (SIGKILL)", "stopped"), if it was."""
        self.started_at = 0.0
        """time.monotonic() when it was spawned."""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (the child must have been started)."""
        assert self._process is not None, f"{self.name} was never started"
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether it was started and has not exited (reaps it if it has)."""
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status once it has exited (negative: killed by that signal)."""
        return None if self._process is None else self._process.poll()

    def start(self) -> None:
        """Spawn it, in its own session, tied to our life (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("children are started from the main thread only")
        with open(self.log_path, "ab") as log:
            self.started_at = time.monotonic()
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.log_path.parent),
                env=self.env,
                start_new_session=True,
                preexec_fn=partial(_die_with, os.getpid()),
            )

    def signal(self, sig: int) -> None:
        """Send C{sig} to its process group while it runs."""
        if not self.running:
            return
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> int | None:
        """Wait up to C{timeout} seconds for it to exit; its status, or None."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, lines: int = 12) -> str:
        """The last lines of what it wrote, for an error message."""
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Children:
    """Every child of the demo, stopped together: clients first, servers last."""

    def __init__(self) -> None:
        self._children: list[Child] = []
        self._servers: list[Child] = []

    def add(self, child: Child, server: bool = False) -> Child:
        """Start C{child} and keep it for L{stop_all} (a server is stopped last)."""
        self._children.append(child)
        if server:
            self._servers.append(child)
        child.start()
        return child

    def __iter__(self) -> Iterator[Child]:
        return iter(self._children)

    @property
    def pids(self) -> list[int]:
        """The pid of every child ever started."""
        return [c.pid for c in self._children]

    def stop_all(self, grace: float = 10.0) -> None:
        """SIGTERM every running child (newest first), then SIGKILL what stays.

        A second Ctrl-C while waiting skips straight to SIGKILL.
        """
        try:
            clients = [c for c in self._children if c not in self._servers]
            for wave in (clients[::-1], self._servers):
                running = [c for c in wave if c.running]
                for child in running:
                    child.signal(signal.SIGTERM)
                deadline = time.monotonic() + grace
                for child in running:
                    child.wait(max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            pass
        finally:
            self.kill_all()

    def kill_all(self) -> None:
        """SIGKILL every child still running, and reap it."""
        for child in self._children:
            if child.running:
                child.signal(signal.SIGKILL)
                child.wait(10.0)
