"""Child processes of a test run: none outlives it, and their output can be awaited.

What every process fixture needs, in one place:

  - L{die_with_test}: the C{preexec_fn} that has the kernel SIGKILL the child when the
    test process dies, even by SIGKILL (Linux C{PR_SET_PDEATHSIG}). The kernel ties it
    to the thread that forked, so that part is only asked from the main thread. It also
    gives the child SIGINT and SIGQUIT back: a suite started in the background by a
    shell ignores both, every child would inherit that, and a test's "Ctrl-C" would do
    nothing.
  - L{Backstop}: the children still running, ended by an C{atexit} hook if a test
    forgot them.
  - L{signal_and_wait} and L{end}: a signal, a bounded wait, and SIGTERM escalated to
    SIGKILL.
  - L{OutputProcess}: a child whose output is read line by line in a thread, so a test
    can wait for a line (L{OutputProcess.wait_for}) while it runs.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Generic, TypeVar

_PR_SET_PDEATHSIG = 1
_T = TypeVar("_T")


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


# Loaded here, not in the child: between fork and exec only async-safe work is wise.
_LIBC = _load_libc()


def _default_interrupts() -> None:
    """In the child: SIGINT and SIGQUIT do what they do at a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def _die_with(parent: int) -> None:
    """In the child: get SIGKILL when the test process C{parent} dies (Linux).

    If it died before the signal was asked for (the window between fork and
    prctl), the kernel will never send it: die at once instead.
    """
    _default_interrupts()
    if _LIBC is not None and hasattr(_LIBC, "prctl"):
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)


def die_with_test() -> Callable[[], None]:
    """The C{preexec_fn} that ties a child to the test process (main thread only).

    From another thread it only restores SIGINT and SIGQUIT: the death signal would
    come when that thread ends, not the process; the L{Backstop} covers every other
    way out.
    """
    if threading.current_thread() is threading.main_thread():
        return partial(_die_with, os.getpid())
    return _default_interrupts


class Backstop(Generic[_T]):
    """The children still running, and what ends each of them at exit."""

    def __init__(self, end: Callable[[_T], object]) -> None:
        self._end = end
        self._live: set[_T] = set()
        self._lock = threading.Lock()
        atexit.register(self.end_all)

    def add(self, child: _T) -> None:
        """Remember C{child} until L{discard}."""
        with self._lock:
            self._live.add(child)

    def discard(self, child: _T) -> None:
        """Forget C{child} (it has ended)."""
        with self._lock:
            self._live.discard(child)

    def end_all(self) -> None:
        """End every child a test forgot (run at exit)."""
        with self._lock:
            leftovers = list(self._live)
        for child in leftovers:
            self._end(child)


def signal_and_wait(process: subprocess.Popen[bytes], sig: int, timeout: float) -> bool:
    """Send C{sig} unless it has exited, wait up to C{timeout}; whether it exited."""
    if process.poll() is not None:
        return True
    try:
        process.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def end(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM and wait; SIGKILL and wait if it does not exit in time."""
    if not signal_and_wait(process, signal.SIGTERM, timeout):
        signal_and_wait(process, signal.SIGKILL, timeout)


class OutputProcess:
    """A child whose stdout and stderr are read line by line as it runs.

    @param what: how error messages name its output ("the demo's output").
    @param timeout: the default bound of L{wait_for}.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
        what: str = "the output",
        timeout: float = 60.0,
    ) -> None:
        self.lines: list[str] = []
        self.what = what
        self.timeout = timeout
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            start_new_session=new_session,
            preexec_fn=die_with_test(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._changed:
                self.lines.append(raw.decode("utf-8", "replace"))
                self._changed.notify_all()

    @property
    def output(self) -> str:
        """Everything it printed so far."""
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float | None = None) -> str:
        """Wait until the output matches C{pattern} (multi-line); the output so far.

        Raises AssertionError, with the output, after C{timeout} seconds or once the
        process has exited and all its output is read without a match.
        """
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._changed:
            while not re.search(pattern, "".join(self.lines), re.M):
                left = deadline - time.monotonic()
                if left <= 0 or (
                    self.process.poll() is not None and not self._reader.is_alive()
                ):
                    raise AssertionError(
                        f"no {pattern!r} in {self.what}:\n" + "".join(self.lines)
                    )
                self._changed.wait(min(left, 0.5))
            return "".join(self.lines)

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for it to exit; its exit status."""
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        """SIGKILL it if it still runs (test cleanup)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
