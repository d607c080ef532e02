# -*- test-case-name: tests.tapkit.test_beat -*-
"""A repeating call on the beat: the exact multiples of its interval on the clock.

Twisted's C{LoopingCall} counts its calls from the instant it started, which is a
fraction of a millisecond after the time it was asked for; two loops with the
same interval then fall due a fraction of a millisecond apart, and the reactor
wakes up twice. L{OnTheBeat} sets every call for the multiple of the interval
itself (C{k * interval} on the clock), so every timer set for a beat (a node's
hellos, its checks, its keyring poll) falls due at the same instant and a node
wakes up once for all of them. On a node's wall clock the beats are the same
instants on every machine, too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from attrs import define, field
from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: A time this close (as a fraction of the interval) after a beat is that beat:
#: a timer set for a beat fires at it, and C{now / interval} may round just below.
_SAME_BEAT = 1e-6


def beat_after(now: float, interval: float) -> float:
    """The first beat after C{now}: the next multiple of C{interval}.

    A C{now} within a millionth of an interval of a beat counts as that beat, so
    the answer is the one after it.
    """
    if not interval > 0:
        raise ValueError("interval must be positive")
    return (math.floor(now / interval + _SAME_BEAT) + 1) * interval


def beat_at_or_after(when: float, interval: float, slack: float) -> float:
    """C{when} itself if a beat is at most C{slack} after it, else the next beat."""
    beat = math.ceil(when / interval - _SAME_BEAT) * interval
    return when if beat - when <= slack else beat


@define(eq=False)
class OnTheBeat:
    """Call C{function} on every beat of C{interval} seconds on C{clock}.

    A beat missed (the process was paused, or a call ran long) is skipped, as
    C{LoopingCall} skips them: the next call is on the next beat to come.
    """

    clock: IReactorTime
    interval: float
    function: Callable[[], object]
    _call: IDelayedCall | None = field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError("interval must be positive")

    @property
    def running(self) -> bool:
        """Whether a next call is set."""
        return self._call is not None

    def start(self, now: bool = False) -> None:
        """Call on every beat from the next one on (and at once if C{now})."""
        if self._call is not None:
            raise RuntimeError("already running")
        if now:
            self._schedule()
            self.function()
        else:
            self._schedule()

    def stop(self) -> None:
        """No more calls."""
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _schedule(self) -> None:
        now = self.clock.seconds()
        self._call = self.clock.callLater(
            beat_after(now, self.interval) - now, self._beat
        )

    def _beat(self) -> None:
        # The next beat is set before the call, so one that raises does not stop
        # the beat (the caller's function logs its own failures).
        self._schedule()
        self.function()
