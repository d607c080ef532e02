# -*- test-case-name: tests.tapkit.test_listening -*-
"""A port a twistd plugin cannot listen on is one line and exit status 1.

twistd binds in C{privilegedStartService} and C{twist} in C{startService}, both
before the reactor runs, and each lets an exception from there end the process
with a traceback. L{Program} is the service both run instead: it turns a failed
bind into L{ListenFailed}, writes C{PROGRAM: OPTION VALUE: REASON} to stderr and
logs it, and keeps Python from printing the traceback when the exception ends the
process (with exit status 1). The exception still propagates, so that twistd
removes its pid file and, when daemonizing, reports it to the parent process.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TextIO

from twisted.application.service import IService, MultiService
from twisted.internet.error import CannotListenError
from twisted.logger import Logger


class ListenFailed(Exception):
    """A listener could not bind; C{str()} is one line naming its option."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def reason_of(error: BaseException) -> str:
    """Why a bind failed, e.g. C{address already in use}, from its errno if any."""
    cause = getattr(error, "socketError", None) or error
    number = getattr(cause, "errno", None)
    if isinstance(number, int):
        return os.strerror(number).lower()
    return str(cause)


def named_failure(
    error: BaseException, listeners: Sequence[tuple[object, str]]
) -> ListenFailed | None:
    """The failure as the option of whichever of C{listeners} raised C{error}.

    C{listeners} pairs each listening service with what names it (C{--udp-port
    12345}). The service is found as the C{self} of a frame the exception passed
    through, the innermost first: services built by code we do not own report no
    more than a C{CannotListenError}, which does not say which option it was.
    """
    for frame, _ in reversed(list(traceback.walk_tb(error.__traceback__))):
        owner = frame.f_locals.get("self")
        for service, where in listeners:
            if owner is service:
                return ListenFailed(where, reason_of(error))
    return None


ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]


def quiet_hook(previous: ExceptHook) -> ExceptHook:
    """An excepthook silent on L{ListenFailed}, otherwise C{previous}."""

    def hook(
        kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        if isinstance(value, ListenFailed):
            return  # Program already said it on one line; Python still exits 1.
        previous(kind, value, tb)

    return hook


class Program(MultiService):
    """The service a twistd plugin hands to twistd or twist: C{service} and its
    listeners, with a failed bind reported on one line (see the module docstring).

    @ivar service: the service the plugin built.
    @ivar listeners: its listening services, each with the option that names it.
    @ivar stderr: where the line goes; None for the process's own stderr.
    """

    log = Logger()

    def __init__(
        self,
        name: str,
        service: IService,
        listeners: Sequence[tuple[object, str]] = (),
        stderr: TextIO | None = None,
    ) -> None:
        super().__init__()
        self.program = name
        self.service = service
        self.listeners = tuple(listeners)
        self.stderr = stderr
        service.setServiceParent(self)

    def privilegedStartService(self) -> None:
        with self._one_line():
            MultiService.privilegedStartService(self)

    def startService(self) -> None:
        with self._one_line():
            MultiService.startService(self)

    @contextmanager
    def _one_line(self) -> Iterator[None]:
        try:
            yield
        except ListenFailed as e:
            failed = e
        except CannotListenError as e:
            failed = named_failure(e, self.listeners) or ListenFailed(
                f"port {e.port}", reason_of(e)
            )
        except OSError as e:
            named = named_failure(e, self.listeners)
            if named is None:
                raise
            failed = named
        else:
            return
        line = f"{self.program}: {failed}"
        self.log.error("{line}", line=line, where=failed.where)
        stderr = self.stderr or sys.__stderr__ or sys.stderr
        stderr.write(line + "\n")
        stderr.flush()
        sys.excepthook = quiet_hook(sys.excepthook)
        raise failed from None
