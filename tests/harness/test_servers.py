"""The process fixtures of tests/harness/servers.py start, answer, stop and clean up."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.harness.servers import (
    MiniEtcdProcess,
    RealEtcd,
    RealEtcdCluster,
    ServerStartError,
    free_port,
    shared_minietcd,
    shared_real_etcd,
)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _put(url: str, value: str) -> Any:
    request = urllib.request.Request(
        url,
        data=f"value={value}".encode(),
        method="PUT",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def _refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.URLError as error:
        return isinstance(error.reason, ConnectionRefusedError)
    return False


class FreePortTests(SynchronousTestCase):
    """free_port finds a bindable loopback port."""

    def test_port_can_be_bound(self) -> None:
        """The returned port can be bound on 127.0.0.1."""
        port = free_port()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
        self.assertTrue(1024 <= port <= 65535)


class RealEtcdTests(SynchronousTestCase):
    """RealEtcd runs a real single-member etcd with the v2 API and cleans up."""

    def test_start_serves_v2_and_stop_removes_everything(self) -> None:
        """A started etcd serves /v2/keys; stop() ends it and removes its data dir."""
        etcd = RealEtcd().start()
        self.addCleanup(etcd.stop)
        body = _put(etcd.url + "/v2/keys/fixture", "1")
        self.assertEqual(body["node"]["value"], "1")
        self.assertEqual(
            _get_json(etcd.url + "/v2/members")["members"][0]["clientURLs"], [etcd.url]
        )
        self.assertTrue(os.path.isdir(etcd.data_dir))
        etcd.stop()
        self.assertFalse(etcd.running)
        self.assertFalse(os.path.exists(etcd.workdir))
        self.assertTrue(_refused(etcd.url + "/version"))

    def test_v2_can_be_disabled(self) -> None:
        """enable_v2=False starts etcd without the v2 keys API."""
        with RealEtcd(enable_v2=False) as etcd:
            self.assertEqual(_get_json(etcd.url + "/version")["etcdserver"][:2], "3.")
            with self.assertRaises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(etcd.url + "/v2/keys/", timeout=5)
            caught.exception.close()
            self.assertEqual(caught.exception.code, 404)
        self.assertFalse(etcd.running)

    def test_failed_start_reports_output(self) -> None:
        """A start that fails raises ServerStartError with etcd's own complaint."""
        etcd = RealEtcd(extra_args=["--no-such-flag"])
        self.addCleanup(etcd.stop)
        with self.assertRaises(ServerStartError) as caught:
            etcd.start()
        self.assertIn("no-such-flag", str(caught.exception))
        self.assertFalse(etcd.running)

    def test_shared_instance_is_reused(self) -> None:
        """shared_real_etcd() returns the same running server every time."""
        first = shared_real_etcd()
        self.assertIs(shared_real_etcd(), first)
        self.assertTrue(first.running)


class RealEtcdClusterTests(SynchronousTestCase):
    """RealEtcdCluster runs several members that survive losing one."""

    def test_three_members_one_killed_and_restarted(self) -> None:
        """Three members agree; the leader killed, a new one serves; the old rejoins."""
        cluster = RealEtcdCluster(size=3).start()
        self.addCleanup(cluster.stop)
        members = _get_json(cluster.urls[0] + "/v2/members")["members"]
        self.assertEqual(
            sorted(u for m in members for u in m["clientURLs"]), sorted(cluster.urls)
        )
        leader = cluster.leader()
        _put(leader.url + "/v2/keys/replicated", "before")
        leader.kill()
        self.assertFalse(leader.running)
        successor = cluster.leader()
        self.assertIsNot(successor, leader)
        body = _put(successor.url + "/v2/keys/replicated", "during")
        self.assertEqual(body["prevNode"]["value"], "before")
        leader.start()
        got = _get_json(leader.url + "/v2/keys/replicated?quorum=true")
        self.assertEqual(got["node"]["value"], "during")


class MiniEtcdProcessTests(SynchronousTestCase):
    """MiniEtcdProcess runs minietcd under twistd and cleans up."""

    def test_start_serves_and_stop_ends_it(self) -> None:
        """minietcd answers /version and /v2/keys, and stop() ends the process."""
        minietcd = MiniEtcdProcess().start()
        self.addCleanup(minietcd.stop)
        self.assertIn("etcdserver", _get_json(minietcd.url + "/version"))
        self.assertEqual(_put(minietcd.url + "/v2/keys/f", "1")["node"]["value"], "1")
        minietcd.stop()
        self.assertFalse(minietcd.running)
        self.assertTrue(_refused(minietcd.url + "/version"))

    def test_kill(self) -> None:
        """kill() ends minietcd at once."""
        minietcd = MiniEtcdProcess().start()
        self.addCleanup(minietcd.stop)
        minietcd.kill()
        self.assertFalse(minietcd.running)

    def test_shared_instance_is_reused(self) -> None:
        """shared_minietcd() returns the same running server every time."""
        self.assertIs(shared_minietcd(), shared_minietcd())
