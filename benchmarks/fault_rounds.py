"""Many rounds of the fault suite: the leased election under a long random schedule.

    .venv/bin/python benchmarks/fault_rounds.py                 # 100 rounds on minietcd
    .venv/bin/python benchmarks/fault_rounds.py --rounds 120 --registry all

CI runs tests/integration/test_faults.py with each fault once per registry. This runs
the same suite (five nodes in their own network namespaces, SIGSTOP/SIGKILL/SIGTERM,
UDP and registry cuts with iptables, registry restarts; on three etcd members also the
etcd leader killed) for C{--rounds} faults per registry, and prints each registry's
summary: the seed, the number of terms, that no two overlapped, the handover gaps,
and the fenced writes accepted and refused. A failed check fails the run (exit 1)
with the test's own message. Needs root (namespaces, iptables) like the suite.

The machine's load average is printed before and after each registry.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITES = {
    "minietcd": "MiniEtcdFaultTests",
    "etcd-v2": "RealEtcdV2FaultTests",
    "etcd-v3": "RealEtcdV3FaultTests",
    "etcd-cluster": "RealEtcdClusterFaultTests",
}


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min), {os.cpu_count()} cores"


def run(suite: str, rounds: int, seed: str | None) -> tuple[bool, str]:
    env = dict(
        os.environ, TWISTEDNODE_FAULT_ROUNDS=str(rounds), TWISTEDNODE_REQUIRE_ALL="1"
    )
    if seed:
        env["TWISTEDNODE_FAULT_SEED"] = seed
    test = f"tests.integration.test_faults.{SUITES[suite]}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "twisted.trial",
            "--temp-directory",
            "/tmp/_fault_rounds",
            test,
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    passed = result.returncode == 0 and "PASSED" in output
    summary = re.search(r"\[faults, [^\]]+\][^\n]*\n[^\n]*", output)
    if passed and summary is not None:
        return True, summary.group(0)
    return False, output[-4000:]


KINDS = {
    "SIGSTOP": "SIGSTOP",
    "SIGKILL": "SIGKILL",
    "SIGTERM": "SIGTERM",
    "UDP": "UDP cut",
    "the master's registry": "registry cut",
    "registry down": "registry restart",
    "etcd leader": "etcd leader killed",
}


def kinds(report: str) -> str:
    """How many faults of each kind the suite's report line lists."""
    counts = dict.fromkeys(KINDS.values(), 0)
    for entry in report.split("; ")[1:]:
        for start, kind in KINDS.items():
            if entry.startswith(start):
                counts[kind] += 1
    return ", ".join(f"{kind} {n}" for kind, n in counts.items() if n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="faults per registry")
    parser.add_argument(
        "--registry",
        default="minietcd",
        help="minietcd, etcd-v2, etcd-v3, etcd-cluster, or all (comma-separated)",
    )
    parser.add_argument("--seed", help="replay one schedule (TWISTEDNODE_FAULT_SEED)")
    options = parser.parse_args()
    if options.rounds < 1:
        parser.error("--rounds: give at least 1")
    names = list(SUITES) if options.registry == "all" else options.registry.split(",")
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        parser.error(f"--registry: unknown {', '.join(unknown)}")
    failed = False
    for name in names:
        print(f"{name}: {options.rounds} faults; before: {load()}", flush=True)
        began = time.monotonic()
        ok, text = run(name, options.rounds, options.seed)
        took = time.monotonic() - began
        # Each fault's line is long; keep the totals line and the seed.
        if ok:
            head, totals = text.split("\n", 1)
            seed = re.search(r"seed \d+", head)
            print(f"  {seed.group(0) if seed else ''}; {totals.strip()}")
            print(f"  faults made: {kinds(head)}")
        else:
            failed = True
            print(f"  FAILED:\n{text}")
        print(f"  took {took:.0f} s; after: {load()}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
