"""CPU and memory of running processes, read from Linux /proc.

CPU is the time the process's threads ran over a wall-clock window, as a percentage
of one core. It is read in nanoseconds from ``/proc/<pid>/task/*/schedstat`` (summed
over the live threads), because ``/proc/<pid>/stat`` counts in clock ticks (10 ms)
and an idle node uses only a few ms in ten seconds; without schedstat it falls back
to ``stat``. RSS is ``VmRSS`` from ``/proc/<pid>/status``. Used to compare an idle
node-discover peer with an idle clusternode.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from attrs import frozen

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@frozen
class ProcSample:
    """One process over one window: CPU % of one core, RSS at the end."""

    pid: int
    cpu_percent: float
    rss_bytes: int
    window_s: float


def cpu_seconds(pid: int) -> float:
    """CPU time of C{pid}'s live threads so far, in seconds (ns resolution)."""
    if not os.path.exists(f"/proc/{pid}/schedstat"):
        return stat_cpu_seconds(pid)
    total_ns = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                total_ns += int(f.read().split()[0])
        except FileNotFoundError:
            continue  # the thread ended meanwhile
    return total_ns / 1e9


def stat_cpu_seconds(pid: int) -> float:
    """User + system CPU time of C{pid} so far from /proc/<pid>/stat (10 ms steps)."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        stat = f.read()
    # The command name (field 2) is in parentheses and may hold spaces or ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of C{pid} (VmRSS), in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid} (a zombie or kernel thread?)")


def sample(
    pids: Sequence[int],
    seconds: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[ProcSample]:
    """Measure every pid over the same C{seconds}-long window."""
    start_cpu = {pid: cpu_seconds(pid) for pid in pids}
    start = clock()
    sleep(seconds)
    window = clock() - start
    end_cpu = {pid: cpu_seconds(pid) for pid in pids}
    return [
        ProcSample(
            pid=pid,
            cpu_percent=100.0 * (end_cpu[pid] - start_cpu[pid]) / window,
            rss_bytes=rss_bytes(pid),
            window_s=window,
        )
        for pid in pids
    ]
