# -*- test-case-name: tests.discovery.test_settings -*-
"""Validated discovery settings (spec node-discover-wire.md §5).

Times are seconds as floats (node-discover's options are milliseconds). Use
L{make_settings} to get node-discover's defaults: C{masterTimeout} defaults to
C{nodeTimeout} when that is given, else 2 s, and the default weight is
L{default_weight} of the process start time. Every member of a cluster must use the
same intervals, timeouts and C{masters_required}.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import math
from typing import Final

from attrs import frozen

DEFAULT_HELLO_INTERVAL: Final = 1.0
DEFAULT_CHECK_INTERVAL: Final = 2.0
DEFAULT_NODE_TIMEOUT: Final = 2.0
#: How long after the bind our early election may first run (see membership.py).
DEFAULT_EARLY_DELAY: Final = 0.5


def default_weight(epoch_ms: int) -> float:
    """node-discover's default weight: C{-(ms / 10**digits(ms))}; older is heavier."""
    if isinstance(epoch_ms, bool) or not isinstance(epoch_ms, int) or epoch_ms <= 0:
        raise ValueError(f"epoch_ms must be a positive integer, got {epoch_ms!r}")
    digits: int = 10 ** len(str(epoch_ms))
    return -(epoch_ms / digits)


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


@frozen
class Settings:
    """Frozen, validated discovery settings; construct with L{make_settings}.

    @ivar hello_interval: seconds between hellos (fixed rate).
    @ivar check_interval: node-discover's check period; our first election runs no
        sooner than this after the bind (unless the early rule allows it).
    @ivar node_timeout: a silent non-master is removed after this.
    @ivar master_timeout: a silent master is removed after this.
    @ivar masters_required: how many masters the cluster aims for.
    @ivar weight: election rank, higher wins; finite.
    @ivar client: a client-only node sends no hellos and is never eligible.
    @ivar key: node-discover's legacy C{key}, or None.
    @ivar early_election: allow the registry-based early election.
    @ivar early_delay: the early election runs no sooner than this after the bind.
    """

    hello_interval: float
    check_interval: float
    node_timeout: float
    master_timeout: float
    masters_required: int
    weight: float
    client: bool = False
    key: str | None = None
    early_election: bool = True
    early_delay: float = DEFAULT_EARLY_DELAY

    def __attrs_post_init__(self) -> None:
        for name in ("hello_interval", "check_interval", "node_timeout"):
            _positive(name, getattr(self, name))
        _positive("master_timeout", self.master_timeout)
        if self.node_timeout < self.check_interval:
            raise ValueError(
                f"node_timeout ({self.node_timeout} s) must be >= check_interval "
                f"({self.check_interval} s), as node-discover requires"
            )
        if self.master_timeout < self.node_timeout:
            raise ValueError(
                f"master_timeout ({self.master_timeout} s) must be >= node_timeout "
                f"({self.node_timeout} s), as node-discover requires"
            )
        if self.hello_interval >= self.node_timeout:
            raise ValueError(
                f"hello_interval ({self.hello_interval} s) must be below node_timeout "
                f"({self.node_timeout} s), or peers time this node out between hellos"
            )
        if (
            isinstance(self.masters_required, bool)
            or not isinstance(self.masters_required, int)
            or self.masters_required < 1
        ):
            raise ValueError(
                f"masters_required must be an integer >= 1, got "
                f"{self.masters_required!r}"
            )
        if (
            isinstance(self.weight, bool)
            or not isinstance(self.weight, int | float)
            or not math.isfinite(self.weight)
        ):
            raise ValueError(f"weight must be a finite number, got {self.weight!r}")
        if not isinstance(self.client, bool):
            raise ValueError(f"client must be a boolean, got {self.client!r}")
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise ValueError("key must be a non-empty string or None")
        if not isinstance(self.early_election, bool):
            raise ValueError("early_election must be a boolean")
        if (
            isinstance(self.early_delay, bool)
            or not isinstance(self.early_delay, int | float)
            or not 0 <= self.early_delay <= self.check_interval
        ):
            raise ValueError(
                f"early_delay must be between 0 and check_interval "
                f"({self.check_interval} s), got {self.early_delay!r}"
            )


def make_settings(
    *,
    epoch_ms: int,
    hello_interval: float | None = None,
    check_interval: float | None = None,
    node_timeout: float | None = None,
    master_timeout: float | None = None,
    masters_required: int = 1,
    weight: float | None = None,
    client: bool = False,
    key: str | None = None,
    early_election: bool = True,
    early_delay: float | None = None,
) -> Settings:
    """Build L{Settings} with node-discover's defaults for what is not given.

    @param epoch_ms: the process start time in whole epoch milliseconds, used for the
        default weight (C{time.time_ns() // 1_000_000} at start, read by the caller).
    """
    check = DEFAULT_CHECK_INTERVAL if check_interval is None else check_interval
    node = DEFAULT_NODE_TIMEOUT if node_timeout is None else node_timeout
    if master_timeout is None:
        master_timeout = node
    if early_delay is None:
        early_delay = (
            min(DEFAULT_EARLY_DELAY, check)
            if isinstance(check, int | float) and not isinstance(check, bool)
            else DEFAULT_EARLY_DELAY
        )
    return Settings(
        hello_interval=DEFAULT_HELLO_INTERVAL
        if hello_interval is None
        else hello_interval,
        check_interval=check,
        node_timeout=node,
        master_timeout=master_timeout,
        masters_required=masters_required,
        weight=default_weight(epoch_ms) if weight is None else weight,
        client=client,
        key=key,
        early_election=early_election,
        early_delay=early_delay,
    )
