"""Program: a failed bind is one line naming its option, and no traceback."""

from __future__ import annotations

import errno
import io
import sys

from twisted.application.internet import UDPServer
from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase

from tapkit.listening import ListenFailed, Program, named_failure, quiet_hook, reason_of

IN_USE = CannotListenError(
    "127.0.0.1", 9999, OSError(errno.EADDRINUSE, "Address already in use")
)


class Raises(Service):
    """A service whose start raises C{error}."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def privilegedStartService(self) -> None:
        raise self.error

    def startService(self) -> None:
        raise self.error


class PortInUse:
    """A reactor whose UDP port is taken."""

    def listenUDP(self, *args: object, **kwargs: object) -> None:
        raise IN_USE


class ReasonTests(SynchronousTestCase):
    """reason_of: why a bind failed, in lower case words."""

    def test_errno(self) -> None:
        """The errno of the socket error is told in the system's words."""
        self.assertEqual(reason_of(IN_USE), "address already in use")
        self.assertEqual(
            reason_of(OSError(errno.EACCES, "Permission denied")), "permission denied"
        )

    def test_no_errno(self) -> None:
        """Without an errno, the error's own text."""
        self.assertEqual(reason_of(CannotListenError("", 1, ValueError("odd"))), "odd")


class NamedFailureTests(SynchronousTestCase):
    """named_failure finds the listener an exception came out of."""

    def test_innermost_listener(self) -> None:
        """The option of the service the exception was raised in."""
        udp = UDPServer(
            9999,
            DatagramProtocol(),
            reactor=PortInUse(),
        )
        other = Service()
        try:
            udp.privilegedStartService()
        except CannotListenError as e:
            named = named_failure(e, [(other, "--other"), (udp, "--udp-port 9999")])
        assert named is not None
        self.assertEqual(str(named), "--udp-port 9999: address already in use")

    def test_not_a_listener(self) -> None:
        """None when no listener raised it."""
        self.assertIsNone(named_failure(IN_USE, [(Service(), "--x")]))


class ProgramTests(SynchronousTestCase):
    """Program reports a failed bind on one line, then lets it end the process."""

    def setUp(self) -> None:
        self.patch(sys, "excepthook", sys.excepthook)
        self.stderr = io.StringIO()

    def test_named_listener(self) -> None:
        """A CannotListenError from a named listener is one line with its option."""
        child = Raises(IN_USE)
        program = Program("prog", child, [(child, "--port 9999")], stderr=self.stderr)
        error = self.assertRaises(ListenFailed, program.startService)
        self.assertEqual(str(error), "--port 9999: address already in use")
        self.assertEqual(
            self.stderr.getvalue(), "prog: --port 9999: address already in use\n"
        )

    def test_listen_failed_passes_through(self) -> None:
        """A ListenFailed a listener raised itself is written as it is."""
        program = Program("prog", Raises(ListenFailed("--listen x", "why")))
        program.stderr = self.stderr
        self.assertRaises(ListenFailed, program.privilegedStartService)
        self.assertEqual(self.stderr.getvalue(), "prog: --listen x: why\n")

    def test_unnamed_listener(self) -> None:
        """A CannotListenError from elsewhere still gets one line with its port."""
        program = Program("prog", Raises(IN_USE), stderr=self.stderr)
        self.assertRaises(ListenFailed, program.startService)
        self.assertEqual(
            self.stderr.getvalue(), "prog: port 9999: address already in use\n"
        )

    def test_other_errors_are_untouched(self) -> None:
        """Anything but a failed bind propagates as it is, with nothing written."""
        program = Program("prog", Raises(RuntimeError("bug")), stderr=self.stderr)
        self.assertRaises(RuntimeError, program.startService)
        self.assertEqual(self.stderr.getvalue(), "")

    def test_quiet_hook(self) -> None:
        """The hook prints nothing for ListenFailed and defers for the rest."""
        seen: list[BaseException] = []
        hook = quiet_hook(lambda kind, value, tb: seen.append(value))
        hook(ListenFailed, ListenFailed("--x", "y"), None)
        error = RuntimeError("bug")
        hook(RuntimeError, error, None)
        self.assertEqual(seen, [error])
