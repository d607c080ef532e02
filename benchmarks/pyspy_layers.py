"""Sample a running Python process with py-spy and say where its CPU time goes.

C{profiling()} records raw collapsed stacks (idle time left out); C{analyse()} turns
one or more recordings into percent of samples per layer (self time, with stdlib,
zope.interface and attrs frames charged to the layer that called them), per marker
function (inclusive) and per leaf function.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

from attrs import field, frozen


def py_spy() -> str | None:
    """The py-spy next to this Python, or on the PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.access(beside, os.X_OK) else shutil.which("py-spy")


@contextlib.contextmanager
def profiling(
    pid: int, output: str, rate: int, options: Sequence[str] = ("--idle",)
) -> Iterator[None]:
    """Sample C{pid} with py-spy into raw collapsed stacks.

    Every sample is kept (C{--idle}; L{analyse} leaves out the reactor's waits, as
    py-spy's own idle detection also drops some busy samples). py-spy pauses the
    process for each sample: keep C{rate} modest (100-250 Hz); at 1000 Hz the pauses
    stretch pure-Python stretches more than system calls and skew the shares.
    C{--nonblocking} avoids that but loses deep stacks (it read 0.4% in the
    handler where pausing reads 16%, which throughput measurements confirm).
    """
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy not found: pip install py-spy")
    argv = [binary, "record", "--rate", str(rate), "--format", "raw", *options]
    spy = subprocess.Popen(
        [*argv, "--output", output, "--pid", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.0)  # attaching takes a moment
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            _, err = spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate()
        if not os.path.exists(output):
            raise RuntimeError(f"py-spy wrote no profile: {err.decode()[-2000:]}")


#: (path prefix as py-spy prints it, layer); the first match wins. Frames that match
#: nothing (stdlib, zope.interface, attrs' generated code, ...) are charged to the
#: nearest caller that does.
LAYERS: tuple[tuple[str, str], ...] = (
    ("minietcd/store.py", "minietcd.store"),
    ("minietcd/render.py", "minietcd.render (JSON)"),
    ("minietcd/params.py", "minietcd.params (form, query)"),
    ("minietcd/", "minietcd.api (dispatch, headers, watch)"),
    ("klein/", "Klein"),
    ("werkzeug/", "werkzeug (routing)"),
    ("twisted/internet/defer.py", "Deferreds"),
    ("twisted/web/http.py", "twisted.web.http (parse, headers, write)"),
    ("twisted/web/http_headers.py", "twisted.web.http (parse, headers, write)"),
    ("twisted/protocols/basic.py", "twisted.web.http (parse, headers, write)"),
    ("twisted/web/", "twisted.web.server (Site, Request, resource)"),
    ("twisted/internet/", "reactor, TCP, syscalls"),
    ("twisted/python/log.py", "reactor, TCP, syscalls"),
    ("twisted/python/context.py", "reactor, TCP, syscalls"),
    ("twisted/python/util.py", "reactor, TCP, syscalls"),
    ("twisted/application/", "reactor, TCP, syscalls"),
    ("twisted/scripts/", "reactor, TCP, syscalls"),
    ("twisted/logger/", "twisted.logger"),
)
#: Functions whose inclusive share is reported (substring of py-spy's frame name).
MARKERS = (
    "HTTPChannel.dataReceived",
    "Request.process (twisted/web/server.py",
    "KleinResource.render (klein",
    "Klein.execute_endpoint (klein",
    "MapAdapter.match (werkzeug",
    "KeysAPI.dispatch (minietcd",
    "KeysAPI._watch (minietcd",
    "parse_form (minietcd",
    "event_json (minietcd",
    "Request.finish (twisted/web/http.py",
    "Connection.writeSomeData (twisted",
)
#: A leaf frame in the reactor's poll (py-spy's idle detection misses epoll_wait).
_POLL = re.compile(r"^\w+Reactor\.do(Poll|Select|Iteration) \(twisted/internet/")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _layer(frame: str) -> str | None:
    match = _FRAME.match(frame)
    where = match.group("file") if match else frame
    for prefix, layer in LAYERS:
        if where.startswith(prefix):
            return layer
    return None


@frozen
class Profile:
    """Where the samples of one py-spy recording fall."""

    name: str
    samples: int
    #: Samples taken in the reactor's poll call (waiting, or a poll with work
    #: ready): left out of every percentage below.
    polling: int
    layers: dict[str, float]
    markers: dict[str, float]
    top_self: list[tuple[str, float]] = field(factory=list)


def analyse(name: str, paths: Sequence[str], top: int = 15) -> Profile:
    """Percent of samples per layer (self time), per marker (inclusive), top leaves."""
    layers: collections.Counter[str] = collections.Counter()
    markers: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = polling = 0
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                stack, _, count_text = line.rstrip("\n").rpartition(" ")
                if not stack or not count_text.isdigit():
                    continue
                count = int(count_text)
                frames = stack.split(";")
                if _POLL.search(frames[-1]):
                    polling += count
                    continue
                total += count
                layer = "other"
                for frame in reversed(frames):
                    found = _layer(frame)
                    if found is not None:
                        layer = found
                        break
                layers[layer] += count
                for marker in MARKERS:
                    if any(marker in frame for frame in frames):
                        markers[marker] += count
                leaves[re.sub(r":\d+\)$", ")", frames[-1])] += count
    if not total:
        raise RuntimeError(f"no samples in {paths}")

    def percent(counter: collections.Counter[str]) -> dict[str, float]:
        return {k: 100.0 * v / total for k, v in counter.most_common()}

    return Profile(
        name,
        total,
        polling,
        percent(layers),
        {m: 100.0 * markers[m] / total for m in MARKERS},
        [(k, 100.0 * v / total) for k, v in leaves.most_common(top)],
    )


def print_profile(profile: Profile) -> None:
    print(
        f"\nminietcd profile under {profile.name}: {profile.samples} busy samples "
        f"({profile.polling} more in the reactor's poll call, left out)"
    )
    print("  self time by layer (stdlib/zope/attrs frames charged to their caller):")
    for layer, share in profile.layers.items():
        print(f"    {share:5.1f}%  {layer}")
    print("  inclusive (samples with the function on the stack):")
    for marker, share in profile.markers.items():
        print(f"    {share:5.1f}%  {marker.split(' (')[0]}")
    print("  top leaf functions:")
    for frame, share in profile.top_self:
        print(f"    {share:5.1f}%  {frame}")
