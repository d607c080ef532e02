"""Start-up benchmark (issue 14): the CPU one node spends before it is up.

Run from the repository root::

    python -m benchmarks.startup_bench                 # 15 starts per row, ~1 min
    python -m benchmarks.startup_bench --starts 5 --json startup.json

Each row starts ``--starts`` processes one after the other on an otherwise idle
machine and takes, per process, the CPU its threads used (ns, from
``/proc/<pid>/task/*/schedstat``) from exec until it said it was up: for
``twistd -n clusternode`` its "node ... of cluster" log line (sockets bound, the
services started; the registry is written right after), for node-discover 1.2.1
(the anchor, the machine's ``node``) its ``started`` event. The figure is the
median. Bytecode is cached as an install has it
(L{benchmarks.clusternode_procs.bytecode_env}; one start first fills the cache).

The rows: clusternode on static peers (``--no-etcd``), on one minietcd (``--etcd``),
the same with the status server (``--http``: Klein); the floor, what any
``twistd`` plugin pays before our code runs (``python -c 'import
twisted.scripts.twistd'``) and the interpreter alone; node-discover.

Then, once per clusternode row, ``python -X importtime`` of the same start: the
import time of every module grouped by where it comes from (Twisted, its
dependencies, treq, Klein, attrs, the standard library, twistednode), each module's
own time counted once, in the group of its top-level package. importtime's own
overhead inflates every figure (about 1.5 x), so the groups are shares, not CPU.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.clusternode_procs import bytecode_env
from benchmarks.procstats import cpu_seconds
from benchmarks.report import write_json
from tests.harness.nodediscover import NodeDiscoverPeer, free_udp_port
from tests.harness.servers import MiniEtcdProcess

READY = " of cluster "
TIMEOUT_S = 30.0

DEPS = "Twisted's dependencies (zope, automat, incremental, hyperlink, idna, ...)"
KLEIN = "Klein and werkzeug"
TREQ = "treq (and multipart)"
CRYPTO = "cryptography / pyOpenSSL"
OURS = "twistednode and tapkit"

#: Top-level packages -> the group their import time is counted in.
GROUPS: Mapping[str, str] = {
    "twisted": "Twisted",
    "zope": DEPS,
    "automat": DEPS,
    "constantly": DEPS,
    "incremental": DEPS,
    "hyperlink": DEPS,
    "idna": DEPS,
    "typing_extensions": DEPS,
    "attr": "attrs",
    "attrs": "attrs",
    "treq": TREQ,
    "multipart": TREQ,
    "klein": KLEIN,
    "werkzeug": KLEIN,
    "markupsafe": KLEIN,
    "prometheus_client": "prometheus_client",
    "cryptography": CRYPTO,
    "OpenSSL": CRYPTO,
    "twistednode": OURS,
    "tapkit": OURS,
}
STDLIB = "standard library"


def clusternode_argv(extra: Sequence[str]) -> list[str]:
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    return [
        sys.executable,
        twistd,
        "-n",
        "--pidfile=",
        "clusternode",
        "--udp-port",
        "0",
        "--udp-interface",
        "127.0.0.1",
        *extra,
    ]


def until_ready(argv: Sequence[str], env: Mapping[str, str]) -> float:
    """Start C{argv}; the CPU seconds it used until its ready line; stop it."""
    process = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env),
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    # A start that hangs without a word must not block the run: at the deadline
    # its process group is killed, which ends its output and so the loop below.
    deadline = threading.Timer(TIMEOUT_S, os.killpg, (process.pid, signal.SIGKILL))
    deadline.start()
    try:
        for line in process.stdout:
            if READY in line:
                return cpu_seconds(process.pid)
        raise RuntimeError(f"{argv[3:]} never said it was up within {TIMEOUT_S:g} s")
    finally:
        deadline.cancel()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def whole_run(argv: Sequence[str], env: Mapping[str, str]) -> float:
    """CPU seconds of a command that runs to its end (rusage of the children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(list(argv), env=dict(env), check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def node_discover_start() -> float:
    """CPU seconds of one node-discover peer until its ``started`` event."""
    peer = NodeDiscoverPeer.create(free_udp_port(), unicast=["127.0.0.1:9"])
    peer.start()
    try:
        peer.wait_started(TIMEOUT_S)
        assert peer.pid is not None
        return cpu_seconds(peer.pid)
    finally:
        peer.stop()


def import_groups(argv: Sequence[str], env: Mapping[str, str]) -> dict[str, float]:
    """Milliseconds of import time per group (each module's own time)."""
    process = subprocess.Popen(
        [argv[0], "-X", "importtime", *argv[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env),
        text=True,
    )
    assert process.stdout is not None
    groups: dict[str, float] = {}
    try:
        for line in process.stdout:
            if READY in line:
                break
            # twistd sends stderr to its log once logging starts: find the
            # importtime lines wherever they are in the line.
            at = line.find("import time:")
            if at < 0 or "|" not in line:
                continue
            own, _, name = line[at + len("import time:") :].split("|")
            if not own.strip().isdigit():
                continue
            top = name.strip().split(".")[0]
            group = GROUPS.get(top, STDLIB)
            groups[group] = groups.get(group, 0.0) + int(own) / 1000
    finally:
        process.terminate()
        process.wait(10)
    return groups


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=15, help="starts per row")
    parser.add_argument("--json", help="write the raw numbers here")
    args = parser.parse_args(argv)
    if args.starts < 1:
        parser.error("--starts: at least 1")

    cache = tempfile.mkdtemp(prefix="startup-bench-")
    env = bytecode_env(cache)
    registry = MiniEtcdProcess()
    registry.start()
    try:
        rows: dict[str, list[float]] = {}
        configs = {
            "clusternode --no-etcd (static peers)": [
                "--no-etcd",
                "--peer",
                "127.0.0.1:9",
            ],
            "clusternode --etcd (minietcd)": ["--etcd", registry.url],
            "clusternode --etcd --http (status server)": [
                "--etcd",
                registry.url,
                "--http",
                "tcp:0:interface=127.0.0.1",
            ],
        }
        print(
            f"# start-up CPU: {args.starts} starts per row, {os.cpu_count()} cores, "
            "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg()),
            file=sys.stderr,
        )
        for name, extra in configs.items():
            until_ready(clusternode_argv(extra), env)  # fills the bytecode cache
            rows[name] = [
                until_ready(clusternode_argv(extra), env) for _ in range(args.starts)
            ]
        rows["floor: import twisted.scripts.twistd"] = [
            whole_run([sys.executable, "-c", "import twisted.scripts.twistd"], env)
            for _ in range(args.starts)
        ]
        rows["floor: python -c pass"] = [
            whole_run([sys.executable, "-c", "pass"], env) for _ in range(args.starts)
        ]
        rows["node-discover 1.2.1 (anchor)"] = [
            node_discover_start() for _ in range(args.starts)
        ]
        groups = {
            name: import_groups(clusternode_argv(extra), env)
            for name, extra in configs.items()
        }
    finally:
        registry.stop()

    anchor = statistics.median(rows["node-discover 1.2.1 (anchor)"])
    print("| process | CPU to up, median (ms) | min | max | / node-discover |")
    print("|---|---|---|---|---|")
    for name, values in rows.items():
        median = statistics.median(values)
        print(
            f"| {name} | {median * 1000:.0f} | {min(values) * 1000:.0f} "
            f"| {max(values) * 1000:.0f} | {median / anchor:.2f} |"
        )
    print()
    names = sorted({g for found in groups.values() for g in found})
    print(
        "| import time by origin (ms, under -X importtime) | "
        + " | ".join(groups)
        + " |"
    )
    print("|---|" + "---|" * len(groups))
    for group in sorted(
        names, key=lambda g: -max(f.get(g, 0) for f in groups.values())
    ):
        print(
            f"| {group} | "
            + " | ".join(f"{found.get(group, 0.0):.1f}" for found in groups.values())
            + " |"
        )
    print(
        "| **all** | "
        + " | ".join(f"{sum(found.values()):.1f}" for found in groups.values())
        + " |"
    )
    print("\nload average after: " + " / ".join(f"{x:.2f}" for x in os.getloadavg()))
    if args.json:
        raw: dict[str, Any] = {"cpu_seconds": rows, "import_ms": groups}
        write_json(raw, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
