# -*- test-case-name: tests.registry.test_backoff -*-
"""
Exponential backoff with jitter, as a pure value.

The caller keeps the attempt number and supplies the random draw, so the delay is a
plain function of its inputs: C{Backoff().delay(attempt, draw)}. Jitter spreads the
retries of many nodes that lost etcd at the same moment, so they do not all come
back in the same instant.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import math

from attrs import field, frozen


def _positive(instance: object, attribute: object, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"backoff delays must be finite and > 0, not {value!r}")


def _factor(instance: object, attribute: object, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 1):
        raise ValueError(f"backoff factor must be finite and >= 1, not {value!r}")


def _fraction(instance: object, attribute: object, value: float) -> None:
    if not (isinstance(value, int | float) and 0 <= value <= 1):
        raise ValueError(f"backoff jitter must be between 0 and 1, not {value!r}")


@frozen
class Backoff:
    """
    Delays that grow by C{factor} from C{initial} up to C{maximum}.

    The attempt-th delay (0-based) is C{min(maximum, initial * factor ** attempt)}
    scaled down by up to C{jitter} of itself: with the default C{jitter=0.5} it lies
    between half and all of the un-jittered delay ("equal jitter"), so a retry never
    comes much earlier than planned but the herd is spread.
    """

    initial: float = field(default=0.25, validator=_positive)
    maximum: float = field(default=5.0, validator=_positive)
    factor: float = field(default=2.0, validator=_factor)
    jitter: float = field(default=0.5, validator=_fraction)

    def __attrs_post_init__(self) -> None:
        if self.maximum < self.initial:
            raise ValueError(
                f"backoff maximum {self.maximum!r} is below initial {self.initial!r}"
            )

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay of the attempt-th retry (0-based)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, not {attempt!r}")
        # Compare in the log domain so a huge attempt number cannot overflow.
        if attempt * math.log(self.factor) >= math.log(self.maximum / self.initial):
            return self.maximum
        return min(self.maximum, self.initial * self.factor**attempt)

    def delay(self, attempt: int, draw: float) -> float:
        """
        The delay before the attempt-th retry, given C{draw} uniform in [0, 1).

        C{draw=0} gives the shortest delay, values near 1 the full ceiling.
        """
        if not 0 <= draw <= 1:
            raise ValueError(f"draw must be in [0, 1], not {draw!r}")
        ceiling = self.ceiling(attempt)
        return ceiling * (1 - self.jitter + self.jitter * draw)
