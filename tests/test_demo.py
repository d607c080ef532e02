"""
The demo (``python demo/cluster_demo.py``) as a user runs it: a subprocess whose
output is read as text. The story must hold with minietcd and with a real etcd 3.4,
and however the demo ends (SIGTERM, Ctrl-C, even SIGKILL) none of the processes it
started may be left.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from demo.processes import _die_with
from tests.harness.childprocess import OutputProcess, die_with_test
from tests.harness.servers import RealEtcd, free_port

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "cluster_demo.py"

STEPS = (
    ("the cluster forms", "spawn"),
    ("one master is elected", "spawn"),
    ("1,000 documents are stored by their owners", "the first POST"),
    ("a fourth node joins", "spawn"),
    ("the master is killed, a new one is elected", "SIGKILL"),
    ("only the killed master's keys move", "SIGKILL"),
    ("a node stops cleanly, the others see it leave", "SIGTERM"),
)

#: Bounds for a whole story on a loaded machine (the demo's own are smaller).
STORY_TIMEOUT = 300.0
EVENT_TIMEOUT = 120.0


def demo_env() -> dict[str, str]:
    """The environment the demo runs in: UTF-8 output, no colour."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8", NO_COLOR="1")
    env.pop("TERM", None)
    return env


def step_times(output: str) -> list[float]:
    """The measured time of every step line that passed, in seconds."""
    times = []
    for number, (title, since) in enumerate(STEPS, 1):
        match = re.search(
            rf"(?m)^✔ {number}\. {re.escape(title)} \.+ +([0-9.]+) (ms|s) "
            rf"after {since}$",
            output,
        )
        if match is None:
            raise AssertionError(f"step {number} ({title}) did not pass:\n{output}")
        value = float(match.group(1))
        times.append(value / 1000 if match.group(2) == "ms" else value)
    return times


def stored_counts(line: str) -> dict[str, int]:
    """The per-node counts of an "each node's status says it stores" line."""
    return {name: int(n) for name, n in re.findall(r"(node-\d) (\d+)", line)}


def started(output: str) -> dict[str, int]:
    """The pid of every process the demo says it started, by name."""
    return {
        name: int(pid)
        for name, pid in re.findall(r"(?m)^started (\S+): pid (\d+),", output)
    }


def cluster_name(output: str) -> str:
    """The demo's unique cluster name, from its first line."""
    match = re.search(r"cluster (demo-[0-9a-f]{8})", output)
    assert match is not None, output
    return match.group(1)


def processes_mentioning(words: list[str]) -> list[str]:
    """Live (not zombie) processes whose command line contains one of C{words}."""
    found = []
    for entry in glob.glob("/proc/[0-9]*"):
        try:
            with open(entry + "/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(entry + "/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z" and any(word in cmdline for word in words):
            found.append(f"{entry[6:]}: {cmdline}")
    return found


def assert_none_left(test: SynchronousTestCase, output: str) -> None:
    """No process the demo started runs: by its pids and by its cluster name."""
    for name, pid in started(output).items():
        left = [
            line
            for line in processes_mentioning(["clusternode", "minietcd"])
            if line.startswith(f"{pid}: ")
        ]
        test.assertEqual(left, [], f"{name} (pid {pid}) is still running")
    test.assertEqual(processes_mentioning([cluster_name(output)]), [])


class RunningDemo(OutputProcess):
    """The demo in the background, its output collected line by line."""

    def __init__(self, *args: str) -> None:
        super().__init__(
            [sys.executable, str(DEMO), *args],
            env=demo_env(),
            new_session=True,
            what="the demo's output",
            timeout=EVENT_TIMEOUT,
        )


class DemoStoryTests(SynchronousTestCase):
    """The story holds, end to end, and every time it prints is a real one."""

    def run_story(self, *args: str) -> str:
        """Run the demo non-interactively; assert exit 0 and every step; output."""
        result = subprocess.run(
            [sys.executable, str(DEMO), "--no-interactive", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=demo_env(),
            timeout=STORY_TIMEOUT,
            preexec_fn=die_with_test(),
        )
        output = result.stdout.decode("utf-8", "replace")
        errors = result.stderr.decode("utf-8", "replace")
        self.assertEqual(result.returncode, 0, output + errors)
        self.assertIn("All 7 steps held.", output)
        self.assertNotIn("\x1b[", output)
        return output

    def assert_story(self, output: str, expected: list[str]) -> None:
        """Every step passed with plausible times; every process is gone."""
        times = step_times(output)
        # A crashed master cannot be timed out before its silence exceeded the
        # node timeout (2 s) less one hello interval (1 s).
        self.assertGreaterEqual(times[4], 1.0, output)
        # Its keys move when its registry record expires, after the election.
        self.assertGreaterEqual(times[5], times[4], output)
        # A clean stop is seen before any timeout could have removed the node.
        self.assertLess(times[6], 1.0, output)
        self.assert_documents(output)
        # The registry's lease elects; the new term's fencing epoch is higher.
        self.assertRegex(output, r"the registry's lease elected it, epoch \d+\n")
        failover = re.search(
            r"its master key expired \(2 s TTL\); epoch (\d+), was (\d+)\n", output
        )
        self.assertIsNotNone(failover, output)
        assert failover is not None
        self.assertGreater(int(failover.group(1)), int(failover.group(2)), output)
        pids = started(output)
        self.assertEqual(sorted(pids), expected, output)
        for name in expected[-4:]:
            self.assertRegex(
                output, rf"started {name}: pid \d+, page http://127\.0\.0\.1:\d+/"
            )
        self.assertIn(
            "stopped every process (pids "
            + ", ".join(str(pid) for pid in pids.values())
            + ")",
            output,
        )
        assert_none_left(self, output)

    def assert_documents(self, output: str) -> None:
        """The numbers of the document steps add up."""
        counts = [
            stored_counts(line)
            for line in re.findall(
                r"(?m)^     each node's status says it stores: .*$", output
            )
        ]
        self.assertEqual(len(counts), 3, output)
        stored, joined, after_kill = counts
        self.assertEqual(sorted(stored), ["node-1", "node-2", "node-3"], output)
        self.assertEqual(len(joined), 4, output)
        self.assertEqual(len(after_kill), 3, output)
        for each in counts:
            self.assertEqual(sum(each.values()), 1000, output)
            self.assertTrue(all(n > 0 for n in each.values()), output)
        self.assertRegex(
            output,
            r"1,000 POSTs to random nodes in [0-9.]+ m?s; \d+ were forwarded to the "
            r"key's owner, and every one was stored by it\n",
        )
        # node-4's keys came from the three, and only the keys it took moved.
        took = re.search(
            r"node-4 took (\d+) keys, each from its owner \(([^)]*)\), and their "
            r"documents [0-9.]+ m?s after spawn; no key moved between the others\n",
            output,
        )
        self.assertIsNotNone(took, output)
        assert took is not None
        given = stored_counts(took.group(2))
        self.assertEqual(int(took.group(1)), joined["node-4"], output)
        self.assertEqual(sum(given.values()), joined["node-4"], output)
        for name, n in given.items():
            self.assertEqual(stored[name] - n, joined[name], output)
        # The killed master's keys, and no other, went to the others.
        moved = re.search(
            r"(node-\d)'s record expired from the registry: its (\d+) keys moved "
            r"\(([^)]*)\); none of the other (\d+) did\n",
            output,
        )
        self.assertIsNotNone(moved, output)
        assert moved is not None
        victim, count = moved.group(1), int(moved.group(2))
        self.assertEqual(count, joined[victim], output)
        self.assertEqual(count + int(moved.group(4)), 1000, output)
        to = stored_counts(moved.group(3))
        self.assertNotIn(victim, to, output)
        self.assertEqual(sum(to.values()), count, output)
        for name, n in to.items():
            self.assertEqual(joined[name] + n, after_kill[name], output)
        self.assertIn(
            f"those {1000 - count} documents still answer from the node that stored "
            f"them; {victim}'s {count} were only in its memory: sent again, each is "
            "stored by its new owner",
            output,
        )
        self.assertRegex(
            output, r"its \d+ documents went with it: the store keeps one copy"
        )

    def test_story_with_minietcd(self) -> None:
        """With the bundled minietcd, all seven steps hold and nothing is left."""
        output = self.run_story()
        self.assert_story(output, ["minietcd", "node-1", "node-2", "node-3", "node-4"])
        self.assertRegex(output, r"started minietcd: pid \d+, http://127\.0\.0\.1:\d+")

    def test_story_with_real_etcd(self) -> None:
        """With --etcd and a real etcd 3.4 the story holds; the run's keys go."""
        etcd = RealEtcd().start()
        self.addCleanup(etcd.stop)
        output = self.run_story("--etcd", etcd.url)
        self.assert_story(output, ["node-1", "node-2", "node-3", "node-4"])
        self.assertIn(f"registry: etcd at {etcd.url} (etcdserver 3.4", output)
        # The nodes chose the v3 API (auto); nothing of this run stays under its
        # cluster's prefix, and nothing was written to the v2 key space either.
        prefix = f"/twistednode/{cluster_name(output)}/".encode()
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        request = urllib.request.Request(
            f"{etcd.url}/v3/kv/range",
            data=json.dumps(
                {
                    "key": base64.b64encode(prefix).decode(),
                    "range_end": base64.b64encode(end).decode(),
                    "count_only": True,
                }
            ).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            self.assertEqual(int(json.load(response).get("count", "0")), 0)
        self.assertRaises(
            urllib.error.HTTPError,
            urllib.request.urlopen,
            f"{etcd.url}/v2/keys/twistednode",
            timeout=5,
        )


class DemoCleanupTests(SynchronousTestCase):
    """However the demo ends, every process it started ends with it."""

    def start(self, *args: str) -> RunningDemo:
        """Start the demo in the background (killed at cleanup if still running)."""
        demo = RunningDemo(*args)
        self.addCleanup(demo.kill)
        self.addCleanup(self.remove_run_dir, demo)
        return demo

    def remove_run_dir(self, demo: RunningDemo) -> None:
        """A demo killed outright cannot remove its scratch dir: the test does."""
        match = re.search(r"cluster (demo-[0-9a-f]{8})", demo.output)
        if match is not None:
            for path in glob.glob(
                os.path.join(tempfile.gettempdir(), f"twistednode-{match.group(1)}-*")
            ):
                shutil.rmtree(path, ignore_errors=True)

    def test_sigterm_during_the_story(self) -> None:
        """SIGTERM while the nodes start: exit 143, every child stopped."""
        demo = self.start("--no-interactive")
        demo.wait_for(r"^started node-3: pid \d+")
        demo.process.send_signal(signal.SIGTERM)
        self.assertEqual(demo.finish(), 128 + signal.SIGTERM, demo.output)
        self.assertIn("got SIGTERM: stopping every process", demo.output)
        self.assertIn("stopped every process", demo.output)
        assert_none_left(self, demo.output)

    def test_ctrl_c_after_the_story(self) -> None:
        """Interactive mode stays up after the story; Ctrl-C ends it and them."""
        demo = self.start()
        output = demo.wait_for(r"^The cluster keeps running", timeout=STORY_TIMEOUT)
        self.assertIn("All 7 steps held.", output)
        time.sleep(0.5)
        self.assertIsNone(demo.process.poll(), "the demo did not stay up")
        demo.process.send_signal(signal.SIGINT)
        self.assertEqual(demo.finish(), 130, demo.output)
        self.assertIn("interrupted: stopping every process", demo.output)
        assert_none_left(self, demo.output)

    def test_sigkill_of_the_demo(self) -> None:
        """Even a SIGKILL of the demo leaves nothing: the kernel kills its children."""
        demo = self.start("--no-interactive")
        output = demo.wait_for(r"^✔ 1\. the cluster forms")
        demo.process.send_signal(signal.SIGKILL)
        self.assertEqual(demo.finish(), -signal.SIGKILL)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert_none_left(self, output)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


class DemoChildTests(SynchronousTestCase):
    """The demo's children are tied to its life, even in the spawn's last instant."""

    def test_child_of_a_dead_parent_dies(self) -> None:
        """A child whose parent died before it asked for PDEATHSIG kills itself."""
        # The parent passed is not ours: to the child, its parent is already gone.
        process = subprocess.Popen(["sleep", "30"], preexec_fn=partial(_die_with, 1))
        self.assertEqual(process.wait(10), -signal.SIGKILL)

    def test_child_of_a_live_parent_runs(self) -> None:
        """A child whose parent is alive runs its program."""
        process = subprocess.Popen(["true"], preexec_fn=partial(_die_with, os.getpid()))
        self.assertEqual(process.wait(10), 0)


class DemoCommandLineTests(SynchronousTestCase):
    """Bad input gets a clear message and a failing exit status, nothing else."""

    def run_demo(self, *args: str) -> tuple[int, str]:
        """Run the demo to its end; its exit status and all it printed."""
        result = subprocess.run(
            [sys.executable, str(DEMO), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=demo_env(),
            timeout=60,
            preexec_fn=die_with_test(),
        )
        return result.returncode, result.stdout.decode("utf-8", "replace")

    def test_unreachable_etcd(self) -> None:
        """An etcd that does not answer: exit 1 saying so, no node started."""
        url = f"http://127.0.0.1:{free_port()}"
        code, output = self.run_demo("--no-interactive", "--etcd", url)
        self.assertEqual(code, 1, output)
        self.assertIn(f"Could not start: etcd does not answer at {url}", output)
        self.assertEqual(started(output), {})
        self.assertNotIn("logs kept", output)

    def test_unreachable_etcd_interactive(self) -> None:
        """Interactive mode does not stay up when there is no cluster to show."""
        url = f"http://127.0.0.1:{free_port()}"
        code, output = self.run_demo("--etcd", url)
        self.assertEqual(code, 1, output)
        self.assertNotIn("keeps running", output)

    def test_not_a_url(self) -> None:
        """--etcd must be an http(s) URL: a usage error, exit 2."""
        code, output = self.run_demo("--etcd", "127.0.0.1:2379")
        self.assertEqual(code, 2, output)
        self.assertIn("--etcd must be an http:// or https:// URL", output)
