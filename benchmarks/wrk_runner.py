"""Run wrk against an HTTP server and read its report (requests/s, p50, p99, errors).

Also reads the server's CPU use over the run from /proc and wrk's own from
C{RUSAGE_CHILDREN}, since wrk and the server share the machine's cores.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import time

from attrs import frozen

from benchmarks.procstats import cpu_seconds

#: A wrk script that PUTs C{value=<VALUE>} as a urlencoded form.
PUT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk", "put.lua")


@frozen
class WrkResult:
    """One wrk run against one server (latencies in ms, CPU in % of one core)."""

    server: str
    method: str
    connections: int
    threads: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    server_cpu_percent: float
    wrk_cpu_percent: float


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_LATENCY_LINE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([0-9.]+)(us|ms|s|m|h)\s*$", re.M)
_RPS_LINE = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.M)
_TOTAL_LINE = re.compile(r"^\s*(\d+) requests in ", re.M)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(output: str) -> tuple[float, float, float, int, int]:
    """From C{wrk --latency} output: requests/s, p50 ms, p99 ms, requests, errors.

    Errors are socket errors (connect, read, write, timeout) plus non-2xx/3xx answers.
    """
    rps = _RPS_LINE.search(output)
    total = _TOTAL_LINE.search(output)
    latencies = {
        m.group(1): float(m.group(2)) * _UNITS_MS[m.group(3)]
        for m in _LATENCY_LINE.finditer(output)
    }
    if rps is None or total is None or set(latencies) != {"50", "99"}:
        raise ValueError(f"cannot read wrk's output:\n{output}")
    errors = 0
    socket_errors = _SOCKET_ERRORS.search(output)
    if socket_errors is not None:
        errors += sum(int(n) for n in socket_errors.groups())
    non_2xx = _NON_2XX.search(output)
    if non_2xx is not None:
        errors += int(non_2xx.group(1))
    return (
        float(rps.group(1)),
        latencies["50"],
        latencies["99"],
        int(total.group(1)),
        errors,
    )


def run_wrk(
    server: str,
    url: str,
    pid: int,
    method: str,
    connections: int,
    threads: int,
    duration: float,
    value: str,
) -> WrkResult:
    """Run wrk once against C{url} and read the server's CPU use meanwhile."""
    threads = max(1, min(threads, connections))
    argv = ["wrk", "--latency", f"-t{threads}", f"-c{connections}"]
    argv += [f"-d{duration:g}s", "--timeout", "10s"]
    if method == "PUT":
        argv += ["-s", PUT_SCRIPT, url, "--", value]
    else:
        argv.append(url)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = cpu_seconds(pid)
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    window = time.monotonic() - start
    server_cpu = cpu_seconds(pid) - server_cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime + after.ru_stime) - (
        children.ru_utime + children.ru_stime
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}")
    rps, p50, p99, requests, errors = parse_wrk(done.stdout)
    return WrkResult(
        server,
        method,
        connections,
        threads,
        rps,
        p50,
        p99,
        requests,
        errors,
        100.0 * server_cpu / window,
        100.0 * wrk_cpu / window,
    )
