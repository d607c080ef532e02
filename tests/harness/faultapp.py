"""The application the fault tests run on every node: it records its mastership and
writes through a fenced resource, as an application that trusts the master would.

    python tests/harness/faultapp.py --etcd URL --cluster C --address IP \\
        --http-port P --node-id ID --samples FILE --fence FILE [--weight W] ...

Every 20 ms it asks its node C{leadership}, reading C{time.monotonic()} just before
(CLOCK_MONOTONIC is one clock for every process of the machine, in every network
namespace, so the samples of all nodes share a time line). While master it appends
C{T <time> <epoch>} to its samples file and sends a write "in flight": after a random
delay of up to 100 ms, as a message to a real resource would arrive, it writes to the
fenced resource with the epoch it held when it decided to write. When it stops being
master it appends C{F <time>}. A process stopped with SIGSTOP resumes with such writes
still pending, so stale epochs do reach the resource.

The resource is a file shared by every node: under C{flock}, an L{EpochFence} made
from the highest epoch accepted so far admits or refuses the write, and the outcome is
appended to C{<fence>.log} as C{A|R <time> <epoch> <node-id>}.

Lines are written whole and unbuffered (one write per line), so a SIGKILL loses none.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import sys
import time
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.logger import globalLogBeginner, textFileLogObserver

from twistednode import ClusterNode, EpochFence, StaleEpoch, make_settings

SAMPLE_INTERVAL = 0.02
MAX_IN_FLIGHT = 0.1


def fenced_write(fence_path: str, epoch: int, node_id: str) -> bool:
    """Write to the shared resource with C{epoch}; whether it was accepted."""
    with open(fence_path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(fence_path) as state:
                highest = int(state.read().strip() or 0)
        except FileNotFoundError:
            highest = 0
        fence = EpochFence(highest)
        try:
            fence.admit(epoch)
        except StaleEpoch:
            accepted = False
        else:
            accepted = True
            with open(fence_path + ".tmp", "w") as state:
                state.write(str(fence.highest))
            os.replace(fence_path + ".tmp", fence_path)
        line = f"{'A' if accepted else 'R'} {time.monotonic():.6f} {epoch} {node_id}\n"
        with open(fence_path + ".log", "a") as log:
            log.write(line)
        return accepted


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etcd", required=True)
    parser.add_argument("--etcd-api", default="auto")
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--weight", type=float, default=None)
    parser.add_argument("--master-ttl", type=int, default=2)
    parser.add_argument("--samples", required=True)
    parser.add_argument("--fence", required=True)
    return parser.parse_args(argv)


async def main(reactor: Any, *argv: str) -> None:
    options = parse(list(argv))
    # The node's log goes to the process's output log, for a failed test to show.
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stdout)], redirectStandardIO=False
    )
    node = ClusterNode(
        reactor=reactor,
        settings=make_settings(epoch_ms=int(time.time() * 1000), weight=options.weight),
        cluster=options.cluster,
        etcd_urls=tuple(options.etcd.split(",")),
        etcd_api=options.etcd_api,
        udp_port=0,
        udp_interface=options.address,
        advertise=options.address,
        http=f"tcp:{options.http_port}:interface={options.address}",
        node_id=options.node_id,
        election="lease",
        master_ttl=options.master_ttl,
    )
    samples = open(options.samples, "a", buffering=1)
    was_master = False

    def write(epoch: int) -> None:
        fenced_write(options.fence, epoch, node.id)

    def sample() -> None:
        nonlocal was_master
        now = time.monotonic()
        lead = node.leadership
        if lead.is_master and lead.epoch is not None:
            samples.write(f"T {now:.6f} {lead.epoch}\n")
            reactor.callLater(random.uniform(0, MAX_IN_FLIGHT), write, lead.epoch)
        elif was_master:
            samples.write(f"F {now:.6f}\n")
        was_master = lead.is_master

    sampler = task.LoopingCall(sample)
    sampler.clock = reactor
    node.startService()
    reactor.addSystemEventTrigger("before", "shutdown", node.stopService)
    sampler.start(SAMPLE_INTERVAL)
    await Deferred()  # until SIGTERM stops the reactor


if __name__ == "__main__":
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
