"""Live rotation: the keyring file is re-read when it changes and on SIGHUP."""

from __future__ import annotations

import base64
import signal
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twistednode.trust.keyring import Keyring, KeyringError
from twistednode.trust.reload import KeyringFile, SighupReload

A = bytes(range(32))
B = bytes(range(32, 64))


def text(*keys: bytes) -> str:
    return "".join(base64.b64encode(k).decode() + "\n" for k in keys)


class KeyringFileTests(SynchronousTestCase):
    """KeyringFile polls on the injected clock and keeps the last good keys."""

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.write(A)
        self.clock = Clock()
        self.changes: list[Keyring] = []
        self.signature: Any = (1, 1, 1)
        self.file = KeyringFile(
            self.path,
            self.clock,
            self.changes.append,
            signature=lambda _path: self.signature,
        )
        self.file.startService()
        self.addCleanup(self.file.stopService)

    def write(self, *keys: bytes, raw: str | None = None) -> None:
        with open(self.path, "w") as f:
            f.write(text(*keys) if raw is None else raw)

    def test_reads_the_file_when_made(self) -> None:
        """The keys are there before the service starts."""
        self.assertEqual(self.file.keyring.keys, (A,))

    def test_a_changed_file_is_read_at_the_next_poll(self) -> None:
        """A new mtime: the file is re-read and the change reported once."""
        self.write(B, A)
        self.signature = (2, 1, 1)
        self.clock.advance(1.0)
        self.clock.advance(1.0)
        self.assertEqual([k.keys for k in self.changes], [(B, A)])

    def test_unchanged_signature_is_not_read(self) -> None:
        """No mtime change, no read (a poll costs one stat)."""
        self.write(B)
        self.clock.advance(5.0)
        self.assertEqual(self.changes, [])

    def test_reload_reads_at_once(self) -> None:
        """reload() (what SIGHUP calls) reads now, whatever the mtime says."""
        self.write(A, B)
        self.assertTrue(self.file.reload())
        self.assertEqual(self.changes[-1].keys, (A, B))

    def test_same_keys_are_not_a_change(self) -> None:
        """Re-reading identical keys reports nothing."""
        self.assertFalse(self.file.reload())
        self.assertEqual(self.changes, [])

    def test_broken_file_keeps_the_old_keys(self) -> None:
        """A half-written file is logged and ignored; the old keys stay in use."""
        self.write(raw="garbage\n")
        with capturedLogs() as events:
            self.assertFalse(self.file.reload())
        self.assertEqual(self.file.keyring.keys, (A,))
        self.assertEqual(self.changes, [])
        self.assertIn("line 1 is not base64", events[0]["error"])

    def test_a_missing_file_at_start_is_an_error(self) -> None:
        """A keyring file must exist when the node is made."""
        self.assertRaises(
            KeyringError, KeyringFile, self.mktemp(), self.clock, self.changes.append
        )


class SighupReloadTests(SynchronousTestCase):
    """SIGHUP reloads from the reactor thread; the old handler comes back."""

    def test_handler_installed_and_restored(self) -> None:
        """startService installs, the signal calls reload via callFromThread,
        stopService puts back what was there."""
        installed: dict[int, Any] = {signal.SIGHUP: "previous"}

        def install(signum: int, handler: Any) -> Any:
            previous = installed.get(signum)
            installed[signum] = handler
            return previous

        calls: list[Any] = []

        class Reactor:
            def callFromThread(self, f: Any, *args: Any) -> None:
                calls.append(f)

        reloads: list[int] = []
        service = SighupReload(lambda: reloads.append(1), Reactor(), install=install)
        service.startService()
        installed[signal.SIGHUP](signal.SIGHUP, None)
        self.assertEqual(len(calls), 1)
        calls[0]()
        self.assertEqual(reloads, [1])
        service.stopService()
        self.assertEqual(installed[signal.SIGHUP], "previous")
