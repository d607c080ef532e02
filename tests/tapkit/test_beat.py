"""Tests for tapkit.beat: repeating calls on the exact multiples of an interval."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tapkit.beat import OnTheBeat, beat_after, beat_at_or_after


class BeatAfterTests(SynchronousTestCase):
    def test_the_next_multiple_of_the_interval(self) -> None:
        self.assertEqual(beat_after(1_000.37, 1.0), 1_001.0)
        self.assertEqual(beat_after(12.0, 5.0), 15.0)

    def test_a_time_on_a_beat_gives_the_one_after(self) -> None:
        self.assertEqual(beat_after(1_001.0, 1.0), 1_002.0)

    def test_a_beat_that_rounds_just_below_itself_still_counts(self) -> None:
        """0.1 * 3 is 0.30000000000000004 and 0.3 / 0.1 is 2.9999999999999996:
        a timer set for the third beat of 0.1 s must not be set again for it."""
        third = 0.1 * 3
        self.assertGreater(beat_after(third, 0.1), third + 0.05)
        self.assertGreater(beat_after(0.3, 0.1), 0.35)

    def test_at_or_after_keeps_a_time_within_slack_of_a_beat(self) -> None:
        self.assertEqual(beat_at_or_after(1_001.0, 1.0, 0.001), 1_001.0)
        self.assertEqual(beat_at_or_after(1_000.9995, 1.0, 0.001), 1_000.9995)
        self.assertEqual(beat_at_or_after(1_001.2, 1.0, 0.001), 1_002.0)

    def test_a_nonpositive_interval_is_refused(self) -> None:
        self.assertRaises(ValueError, beat_after, 1.0, 0.0)
        self.assertRaises(ValueError, OnTheBeat, Clock(), -1.0, lambda: None)


class OnTheBeatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(100.25)
        self.calls: list[float] = []

    def beat(self, interval: float = 1.0) -> OnTheBeat:
        beat = OnTheBeat(
            self.clock, interval, lambda: self.calls.append(self.clock.seconds())
        )
        self.addCleanup(beat.stop)
        return beat

    def test_calls_fall_on_the_multiples_of_the_interval(self) -> None:
        self.beat().start()
        for _ in range(16):
            self.clock.advance(0.25)
        self.assertEqual(self.calls, [101.0, 102.0, 103.0, 104.0])

    def test_start_now_calls_at_once_then_on_the_beat(self) -> None:
        self.beat().start(now=True)
        self.clock.advance(0.75)
        self.clock.advance(1.0)
        self.assertEqual(self.calls, [100.25, 101.0, 102.0])

    def test_two_beats_of_one_interval_fall_due_together(self) -> None:
        """Started at different instants, their calls are set for the same time:
        the reactor wakes once for both."""
        self.beat().start()
        self.clock.advance(0.3)
        self.beat().start()
        times = {call.getTime() for call in self.clock.getDelayedCalls()}
        self.assertEqual(times, {101.0})

    def test_a_late_wake_up_skips_the_missed_beats(self) -> None:
        self.beat().start()
        self.clock.advance(0.75)
        self.clock.advance(3.5)  # paused over three beats
        self.clock.advance(0.5)
        self.assertEqual(self.calls, [101.0, 104.5, 105.0])

    def test_stop_cancels_the_next_call(self) -> None:
        beat = self.beat()
        beat.start()
        self.assertTrue(beat.running)
        beat.stop()
        self.assertFalse(beat.running)
        self.clock.advance(5.0)
        self.assertEqual(self.calls, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_start_twice_is_refused(self) -> None:
        beat = self.beat()
        beat.start()
        self.assertRaises(RuntimeError, beat.start)

    def test_a_tenth_of_a_second_beat_does_not_fire_twice_per_beat(self) -> None:
        self.beat(0.1).start()
        for _ in range(100):
            self.clock.advance(0.01)
        self.assertEqual(len(self.calls), 10)
