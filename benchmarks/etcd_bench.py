"""minietcd against real etcd 3.4, side by side in one run.

Run from the repository root (needs /usr/bin/etcd, wrk, and for ``--profile-dir``
py-spy next to the Python or on the PATH)::

    python -m benchmarks.etcd_bench                      # everything, 5 s per wrk run
    python -m benchmarks.etcd_bench --duration 10 --repeat 3 --json result.json
    python -m benchmarks.etcd_bench --only fanout --fanout-runs 10
    python -m benchmarks.etcd_bench --only wrk --profile-dir /tmp/prof

It starts one real etcd (temporary data dir on /dev/shm, ``--enable-v2=true``) and one
minietcd (``twistd -n minietcd``), both on 127.0.0.1, and measures, alternating between
the two so that both see the same machine load:

  - ``rss``: VmRSS of each fresh server, then after writing N keys of B bytes;
  - ``fanout``: W long-poll watchers (``?wait=true``) on one key, one PUT: the time
    from sending the PUT until the last watcher has its whole answer (CLOCK_MONOTONIC;
    every watcher is registered first: its headers arrived and
    ``/v2/stats/store`` counts it);
  - ``wrk``: GET and PUT of one key over 1, 10 and 50 keep-alive connections with
    ``wrk --latency``: requests/s, p50, p99, and the server's CPU (% of one core).

Then one table with both servers, minietcd/etcd ratios and PASS/FAIL for the goals of
DESIGN.md. With ``--profile-dir`` it then samples minietcd with py-spy under GET and PUT
(50 connections) and under the fan-out, and prints where its CPU time goes, layer by
layer (stdlib and zope frames are charged to the layer that called them).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from importlib import metadata
from typing import Any

from attrs import asdict, frozen

from benchmarks.longpoll_fanout import FanOutResult, fan_out, wait_watchers
from benchmarks.procstats import rss_bytes
from benchmarks.pyspy_layers import Profile, analyse, print_profile, profiling
from benchmarks.wrk_runner import WrkResult, run_wrk
from tests.harness.servers import MiniEtcdProcess, RealEtcd

#: The key of the GET and PUT loads.
KEY = "bench"

#: The numbers of DESIGN.md ("Numbers to beat"): etcd 3.4 on this kind of machine.
ANCHORS = {
    "get_rps_c50": 60_000.0,
    "put_rps_c50": 26_000.0,
    "fanout_ms": 56.0,
    "rss_mb": 39.0,
}
#: The goals: minietcd/etcd ratio bounds, measured side by side.
MIN_THROUGHPUT_RATIO = 0.1
MAX_FANOUT_RATIO = 2.0
MAX_RSS_RATIO = 1.0

SERVERS = ("etcd", "minietcd")


# -- memory ---------------------------------------------------------------------


@frozen
class MemoryResult:
    """RSS of a fresh server and after writing C{keys} keys of C{value_bytes}."""

    server: str
    keys: int
    value_bytes: int
    fresh_rss_mb: float
    rss_mb: float
    write_s: float


def _value(index: int, size: int) -> str:
    """A deterministic, incompressible-looking value of C{size} [a-z0-9] chars."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    state = index * 2654435761 + 1
    out = []
    for _ in range(size):
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append(alphabet[(state >> 33) % len(alphabet)])
    return "".join(out)


def fill(server: str, port: int, pid: int, keys: int, size: int) -> MemoryResult:
    """Write C{keys} keys over one keep-alive connection; read RSS before and after."""
    fresh = rss_bytes(pid)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    start = time.monotonic()
    try:
        for i in range(keys):
            body = "value=" + _value(i, size)
            connection.request("PUT", f"/v2/keys/rss/k{i:06d}", body, headers)
            response = connection.getresponse()
            response.read()
            if response.status not in (200, 201):
                raise RuntimeError(f"{server}: PUT answered {response.status}")
    finally:
        connection.close()
    took = time.monotonic() - start
    time.sleep(1.0)  # let a Go GC cycle or allocator settle a little
    return MemoryResult(server, keys, size, fresh / 1e6, rss_bytes(pid) / 1e6, took)


# -- the run ----------------------------------------------------------------------


@frozen
class Report:
    """Everything one run measured (the JSON output is this, as a dict)."""

    config: dict[str, Any]
    environment: dict[str, Any]
    wrk: list[WrkResult]
    fanout: list[FanOutResult]
    memory: list[MemoryResult]
    goals: list[dict[str, Any]]
    profiles: list[Profile]


def _put(port: int, key: str, value: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "PUT",
            f"/v2/keys/{key}",
            f"value={value}",
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = connection.getresponse()
        response.read()
        if response.status not in (200, 201):
            raise RuntimeError(f"PUT /v2/keys/{key} answered {response.status}")
    finally:
        connection.close()


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _median_wrk(runs: Sequence[WrkResult]) -> WrkResult:
    """Each figure the median over repeated runs of one configuration."""
    first = runs[0]
    med = statistics.median
    return WrkResult(
        first.server,
        first.method,
        first.connections,
        first.threads,
        med(r.requests_per_s for r in runs),
        med(r.p50_ms for r in runs),
        med(r.p99_ms for r in runs),
        sum(r.requests for r in runs),
        sum(r.errors for r in runs),
        med(r.server_cpu_percent for r in runs),
        med(r.wrk_cpu_percent for r in runs),
    )


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(*argv: str) -> str:
    done = subprocess.run(["git", "-C", REPO, *argv], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "?"


def minietcd_source(rev: str | None) -> str:
    """Which minietcd runs: a revision's, or the working tree (and whether edited)."""
    if rev is not None:
        return f"{rev} ({_git('rev-parse', '--short', rev)})"
    edited = _git("status", "--porcelain", "--", "minietcd")
    head = _git("rev-parse", "--short", "HEAD")
    return f"working tree at {head}" + (" with minietcd/ edited" if edited else "")


@contextlib.contextmanager
def minietcd_at(rev: str | None) -> Iterator[None]:
    """Within: C{minietcd} imports from revision C{rev} (via PYTHONPATH), if given."""
    if rev is None:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="etcd-bench-minietcd-") as tree:
        archive = subprocess.run(
            ["git", "-C", REPO, "archive", rev, "minietcd"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = tree + (os.pathsep + before if before else "")
        try:
            yield
        finally:
            if before is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = before


def _environment(rev: str | None) -> dict[str, Any]:
    etcd_version = subprocess.run(
        ["/usr/bin/etcd", "--version"], capture_output=True, text=True
    ).stdout.split("\n")[0]
    return {
        "etcd": etcd_version,
        "python": platform.python_version(),
        "twisted": metadata.version("twisted"),
        "klein": metadata.version("klein"),
        "cpus": os.cpu_count(),
        "load_at_start": _load(),
        "etcd_data_dir": "tmpfs (/dev/shm)" if os.path.isdir("/dev/shm") else "tmp",
        "minietcd": minietcd_source(rev),
    }


@frozen
class Target:
    """A running server under test."""

    name: str
    url: str
    port: int
    pid: int

    @property
    def key_url(self) -> str:
        return f"{self.url}/v2/keys/{KEY}"


def _target(name: str, process: RealEtcd | MiniEtcdProcess) -> Target:
    pid = process.pid
    if pid is None:
        raise RuntimeError(f"{name} is not running")
    return Target(name, process.url, int(process.url.rsplit(":", 1)[1]), pid)


def run(args: argparse.Namespace) -> Report:
    """Start both servers, run the chosen sections, stop both (always)."""
    _raise_fd_limit(args.watchers + 256)
    environment = _environment(args.minietcd_rev)
    processes: list[RealEtcd | MiniEtcdProcess] = []
    wrk_results: list[WrkResult] = []
    fanouts: list[FanOutResult] = []
    memory: list[MemoryResult] = []
    profiles: list[Profile] = []
    with contextlib.ExitStack() as stack:
        # The revision's tree must outlive the server (it imports as it goes).
        stack.enter_context(minietcd_at(args.minietcd_rev))
        processes.append(RealEtcd())
        stack.callback(processes[0].stop)
        processes.append(MiniEtcdProcess())
        stack.callback(processes[1].stop)
        for process in processes:
            process.launch()
        for process in processes:
            process.wait_ready()
        targets = [_target(name, p) for name, p in zip(SERVERS, processes, strict=True)]
        for target in targets:
            print(f"{target.name}: pid {target.pid}, {target.url}")
        print(f"minietcd: {environment['minietcd']}")
        print(f"load average at start: {environment['load_at_start']}")
        sections = set(args.only.split(","))
        if "rss" in sections:
            memory = measure_memory(targets, args.keys, args.size)
        if "fanout" in sections:
            fanouts = measure_fanouts(targets, args.watchers, args.fanout_runs)
        if "wrk" in sections:
            wrk_results = measure_wrk(targets, args)
        if args.profile_dir:
            profiles = profile_minietcd(targets[1], args)
    goals = evaluate(wrk_results, fanouts, memory)
    config = {k: v for k, v in vars(args).items() if k != "json"}
    environment["load_at_end"] = _load()
    return Report(config, environment, wrk_results, fanouts, memory, goals, profiles)


def measure_memory(
    targets: Sequence[Target], keys: int, size: int
) -> list[MemoryResult]:
    """RSS of each (fresh) server before and after writing C{keys} keys."""
    results = []
    for t in targets:
        result = fill(t.name, t.port, t.pid, keys, size)
        results.append(result)
        print(f"rss {t.name}: {result.rss_mb:.1f} MB ({result.write_s:.1f} s to write)")
    return results


def measure_fanouts(
    targets: Sequence[Target], watchers: int, runs: int
) -> list[FanOutResult]:
    """C{runs} fan-outs of C{watchers} per server, alternating between servers."""
    results = []
    for number in range(runs):
        for t in targets:
            result = fan_out(t.name, t.url, t.port, watchers, f"v{number}", t.pid)
            results.append(result)
            print(
                f"fan-out {t.name} run {number + 1}: all answered in "
                f"{result.all_ms:.1f} ms, load {_load()}"
            )
            wait_watchers(t.url, 0, 30.0)
    return results


def measure_wrk(targets: Sequence[Target], args: argparse.Namespace) -> list[WrkResult]:
    """GET and PUT over each connection count; each server in turn, C{repeat} times."""
    value = "x" * args.put_bytes
    for t in targets:
        _put(t.port, KEY, value)
        for method in ("GET", "PUT"):  # warm-up
            run_wrk(t.name, t.key_url, t.pid, method, 10, args.threads, 1.0, value)
    results = []
    for method in ("GET", "PUT"):
        for connections in args.connections:
            runs: dict[str, list[WrkResult]] = {t.name: [] for t in targets}
            for _ in range(args.repeat):
                for t in targets:
                    result = run_wrk(
                        t.name,
                        t.key_url,
                        t.pid,
                        method,
                        connections,
                        args.threads,
                        args.duration,
                        value,
                    )
                    runs[t.name].append(result)
            for t in targets:
                result = _median_wrk(runs[t.name])
                results.append(result)
                print(
                    f"wrk {method} c={connections} {t.name}: "
                    f"{result.requests_per_s:,.0f} req/s, load {_load()}"
                )
    return results


def profile_minietcd(target: Target, args: argparse.Namespace) -> list[Profile]:
    """Record py-spy profiles of minietcd under GET, PUT (50 conns) and fan-out."""
    os.makedirs(args.profile_dir, exist_ok=True)
    value = "x" * args.put_bytes
    profiles = []
    for method in ("GET", "PUT"):
        path = os.path.join(args.profile_dir, f"minietcd-{method.lower()}-c50.txt")
        with profiling(target.pid, path, args.profile_rate):
            run_wrk(
                target.name,
                target.key_url,
                target.pid,
                method,
                50,
                args.threads,
                args.duration,
                value,
            )
        profiles.append(analyse(f"{method} c=50", [path]))
    paths = []
    for number in range(args.profile_fanouts):
        path = os.path.join(args.profile_dir, f"minietcd-fanout-{number}.txt")
        fan_out(
            target.name,
            target.url,
            target.port,
            args.watchers,
            f"p{number}",
            target.pid,
            before_put=profiling(target.pid, path, args.profile_fanout_rate),
        )
        wait_watchers(target.url, 0, 30.0)
        paths.append(path)
    profiles.append(analyse(f"fan-out of {args.watchers}", paths))
    return profiles


def _per_cpu_s(result: WrkResult) -> float:
    """Requests per second of server CPU: throughput with the CPU share factored out."""
    share = result.server_cpu_percent / 100.0
    return result.requests_per_s / share if share else 0.0


def _ratio(mini: float, etcd: float) -> float:
    return mini / etcd if etcd else float("inf")


def _find(results: Sequence[WrkResult], server: str, method: str, c: int) -> WrkResult:
    for result in results:
        if (result.server, result.method, result.connections) == (server, method, c):
            return result
    raise KeyError((server, method, c))


def _fanout_median(fanouts: Sequence[FanOutResult], server: str) -> float:
    return statistics.median(r.all_ms for r in fanouts if r.server == server)


def evaluate(
    wrk_results: Sequence[WrkResult],
    fanouts: Sequence[FanOutResult],
    memory: Sequence[MemoryResult],
) -> list[dict[str, Any]]:
    """PASS/FAIL for each goal of DESIGN.md that this run measured."""
    goals: list[dict[str, Any]] = []

    def goal(name: str, ratio: float, bound: float, at_least: bool) -> None:
        ok = ratio >= bound if at_least else ratio <= bound
        rule = f"minietcd/etcd {'>=' if at_least else '<='} {bound:g}"
        goals.append({"goal": name, "rule": rule, "ratio": ratio, "pass": ok})

    for method in ("GET", "PUT"):
        with contextlib.suppress(KeyError):
            mini = _find(wrk_results, "minietcd", method, 50).requests_per_s
            etcd = _find(wrk_results, "etcd", method, 50).requests_per_s
            goal(
                f"{method} req/s, 50 conns",
                _ratio(mini, etcd),
                MIN_THROUGHPUT_RATIO,
                True,
            )
    if fanouts:
        mini = _fanout_median(fanouts, "minietcd")
        etcd = _fanout_median(fanouts, "etcd")
        goal("fan-out, all answered", _ratio(mini, etcd), MAX_FANOUT_RATIO, False)
    if memory:
        by = {m.server: m.rss_mb for m in memory}
        ratio = _ratio(by["minietcd"], by["etcd"])
        goal(f"RSS, {memory[0].keys} keys", ratio, MAX_RSS_RATIO, False)
    return goals


# -- output -----------------------------------------------------------------------


def print_report(report: Report) -> None:
    """The table: both servers, the ratio, the anchor, and the goals."""
    rows: list[tuple[str, str, str, str, str]] = []

    def row(what: str, etcd: float, mini: float, fmt: str, anchor: str = "") -> None:
        ratio = f"{_ratio(mini, etcd):.3f}" if etcd else "-"
        rows.append((what, format(etcd, fmt), format(mini, fmt), ratio, anchor))

    for method in ("GET", "PUT"):
        for c in report.config["connections"]:
            try:
                e = _find(report.wrk, "etcd", method, c)
                m = _find(report.wrk, "minietcd", method, c)
            except KeyError:
                continue
            anchor_key = f"{method.lower()}_rps_c50"
            anchor = f"{ANCHORS[anchor_key]:,.0f}" if c == 50 else ""
            label = f"{method} c={c}"
            row(f"{label} req/s", e.requests_per_s, m.requests_per_s, ",.0f", anchor)
            row(f"{label} p50 ms", e.p50_ms, m.p50_ms, ".2f")
            row(f"{label} p99 ms", e.p99_ms, m.p99_ms, ".2f")
            row(
                f"{label} server CPU %",
                e.server_cpu_percent,
                m.server_cpu_percent,
                ".0f",
            )
            row(f"{label} req per CPU-s", _per_cpu_s(e), _per_cpu_s(m), ",.0f")
            if e.errors or m.errors:
                row(f"{label} errors", e.errors, m.errors, "d")
    if report.fanout:
        n = report.fanout[0].watchers
        for what, attr in (
            ("first answer ms", "first_ms"),
            ("median answer ms", "median_ms"),
            ("all answered ms", "all_ms"),
            ("server CPU ms", "server_cpu_ms"),
        ):
            e_ms = statistics.median(
                getattr(r, attr) for r in report.fanout if r.server == "etcd"
            )
            m_ms = statistics.median(
                getattr(r, attr) for r in report.fanout if r.server == "minietcd"
            )
            anchor = "56" if attr == "all_ms" else ""
            row(f"fan-out {n}: {what}", e_ms, m_ms, ".1f", anchor)
        for server in SERVERS:
            times = [r.all_ms for r in report.fanout if r.server == server]
            print(
                f"fan-out {server}: all answered in ms, per run: "
                + ", ".join(f"{t:.1f}" for t in times)
            )
    if report.memory:
        by = {m.server: m for m in report.memory}
        row("RSS fresh MB", by["etcd"].fresh_rss_mb, by["minietcd"].fresh_rss_mb, ".1f")
        keys = report.memory[0].keys
        size = report.memory[0].value_bytes
        row(
            f"RSS {keys} keys x {size} B, MB",
            by["etcd"].rss_mb,
            by["minietcd"].rss_mb,
            ".1f",
            "39",
        )
    header = ("", "etcd", "minietcd", "mini/etcd", "anchor (etcd)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    print()
    for r in [header, *rows]:
        print(
            "  ".join(
                cell.rjust(w) if i else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    print()
    for g in report.goals:
        verdict = "PASS" if g["pass"] else "FAIL"
        print(f"{verdict}  {g['goal']}: minietcd/etcd = {g['ratio']:.3f} ({g['rule']})")
    env = report.environment
    print()
    print(
        f"{env['etcd']}; Python {env['python']}, Twisted {env['twisted']}, "
        f"Klein {env['klein']}; {env['cpus']} CPUs; etcd data on {env['etcd_data_dir']}"
    )
    print(f"minietcd: {env['minietcd']}")
    print(f"load average at start {env['load_at_start']}, at end {env['load_at_end']}")
    if report.wrk:
        wrk_cpu = statistics.median(r.wrk_cpu_percent for r in report.wrk)
        print(
            "wrk and both servers share this machine's cores: wrk itself used a "
            f"median {wrk_cpu:.0f}% of one core; etcd can use every core, minietcd "
            "(one reactor thread) at most one."
        )
    if report.fanout:
        cpu = statistics.median(r.client_cpu_ms for r in report.fanout)
        wrong = sum(r.wrong_answers for r in report.fanout)
        print(
            f"fan-out client: median {cpu:.1f} ms CPU per fan-out (one epoll loop); "
            f"{wrong} wrong or incomplete answers"
        )
    print(
        "anchors (DESIGN.md, etcd 3.4 on this kind of machine): "
        "60k GET/s and 26k PUT/s with 50 connections; 1000 watchers answered in "
        "56 ms; 39 MB RSS with 10,000 keys"
    )
    for profile in report.profiles:
        print_profile(profile)


def _to_json(report: Report) -> str:
    return json.dumps(asdict(report), indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.etcd_bench",
        description="minietcd vs real etcd 3.4, side by side in one run.",
    )
    parser.add_argument(
        "--only",
        default="rss,fanout,wrk",
        help="sections to run, comma-separated [rss,fanout,wrk]",
    )
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per wrk run [5]"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="wrk runs per configuration and server; medians [1]",
    )
    parser.add_argument(
        "--connections",
        default="1,10,50",
        help="keep-alive connection counts [1,10,50]",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="wrk threads, at most the connections [2]",
    )
    parser.add_argument(
        "--put-bytes", type=int, default=5, help="size of the PUT value [5]"
    )
    parser.add_argument(
        "--watchers",
        type=int,
        default=1000,
        help="long-poll watchers per fan-out [1000]",
    )
    parser.add_argument(
        "--fanout-runs",
        type=int,
        default=5,
        help="fan-outs per server; median reported [5]",
    )
    parser.add_argument(
        "--keys",
        type=int,
        default=10_000,
        help="keys written before reading RSS [10000]",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=100,
        help="bytes per value for the RSS section [100]",
    )
    parser.add_argument(
        "--profile-dir",
        default=None,
        help="also profile minietcd with py-spy; raw stacks go here",
    )
    parser.add_argument(
        "--profile-rate", type=int, default=250, help="py-spy samples per second [250]"
    )
    parser.add_argument(
        "--profile-fanout-rate",
        type=int,
        default=100,
        help="py-spy samples per second during fan-outs [100]",
    )
    parser.add_argument(
        "--profile-fanouts",
        type=int,
        default=30,
        help="fan-outs recorded for the fan-out profile [30]",
    )
    parser.add_argument(
        "--minietcd-rev",
        default=None,
        help="run minietcd/ as committed at this git revision [the working tree]",
    )
    parser.add_argument(
        "--json",
        default=None,
        help="also write the results as JSON to this file (- = stdout)",
    )
    args = parser.parse_args(argv)
    args.connections = [int(c) for c in args.connections.split(",")]
    unknown = set(args.only.split(",")) - {"rss", "fanout", "wrk"}
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if shutil.which("wrk") is None and "wrk" in args.only:
        parser.error("wrk is not installed (apt-get install wrk)")
    report = run(args)
    print_report(report)
    if args.json == "-":
        print(_to_json(report))
    elif args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            out.write(_to_json(report) + "\n")
    return 0 if all(g["pass"] for g in report.goals) else 1


if __name__ == "__main__":
    sys.exit(main())
