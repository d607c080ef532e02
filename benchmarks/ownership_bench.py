"""Ownership benchmark: our rendezvous hashing against tooz's HashRing, in one run.

Run from the repository root with the project's venv Python::

    .venv/bin/python benchmarks/ownership_bench.py                    # about 70 s
    .venv/bin/python benchmarks/ownership_bench.py --seed 7 --json out.json
    .venv/bin/python benchmarks/ownership_bench.py --seeds 1 --keys 10000 \\
        --balance-keys 100000 --tooz-partitions 32                   # a smoke run

The anchor is tooz's C{HashRing} (PyPI C{tooz}, C{--tooz-spec}, 9.1.0), which lives
only in a venv of the benchmark's own (C{--tooz-venv}, C{/tmp/twistednode-bench-tooz}),
created with C{pip install} on the first run: never in the project's venv or its
dependencies. The tooz half runs in that venv's Python, as this same file with the
hidden C{--worker} option, one process per seed and ring, one after the other (the
machine is shared: nothing runs in parallel). If tooz cannot be installed, the
reason is printed and only our column is measured.

For each seed (C{--seeds}, 5, from C{--seed}, 1, so a run is repeatable) both sides
get the same cluster and the same keys: C{--nodes} (10) node ids, random UUIDs from
C{random.Random(seed)}, then one more id (the joiner) and one of the ten picked to
leave; keys are C{b"<seed>:doc-<i>"}. Per side and seed:

  1. balance: the owner of each of C{--balance-keys} (1,000,000) keys with the 10
     nodes; the busiest node's count and the least loaded one's over the mean;
  2. the lookup rate of that pass, in keys per second of wall time and per second of
     this process's CPU (the figure to compare when the machine is busy);
  3. join, 10 -> 11: of the first C{--keys} (100,000) of those keys, the fraction
     whose owner changed, and how many of them went anywhere but to the joiner;
  4. leave, 10 -> 9: the same with the leaver gone: the fraction moved, the leaver's
     own share, and how many keys that were not the leaver's moved.

Ours is C{OwnershipView.of(version, ids).owner(key)}
(L{twistednode.routing.ownership}, BLAKE2b, equal capacities). tooz's is
C{HashRing(ids, partitions=P).get_nodes(key)} (md5 ring, P points per node), once
per C{--tooz-partitions} (32, its default, and 1024). A leave is a ring built without
the leaver (what C{remove_node} leaves behind). The table gives the worst seed and
the mean of the seeds, and PASS/FAIL per column for the goals of issue 13: at most
1.15 / (n + 1) of the keys move on a join, the busiest node holds at most 1.25 x
the mean; and, from its tests, a join or a leave moves only the keys it must. The
exit status is 1 if one of our goals fails. The load average is printed before and
after.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.report import write_json

#: The anchor, as pip is asked for it.
TOOZ_SPEC = "tooz==9.1.0"
#: Where the anchor's venv goes unless --tooz-venv says otherwise.
TOOZ_VENV = os.path.join(tempfile.gettempdir(), "twistednode-bench-tooz")
#: The goals of issue 13.
JOIN_SLACK = 1.15
BALANCE_GOAL = 1.25
#: A lookup: the owner of one key.
Lookup = Callable[[bytes], str]
#: Builds the lookup of one member set.
Ring = Callable[[Sequence[str]], Lookup]
Result = dict[str, Any]


def load() -> tuple[float, float, float]:
    """The load averages, 1, 5 and 15 minutes."""
    return os.getloadavg()


def show_load(averages: Sequence[float]) -> str:
    """The load averages as the report prints them."""
    return " / ".join(f"{a:.2f}" for a in averages) + " (1 / 5 / 15 min)"


# -- the two sides ------------------------------------------------------------------


def ours() -> Ring:
    """twistednode's ownership: the bound C{owner} of a view of the ids."""
    from twistednode.routing.ownership import OwnershipView

    def ring(ids: Sequence[str]) -> Lookup:
        owner = OwnershipView.of(0, ids).owner

        def lookup(key: bytes) -> str:
            found = owner(key)
            assert found is not None
            return found

        return lookup

    return ring


def tooz_ring(partitions: int) -> Ring:
    """tooz's C{HashRing} with C{partitions} points per node (its venv only)."""
    hashring: Any = importlib.import_module("tooz.hashring")

    def ring(ids: Sequence[str]) -> Lookup:
        get_nodes = hashring.HashRing(ids, partitions=partitions).get_nodes

        def lookup(key: bytes) -> str:
            (node,) = get_nodes(key)
            return str(node)

        return lookup

    return ring


# -- one seed -----------------------------------------------------------------------


def cluster(seed: int, nodes: int) -> tuple[list[str], str, str]:
    """The node ids of C{seed}, the joiner and the leaver (the same on both sides)."""
    rng = random.Random(seed)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(nodes)]
    joiner = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    leaver = ids[rng.randrange(nodes)]
    return ids, joiner, leaver


def measure(ring: Ring, seed: int, nodes: int, keys: int, balance_keys: int) -> Result:
    """Balance, rate, join and leave of one ring for one seed."""
    ids, joiner, leaver = cluster(seed, nodes)
    total = max(keys, balance_keys)
    data = [b"%d:doc-%d" % (seed, i) for i in range(total)]
    lookup = ring(ids)
    wall, cpu = time.perf_counter(), time.process_time()
    before = [lookup(k) for k in data[:balance_keys]]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if keys > balance_keys:
        before += [lookup(k) for k in data[balance_keys:]]
    counts = Counter(before[:balance_keys])
    mean = balance_keys / nodes
    moving = data[:keys]
    joined = list(map(ring([*ids, joiner]), moving))
    left = list(map(ring([i for i in ids if i != leaver]), moving))
    join_moved = [b != a for b, a in zip(before, joined, strict=False)]
    leave_moved = [b != a for b, a in zip(before, left, strict=False)]
    return {
        "seed": seed,
        "ids": ids,
        "joiner": joiner,
        "leaver": leaver,
        "balance_keys": balance_keys,
        "keys": keys,
        "busiest": max(counts.values()) / mean,
        "least": min(counts.get(i, 0) for i in ids) / mean,
        "rate_wall": balance_keys / wall,
        "rate_cpu": balance_keys / cpu if cpu > 0 else None,
        "join_moved": sum(join_moved) / keys,
        "join_astray": sum(
            1 for m, a in zip(join_moved, joined, strict=True) if m and a != joiner
        ),
        "leave_moved": sum(leave_moved) / keys,
        "leaver_share": sum(1 for b in before[:keys] if b == leaver) / keys,
        "leave_astray": sum(
            1 for m, b in zip(leave_moved, before, strict=False) if m and b != leaver
        ),
    }


# -- the anchor's venv --------------------------------------------------------------


def tooz_python(venv: str, spec: str) -> tuple[str | None, str]:
    """The venv's Python (made if need be) and tooz's version, or why not."""
    python = os.path.join(venv, "bin", "python")
    probe = [python, "-c", "import importlib.metadata as m; print(m.version('tooz'))"]
    found = _run(probe) if os.path.exists(python) else None
    if found is None or found.returncode != 0:
        print(f"# installing {spec} into {venv}", file=sys.stderr)
        for step in (
            [sys.executable, "-m", "venv", venv],
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            + [spec],
        ):
            done = _run(step)
            if done.returncode != 0:
                tail = " ".join((done.stderr or done.stdout).split()[-40:])
                return None, f"{' '.join(step[:4])} failed: {tail}"
        found = _run(probe)
        if found.returncode != 0:
            return None, f"tooz does not import in {venv}: {found.stderr.strip()}"
    return python, found.stdout.strip()


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def run_worker(
    python: str, partitions: int, seed: int, args: argparse.Namespace
) -> Result:
    """Measure tooz for one seed in its venv's Python: this file, --worker."""
    argv = [python, os.path.abspath(__file__), "--worker", str(partitions)]
    argv += ["--seed", str(seed), "--nodes", str(args.nodes), "--keys", str(args.keys)]
    argv += ["--balance-keys", str(args.balance_keys)]
    done = _run(argv)
    if done.returncode != 0:
        raise RuntimeError(f"tooz worker failed: {done.stderr.strip()}")
    result: Result = json.loads(done.stdout)
    return result


# -- the report ---------------------------------------------------------------------


def summary(results: Sequence[Result], name: str, worst: Callable[..., Any]) -> str:
    """C{worst / mean} of one figure over the seeds."""
    values = [r[name] for r in results if r[name] is not None]
    if not values:
        return "-"
    digits = 0 if name.startswith("rate") else (0 if name.endswith("astray") else 4)
    low, mid = worst(values), statistics.fmean(values)
    return f"{low:,.{digits}f} / {mid:,.{digits}f}"


def table(
    columns: dict[str, list[Result]], nodes: int
) -> tuple[list[str], dict[str, dict[str, bool]]]:
    """The markdown table and each column's verdicts."""
    join_goal = JOIN_SLACK / (nodes + 1)
    rows: list[tuple[str, str, Callable[..., Any], str, Callable[[float], bool] | None]]
    rows = [
        (
            f"keys moved, {nodes} -> {nodes + 1} nodes (fraction)",
            "join_moved",
            max,
            f"<= {join_goal:.4f} (1.15 / {nodes + 1}; ideal {1 / (nodes + 1):.4f})",
            lambda v: v <= join_goal,
        ),
        (
            "... of them, not to the joiner (keys)",
            "join_astray",
            max,
            "0",
            lambda v: v == 0,
        ),
        (
            f"busiest node / mean, {nodes} equal nodes",
            "busiest",
            max,
            f"<= {BALANCE_GOAL}",
            lambda v: v <= BALANCE_GOAL,
        ),
        ("least loaded node / mean", "least", min, "", None),
        (
            f"keys moved, {nodes} -> {nodes - 1} nodes (fraction)",
            "leave_moved",
            max,
            "= the leaver's share",
            None,
        ),
        ("... the leaver's share (fraction)", "leaver_share", max, "", None),
        (
            "... moved but not the leaver's (keys)",
            "leave_astray",
            max,
            "0",
            lambda v: v == 0,
        ),
        (f"lookups /s, {nodes} nodes (wall)", "rate_wall", min, "", None),
        ("lookups per CPU-second", "rate_cpu", min, "", None),
    ]
    names = list(columns)
    lines = [
        f"| metric (worst / mean of the seeds) | {' | '.join(names)} | goal "
        f"| {' | '.join(names)} |",
        "|---" * (2 + 2 * len(names)) + "|",
    ]
    verdicts: dict[str, dict[str, bool]] = {n: {} for n in names}
    for label, key, worst, goal, check in rows:
        cells = [summary(columns[n], key, worst) for n in names]
        marks = []
        for n in names:
            if check is None:
                marks.append("")
                continue
            ok = all(check(r[key]) for r in columns[n])
            verdicts[n][label] = ok
            marks.append("PASS" if ok else "FAIL")
        lines.append(
            f"| {label} | {' | '.join(cells)} | {goal} | {' | '.join(marks)} |"
        )
    return lines, verdicts


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, measure both sides per seed, print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="first seed (1)")
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds (5)")
    parser.add_argument("--nodes", type=int, default=10, help="node count (10)")
    parser.add_argument(
        "--keys", type=int, default=100_000, help="keys for join and leave (100,000)"
    )
    parser.add_argument(
        "--balance-keys",
        type=int,
        default=1_000_000,
        help="keys for the balance and the rate (1,000,000)",
    )
    parser.add_argument(
        "--tooz-partitions",
        default="32,1024",
        help="comma-separated HashRing partitions per node, one column each (32,1024)",
    )
    parser.add_argument("--tooz-venv", default=TOOZ_VENV, help="the anchor's venv")
    parser.add_argument("--tooz-spec", default=TOOZ_SPEC, help="what pip installs")
    parser.add_argument("--no-tooz", action="store_true", help="measure ours only")
    parser.add_argument("--json", default=None, help="raw results here (- = stdout)")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nodes < 2 or args.keys < 1 or args.balance_keys < 1 or args.seeds < 1:
        parser.error("--nodes must be >= 2, --keys, --balance-keys, --seeds >= 1")
    if args.worker is not None:
        result = measure(
            tooz_ring(args.worker), args.seed, args.nodes, args.keys, args.balance_keys
        )
        json.dump(result, sys.stdout)
        return 0

    out = sys.stderr if args.json == "-" else sys.stdout
    seeds = list(range(args.seed, args.seed + args.seeds))
    before = load()
    python, tooz_version = (None, "not asked for (--no-tooz)")
    if not args.no_tooz:
        python, tooz_version = tooz_python(args.tooz_venv, args.tooz_spec)
    partitions = [int(p) for p in args.tooz_partitions.split(",")] if python else []
    columns: dict[str, list[Result]] = {"twistednode": []}
    for p in partitions:
        columns[f"tooz {p}"] = []
    started = time.monotonic()
    ring = ours()
    for seed in seeds:
        print(f"# seed {seed}", file=sys.stderr)
        columns["twistednode"].append(
            measure(ring, seed, args.nodes, args.keys, args.balance_keys)
        )
        for p in partitions:
            assert python is not None
            theirs = run_worker(python, p, seed, args)
            if theirs["ids"] != columns["twistednode"][-1]["ids"]:
                raise RuntimeError(f"seed {seed}: the two sides drew different ids")
            columns[f"tooz {p}"].append(theirs)
    took = time.monotonic() - started
    after = load()
    lines, verdicts = table(columns, args.nodes)
    anchor = f"tooz {tooz_version}" if python else f"no tooz: {tooz_version}"
    report = [
        "# ownership: twistednode (rendezvous, BLAKE2b) vs tooz HashRing (md5 ring)",
        "",
        f"load average before: {show_load(before)}; after: {show_load(after)}; "
        f"{os.cpu_count()} cores; "
        f"took {took:.0f} s",
        f"seeds {', '.join(map(str, seeds))}; {args.nodes} nodes (random UUIDs); "
        f"{args.keys:,} keys for join and leave, {args.balance_keys:,} for the "
        f"balance and the rate; {anchor}"
        + (
            f", partitions per node {', '.join(map(str, partitions))}"
            if partitions
            else ""
        ),
        "",
        *lines,
        "",
        "Worst: the highest fraction moved, ratio or stray count and the lowest rate "
        "or least loaded share of the seeds; a verdict holds for every seed.",
    ]
    print("\n".join(report), file=out)
    if args.json:
        document = {
            "settings": {
                "seeds": seeds,
                "nodes": args.nodes,
                "keys": args.keys,
                "balance_keys": args.balance_keys,
                "tooz": tooz_version if python else None,
                "tooz_partitions": partitions,
            },
            "load_before": before,
            "load_after": after,
            "took_s": took,
            "results": columns,
            "verdicts": verdicts,
        }
        write_json(document, args.json)
    return 0 if all(verdicts["twistednode"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
