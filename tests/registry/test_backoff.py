"""Tests for twistednode.registry.backoff."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twistednode.registry.backoff import Backoff


class BackoffTests(SynchronousTestCase):
    def test_grows_exponentially_to_the_maximum(self) -> None:
        """Un-jittered delays double from initial and stop at the maximum."""
        backoff = Backoff(initial=0.5, maximum=4.0, factor=2.0)
        self.assertEqual(
            [backoff.ceiling(n) for n in range(6)], [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
        )

    def test_jitter_bounds(self) -> None:
        """A draw of 0 gives (1 - jitter) of the ceiling, a draw of 1 all of it."""
        backoff = Backoff(initial=1.0, maximum=8.0, jitter=0.5)
        self.assertEqual(backoff.delay(2, 0.0), 2.0)
        self.assertEqual(backoff.delay(2, 1.0), 4.0)
        self.assertEqual(backoff.delay(2, 0.5), 3.0)

    def test_no_jitter(self) -> None:
        """With jitter 0 the draw does not matter."""
        backoff = Backoff(initial=1.0, maximum=8.0, jitter=0.0)
        self.assertEqual(backoff.delay(1, 0.0), backoff.delay(1, 0.99))

    def test_huge_attempt_does_not_overflow(self) -> None:
        """An attempt number far beyond float range still gives the maximum."""
        self.assertEqual(Backoff(maximum=7.0).ceiling(10**6), 7.0)

    def test_bad_parameters_rejected(self) -> None:
        """Non-positive delays, factors below 1, jitter outside [0,1] are errors."""
        for kwargs in (
            {"initial": 0.0},
            {"initial": float("nan")},
            {"maximum": float("inf")},
            {"factor": 0.5},
            {"jitter": 1.5},
            {"initial": 5.0, "maximum": 1.0},
        ):
            with self.assertRaises(ValueError, msg=str(kwargs)):
                Backoff(**kwargs)  # type: ignore[arg-type]

    def test_bad_inputs_rejected(self) -> None:
        """A negative attempt or a draw outside [0, 1] is a ValueError."""
        with self.assertRaises(ValueError):
            Backoff().delay(-1, 0.5)
        with self.assertRaises(ValueError):
            Backoff().delay(0, 1.5)

    @given(
        attempt=st.integers(min_value=0, max_value=10_000),
        draw=st.floats(min_value=0, max_value=1),
        jitter=st.floats(min_value=0, max_value=1),
    )
    def test_delay_within_bounds(
        self, attempt: int, draw: float, jitter: float
    ) -> None:
        """Every delay lies in [(1 - jitter) * ceiling, ceiling] and never above max."""
        backoff = Backoff(initial=0.1, maximum=30.0, jitter=jitter)
        delay = backoff.delay(attempt, draw)
        ceiling = backoff.ceiling(attempt)
        self.assertLessEqual(delay, ceiling * (1 + 1e-12))
        self.assertGreaterEqual(delay, ceiling * (1 - jitter) * (1 - 1e-12))
        self.assertLessEqual(ceiling, 30.0)

    @given(st.integers(min_value=0, max_value=200))
    def test_ceiling_is_monotonic(self, attempt: int) -> None:
        """A later attempt never waits less than an earlier one."""
        backoff = Backoff(initial=0.25, maximum=5.0, factor=1.7)
        self.assertLessEqual(backoff.ceiling(attempt), backoff.ceiling(attempt + 1))
