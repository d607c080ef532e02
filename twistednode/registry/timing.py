# -*- test-case-name: tests.registry.test_timing -*-
"""What the node's registry calls cost: counts, failures and latency, per operation.

L{RequestStats} is plain bookkeeping kept by
L{twistednode.registry.backends.SelectedBackend}, which every call of the registry
and of the leased election goes through: a call is counted when it is made, a
failure by the exception's class name when it fails (a cancelled call is neither a
failure nor a duration: it is the caller going away), and the time to its answer,
on the reactor's clock, in buckets. A watch is counted, and its failures, but its
duration is not: it is a long-poll whose length is the time until something changes.

The buckets are cumulative counts ready for a Prometheus histogram (the metrics
part reads them when it is scraped; nothing here knows Prometheus).

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from attrs import Factory, define

#: Upper bounds of the latency buckets, in seconds: 1 ms doubling up to 4.096 s.
LATENCY_BUCKETS: tuple[float, ...] = tuple(0.001 * 2**power for power in range(13))
#: Operations whose duration is the time until a change, not a cost.
UNTIMED = frozenset({"watch"})


@define
class Latency:
    """One operation's answered calls: a count per bucket (the last is +Inf), the
    sum of their durations."""

    counts: list[int] = Factory(lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        """Count one call that took C{seconds}."""
        seconds = max(0.0, seconds)
        self.total += seconds
        for number, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.counts[number] += 1
                return
        self.counts[-1] += 1

    @property
    def count(self) -> int:
        """How many calls were observed."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """C{(upper bound, calls at or below it)} for every bucket, +Inf last."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, count in zip(
            (*LATENCY_BUCKETS, float("inf")), self.counts, strict=True
        ):
            running += count
            out.append((bound, running))
        return out


@define
class RequestStats:
    """The registry calls made, the failed ones and how long the answered ones took.

    @ivar requests: operation -> calls made.
    @ivar errors: (operation, exception class name) -> failed calls.
    @ivar latency: operation -> the durations of its answered calls (watch aside).
    """

    requests: dict[str, int] = Factory(dict)
    errors: dict[tuple[str, str], int] = Factory(dict)
    latency: dict[str, Latency] = Factory(dict)

    def started(self, operation: str) -> None:
        """Count a call of C{operation}."""
        self.requests[operation] = self.requests.get(operation, 0) + 1

    def answered(self, operation: str, seconds: float) -> None:
        """A call of C{operation} got its answer after C{seconds}."""
        if operation in UNTIMED:
            return
        latency = self.latency.get(operation)
        if latency is None:
            latency = self.latency[operation] = Latency()
        latency.observe(seconds)

    def failed(self, operation: str, error: BaseException, seconds: float) -> None:
        """A call of C{operation} failed with C{error} after C{seconds}."""
        label = (operation, type(error).__name__)
        self.errors[label] = self.errors.get(label, 0) + 1
        self.answered(operation, seconds)
