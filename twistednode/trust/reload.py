# -*- test-case-name: tests.trust.test_reload -*-
"""Live keyring rotation: re-read the keyring file when it changes, or on SIGHUP.

L{KeyringFile} polls the file's modification time, size and inode on the injected
clock (a rename over the file, as editors and C{mv} do, changes the inode) and
re-reads it when any changes; L{KeyringFile.reload} re-reads it at once. A file that
no longer parses is logged and ignored: the node keeps sealing and opening with the
keys it had, so a half-written edit never cuts it off. L{SighupReload} calls a reload
from the reactor thread when the process gets SIGHUP.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tapkit.beat import OnTheBeat
from twistednode.trust.keyring import Keyring, KeyringError, read_keyring

#: Seconds between two looks at the keyring file's modification time.
POLL_INTERVAL = 1.0

_Signature = tuple[int, int, int]


def _signature(path: str) -> _Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@define(eq=False)
class KeyringFile(Service):
    """A keyring file, watched: C{on_change(keyring)} when its keys change.

    @ivar keyring: the keys last read successfully (read once when made).
    """

    log = Logger()

    path: str
    clock: IReactorTime
    on_change: Callable[[Keyring], None]
    interval: float = POLL_INTERVAL
    signature: Callable[[str], _Signature | None] = _signature
    keyring: Keyring = field(init=False)
    _seen: _Signature | None = field(default=None, init=False)
    _loop: OnTheBeat | None = field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self._seen = self.signature(self.path)
        self.keyring = read_keyring(self.path)  # KeyringError: the caller's to say

    def startService(self) -> None:
        super().startService()
        # On the exact multiples of the interval on the clock (tapkit.beat): with
        # the default 1 s, the same instants as the node's hello beat, so polling
        # costs no wake-up of its own.
        self._loop = OnTheBeat(self.clock, self.interval, self._poll)
        self._loop.start()

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None:
            self._loop.stop()
        self._loop = None

    def _poll(self) -> None:
        with self.log.failuresHandled(
            "while polling keyring file {path}", path=self.path
        ):
            seen = self.signature(self.path)
            if seen != self._seen:
                self._seen = seen
                self.reload()

    def reload(self) -> bool:
        """Re-read the file now; whether the keys in use changed."""
        try:
            keyring = read_keyring(self.path)
        except KeyringError as e:
            self.log.error(
                "keyring not reloaded, keeping keys {ids}: {error}",
                ids=",".join(self.keyring.ids()),
                error=str(e),
            )
            return False
        if keyring == self.keyring:
            return False
        self.keyring = keyring
        self.log.info(
            "keyring reloaded from {path}: sealing with {send}, accepting {ids}",
            path=self.path,
            send=keyring.ids()[0],
            ids=",".join(keyring.ids()),
        )
        self.on_change(keyring)
        return True


Installer = Callable[[int, Any], Any]


@define(eq=False)
class SighupReload(Service):
    """On SIGHUP, call C{reload} in the reactor thread (twistd's processes only:
    an application embedding a node decides about its own signals)."""

    reload: Callable[[], object]
    reactor: Any
    install: Installer = signal.signal
    _previous: Any = field(default=None, init=False)

    def startService(self) -> None:
        super().startService()
        self._previous = self.install(signal.SIGHUP, self._handle)

    def stopService(self) -> None:
        super().stopService()
        previous = self._previous
        self.install(signal.SIGHUP, signal.SIG_DFL if previous is None else previous)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.reactor.callFromThread(self.reload)
