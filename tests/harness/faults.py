"""Fault tests' nodes and checker: mastership intervals, overlaps, fenced writes.

L{FaultNode} runs L{tests.harness.faultapp} (a C{ClusterNode} under the leased
election, plus an application that records its mastership and writes through a
fenced resource) in one network namespace of a L{tests.harness.netns.Topology}.

The checker is pure: L{intervals} turns the samples files into mastership intervals
(one per node and term, split wherever the node said it was not master or went
silent), L{overlaps} finds any two intervals of different nodes that share an
instant, and L{FenceLog} reads the resource's log of accepted and refused writes.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from attrs import frozen

from tests.harness.clusternodes import NodeView, view_of_status
from tests.harness.servers import ManagedProcess

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faultapp.py")
#: Two samples further apart than this are not one continuous interval (the app
#: samples every 20 ms; a longer gap means it did not run, e.g. under SIGSTOP).
MAX_SAMPLE_GAP = 0.1


@frozen
class Interval:
    """Node C{node} was master, in term C{epoch}, at every sample from C{start} to
    C{end} (monotonic seconds)."""

    node: str
    epoch: int
    start: float
    end: float


def intervals_of(node: str, lines: Iterable[str]) -> list[Interval]:
    """One node's samples file as intervals."""
    found: list[Interval] = []
    current: list[Any] | None = None  # [epoch, start, end]
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "F" or len(parts) < 3:
            if current is not None:
                found.append(Interval(node, *current))
            current = None
            continue
        at, epoch = float(parts[1]), int(parts[2])
        if current is not None and (
            epoch != current[0] or at - current[2] > MAX_SAMPLE_GAP
        ):
            found.append(Interval(node, *current))
            current = None
        if current is None:
            current = [epoch, at, at]
        else:
            current[2] = at
    if current is not None:
        found.append(Interval(node, *current))
    return found


def overlaps(intervals: Sequence[Interval]) -> list[tuple[Interval, Interval]]:
    """Every pair of intervals of different nodes that share an instant."""
    ordered = sorted(intervals, key=lambda i: i.start)
    found = []
    for index, first in enumerate(ordered):
        for second in ordered[index + 1 :]:
            if second.start > first.end:
                break
            if second.node != first.node:
                found.append((first, second))
    return found


def handover_gaps(intervals: Sequence[Interval]) -> list[float]:
    """Seconds from the end of each term to the start of the next (another epoch)."""
    ordered = sorted(intervals, key=lambda i: i.start)
    gaps = []
    for before, after in zip(ordered, ordered[1:], strict=False):
        if after.epoch != before.epoch:
            gaps.append(after.start - before.end)
    return gaps


@frozen
class Write:
    accepted: bool
    at: float
    epoch: int
    node: str


def read_fence_log(path: str) -> list[Write]:
    """The resource's writes, in the order the fence judged them."""
    writes = []
    try:
        with open(path) as log:
            for line in log:
                kind, at, epoch, node = line.split()
                writes.append(Write(kind == "A", float(at), int(epoch), node))
    except FileNotFoundError:
        pass
    return writes


def stale_accepted(writes: Sequence[Write]) -> list[Write]:
    """Accepted writes whose epoch is lower than one accepted before them."""
    highest = 0
    found = []
    for write in writes:
        if write.accepted:
            if write.epoch < highest:
                found.append(write)
            highest = max(highest, write.epoch)
    return found


class FaultNode(ManagedProcess):
    """One fault-test node: the fault app in namespace C{index} of a topology."""

    label = "faultnode"

    def __init__(
        self,
        *,
        prefix: Sequence[str],
        address: str,
        etcd: str,
        etcd_api: str,
        cluster: str,
        fence: str,
        weight: float,
        http_port: int = 8400,
        master_ttl: int = 2,
    ) -> None:
        super().__init__()
        self.prefix = list(prefix)
        self.address = address
        self.etcd = etcd
        self.etcd_api = etcd_api
        self.cluster = cluster
        self.fence = fence
        self.weight = weight
        self.http_port = http_port
        self.master_ttl = master_ttl
        self.id = str(uuid.uuid4())
        self.samples = os.path.join(self.workdir, "samples")

    def _argv(self) -> list[str]:
        return [
            *self.prefix,
            sys.executable,
            APP,
            "--etcd",
            self.etcd,
            "--etcd-api",
            self.etcd_api,
            "--cluster",
            self.cluster,
            "--address",
            self.address,
            "--http-port",
            str(self.http_port),
            "--node-id",
            self.id,
            "--weight",
            repr(self.weight),
            "--master-ttl",
            str(self.master_ttl),
            "--samples",
            self.samples,
            "--fence",
            self.fence,
        ]

    def _ready_url(self) -> str:
        return f"http://{self.address}:{self.http_port}/status"

    def status(self, timeout: float = 1.0) -> dict[str, Any]:
        """The node's C{GET /status} document (OSError if it does not answer)."""
        connection = http.client.HTTPConnection(
            self.address, self.http_port, timeout=timeout
        )
        try:
            connection.request("GET", "/status")
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise OSError(f"{self.address}:{self.http_port}: {e!r}") from e
        finally:
            connection.close()
        document: dict[str, Any] = json.loads(body)
        return document

    def view(self) -> NodeView:
        sent = time.monotonic()
        status = self.status()
        return view_of_status(status, sent, time.monotonic())

    def sample_lines(self) -> list[str]:
        try:
            with open(self.samples) as samples:
                return samples.read().splitlines()
        except FileNotFoundError:
            return []

    def intervals(self) -> list[Interval]:
        return intervals_of(self.id, self.sample_lines())
