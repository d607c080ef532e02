"""Debian's etcdctl (C{ETCDCTL_API=2}) drives minietcd exactly as it drives real etcd.

Every test runs the same commands against the real etcd and the minietcd of the
conformance suite (tests/minietcd/conformance/peers.py), under a fresh key prefix that
it removes
afterwards, and asserts the same outputs and exit codes on both; that the expectations
hold on real etcd shows they are etcd's. etcdctl first reads C{/v2/members} and then
talks to the advertised client URLs, so these tests also check what minietcd advertises.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid

from attrs import frozen
from twisted.trial.unittest import SynchronousTestCase

from tests.harness.requirements import require_binary
from tests.minietcd.conformance.peers import candidate, reference

COMMAND_TIMEOUT = 20.0
WATCH_REGISTER_TIMEOUT = 10.0


@frozen
class Run:
    """What one etcdctl invocation did."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "2"
    return env


def _index(url: str) -> int:
    """The server's current X-Etcd-Index."""
    with urllib.request.urlopen(url + "/v2/keys/", timeout=5) as response:
        return int(response.headers["X-Etcd-Index"])


def _delete_tree(url: str, key: str) -> None:
    """Remove C{key} and everything below it (TTL keys would expire mid-case later)."""
    request = urllib.request.Request(
        f"{url}/v2/keys{key}?recursive=true", method="DELETE"
    )
    try:
        urllib.request.urlopen(request, timeout=5).close()
    except urllib.error.HTTPError as error:
        error.close()
        if error.code != 404:
            raise


def _watchers(url: str) -> int:
    """The watchers gauge of /v2/stats/store."""
    with urllib.request.urlopen(url + "/v2/stats/store", timeout=5) as response:
        count: int = json.load(response)["watchers"]
        return count


class EtcdctlTests(SynchronousTestCase):
    """etcdctl v2 commands give the same output and exit code on etcd and minietcd."""

    def setUp(self) -> None:
        self.etcdctl = require_binary("etcdctl", "etcd-client")
        kind, url = candidate()
        self.servers = {"etcd": reference().url, kind: url}
        self.prefix = f"/etcdctl-{uuid.uuid4().hex[:10]}"
        for url in self.servers.values():
            self.addCleanup(_delete_tree, url, self.prefix)

    def start(self, url: str, *args: str) -> subprocess.Popen[str]:
        """Start etcdctl against C{url} without waiting for it."""
        process = subprocess.Popen(
            [self.etcdctl, "--endpoints", url, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=_env(),
            text=True,
        )
        self.addCleanup(self._reap, process)
        return process

    def _reap(self, process: subprocess.Popen[str]) -> None:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=COMMAND_TIMEOUT)

    def finish(self, process: subprocess.Popen[str], *args: str) -> Run:
        """Wait (bounded) for C{process} and collect what it did."""
        try:
            stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            self.fail(f"etcdctl {args} did not finish: {stdout!r} {stderr!r}")
        return Run(tuple(args), process.returncode, stdout, stderr)

    def ctl(self, url: str, *args: str) -> Run:
        """Run one etcdctl command against C{url}."""
        return self.finish(self.start(url, *args), *args)

    def assert_run(
        self, server: str, run: Run, code: int, stdout: str, stderr: str = ""
    ) -> None:
        """The exit code and outputs of C{run} are exactly these."""
        self.assertEqual(
            (run.code, run.stdout, run.stderr),
            (code, stdout, stderr),
            f"{server}: etcdctl {' '.join(run.args)}",
        )

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def test_set_and_get(self) -> None:
        """set prints the value; get prints it back; exit code 0."""
        for server, url in self.servers.items():
            run = self.ctl(url, "set", self.key("a"), "hello world")
            self.assert_run(server, run, 0, "hello world\n")
            self.assert_run(
                server, self.ctl(url, "get", self.key("a")), 0, "hello world\n"
            )
            run = self.ctl(url, "set", "--ttl", "100", self.key("a"), "again")
            self.assert_run(server, run, 0, "again\n")

    def test_get_missing_key_exits_4(self) -> None:
        """get of a missing key exits 4 with etcdctl's error line and the index."""
        for server, url in self.servers.items():
            self.ctl(url, "set", self.key("present"), "x")
            index = _index(url)
            run = self.ctl(url, "get", self.key("missing"))
            line = f"Error:  100: Key not found ({self.key('missing')}) [{index}]\n"
            self.assert_run(server, run, 4, "", line)

    def test_get_of_a_dir(self) -> None:
        """get of a directory exits 1 saying it is a directory."""
        for server, url in self.servers.items():
            self.ctl(url, "mkdir", self.key("d"))
            run = self.ctl(url, "get", self.key("d"))
            self.assert_run(server, run, 1, "", f"{self.key('d')}: is a directory\n")

    def test_mk_creates_only_once(self) -> None:
        """mk creates a key; a second mk exits 4 with error 105."""
        for server, url in self.servers.items():
            self.assert_run(server, self.ctl(url, "mk", self.key("m"), "1"), 0, "1\n")
            index = _index(url)
            run = self.ctl(url, "mk", self.key("m"), "2")
            line = f"Error:  105: Key already exists ({self.key('m')}) [{index}]\n"
            self.assert_run(server, run, 4, "", line)
            self.assert_run(server, self.ctl(url, "get", self.key("m")), 0, "1\n")

    def test_mkdir_and_ls_recursive(self) -> None:
        """mkdir makes a dir; ls --recursive lists the tree (dirs marked with -p)."""
        for server, url in self.servers.items():
            self.assert_run(server, self.ctl(url, "mkdir", self.key("d")), 0, "")
            self.ctl(url, "set", self.key("d/b"), "2")
            self.ctl(url, "set", self.key("d/a"), "1")
            self.ctl(url, "set", self.key("d/sub/c"), "3")
            self.ctl(url, "set", self.key("d/_hidden"), "h")
            listed = [self.key(n) for n in ("d/a", "d/b", "d/sub", "d/sub/c")]
            run = self.ctl(url, "ls", "--recursive", self.key("d"))
            self.assertEqual(run.code, 0, f"{server}: {run}")
            self.assertEqual(sorted(run.stdout.splitlines()), listed, server)
            run = self.ctl(url, "ls", "--recursive", "--sort", "-p", self.key("d"))
            marked = [*listed[:2], listed[2] + "/", listed[3]]
            self.assert_run(server, run, 0, "".join(f"{k}\n" for k in marked))
            index = _index(url)
            run = self.ctl(url, "mkdir", self.key("d"))
            line = f"Error:  105: Key already exists ({self.key('d')}) [{index}]\n"
            self.assert_run(server, run, 4, "", line)

    def test_update(self) -> None:
        """update changes an existing key; on a missing key it exits 4 (error 100)."""
        for server, url in self.servers.items():
            self.ctl(url, "set", self.key("u"), "1")
            self.assert_run(
                server, self.ctl(url, "update", self.key("u"), "2"), 0, "2\n"
            )
            run = self.ctl(url, "update", "--ttl", "60", self.key("u"), "3")
            self.assert_run(server, run, 0, "3\n")
            index = _index(url)
            run = self.ctl(url, "update", self.key("nope"), "1")
            line = f"Error:  100: Key not found ({self.key('nope')}) [{index}]\n"
            self.assert_run(server, run, 4, "", line)

    def test_rm_and_rmdir(self) -> None:
        """rm prints the old value; rmdir removes empty dirs only (else error 108)."""
        for server, url in self.servers.items():
            self.ctl(url, "set", self.key("f"), "old")
            run = self.ctl(url, "rm", self.key("f"))
            self.assert_run(server, run, 0, "PrevNode.Value: old\n")
            self.ctl(url, "mkdir", self.key("empty"))
            self.assert_run(server, self.ctl(url, "rmdir", self.key("empty")), 0, "")
            self.ctl(url, "set", self.key("full/x"), "1")
            index = _index(url)
            run = self.ctl(url, "rmdir", self.key("full"))
            line = f"Error:  108: Directory not empty ({self.key('full')}) [{index}]\n"
            self.assert_run(server, run, 4, "", line)
            run = self.ctl(url, "rm", "--recursive", self.key("full"))
            self.assert_run(server, run, 0, "")
            index = _index(url)
            run = self.ctl(url, "get", self.key("full/x"))
            line = f"Error:  100: Key not found ({self.key('full')}) [{index}]\n"
            self.assert_run(server, run, 4, "", line)

    def test_watch_answered_by_set(self) -> None:
        """A waiting etcdctl watch prints what another etcdctl sets, and exits 0."""
        for server, url in self.servers.items():
            before = _watchers(url)
            watch = self.start(url, "watch", self.key("w"))
            deadline = time.monotonic() + WATCH_REGISTER_TIMEOUT
            while _watchers(url) <= before:
                if watch.poll() is not None or time.monotonic() > deadline:
                    self.fail(f"{server}: the watch never showed in stats/store")
                time.sleep(0.02)
            self.assert_run(
                server, self.ctl(url, "set", self.key("w"), "news"), 0, "news\n"
            )
            self.assert_run(server, self.finish(watch, "watch"), 0, "news\n")

    def test_watch_after_index(self) -> None:
        """watch --after-index N returns the first change after N, even a past one."""
        for server, url in self.servers.items():
            self.ctl(url, "set", self.key("w"), "first")
            index = _index(url)
            watch = self.start(url, "watch", "--after-index", str(index), self.key("w"))
            self.ctl(url, "set", self.key("other"), "x")
            self.ctl(url, "set", self.key("w"), "second")
            self.assert_run(server, self.finish(watch, "watch"), 0, "second\n")
