"""Cluster nodes as real processes (C{twistd -n clusternode}) on etcd's v3 API.

The etcd here is real etcd 3.4 started without the v2 API, so only v3 can work:
three nodes register under leases, meet and elect; a node killed with SIGKILL
leaves its lease to run out, and the others drop it (its record expires, the
hellos stop); a node stopped cleanly deletes its record at once. A node also
registers over TLS with client-certificate auth (C{--etcd-cacert/--etcd-cert/
--etcd-key}) and with a v3 user and password (C{--etcd-user}).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from twisted.trial.unittest import TestCase

from tests.etcd.test_v3 import shared_etcd_v3
from tests.harness.clusternodes import (
    ClusterNodeProcess,
    NodeView,
    agreed_master_of,
    all_see_all,
    start_nodes,
    stop_nodes,
    wait_for_cluster,
)
from tests.registry.test_etcd_auth import PASSWORD, shared_auth_etcd
from tests.registry.test_etcd_tls import shared_tls_etcd

TTL = 3


def registry_of(node: ClusterNodeProcess) -> dict[str, Any]:
    """The registry part of a node's status, checked to be the v3 API."""
    registry: dict[str, Any] = node.status()["registry"]
    if registry.get("api") != "v3":
        raise AssertionError(
            f"node {node.id} runs the registry on {registry.get('api')!r}, not v3: "
            "clusternode must pass --etcd-api to ClusterNode(etcd_api=...) "
            "(see twistednode/registry/backends.py)\n" + node.describe(10)
        )
    return registry


class NodesOnEtcdV3Tests(TestCase):
    def setUp(self) -> None:
        self.etcd = shared_etcd_v3()
        self.cluster = "nv3-" + uuid.uuid4().hex[:10]

    def start(self, count: int) -> list[ClusterNodeProcess]:
        nodes = start_nodes(
            count,
            etcd=self.etcd.url,
            cluster=self.cluster,
            ttl=TTL,
            extra_args=["--etcd-api", "v3"],
        )
        self.addCleanup(stop_nodes, nodes)
        for node in nodes:
            registry_of(node)  # fail fast if --etcd-api is not honoured
        return nodes

    def settle(self, nodes: list[ClusterNodeProcess]) -> str:
        ids = [n.id for n in nodes]

        def listed(node: ClusterNodeProcess) -> bool:
            # Hellos can introduce a peer before the watch reports its record.
            registry = registry_of(node)
            return registry["state"] == "watching" and set(registry["peers"]) == (
                set(ids) - {node.id}
            )

        def ready(views: list[NodeView]) -> bool:
            return (
                all_see_all(views, ids)
                and agreed_master_of(views) is not None
                and all(listed(node) for node in nodes)
            )

        wait = wait_for_cluster(
            nodes, ready, 20, "three nodes, one master, all in the registry"
        )
        master = agreed_master_of(wait.views)
        assert master is not None
        return master

    def test_sigkill_lets_lease_expire(self) -> None:
        """A SIGKILLed node's lease runs out; the others drop it, the master stays."""
        nodes = self.start(3)
        master = self.settle(nodes)
        victim = next(n for n in nodes if n.id != master)
        others = [n for n in nodes if n is not victim]
        victim.kill()
        killed_at = time.monotonic()

        def gone(views: list[NodeView]) -> bool:
            return all(victim.id not in v.members for v in views)

        wait_for_cluster(others, gone, 10, "the killed node dropped by its peers")
        dropped = time.monotonic() - killed_at

        def expired(views: list[NodeView]) -> bool:
            return all(victim.id not in registry_of(n)["peers"] for n in others)

        wait_for_cluster(others, expired, TTL + 5, "its lease running out")
        expired_after = time.monotonic() - killed_at
        self.assertGreater(expired_after, 1.0, "a lease outlives the kill a while")
        self.assertLess(expired_after, TTL + 2)
        for node in others:
            status = node.status()
            self.assertEqual(status["master"], master)
            self.assertEqual(registry_of(node)["counters"]["recreations"], 0)
        print(
            f"\n[etcd v3] SIGKILLed node dropped by peers after {dropped:.2f} s, "
            f"its lease ran out after {expired_after:.2f} s (ttl {TTL} s)"
        )

    def test_clean_stop_deletes_at_once(self) -> None:
        """A node stopped cleanly is gone from its peers' registry view at once."""
        nodes = self.start(3)
        master = self.settle(nodes)
        leaving = next(n for n in nodes if n.id != master)
        others = [n for n in nodes if n is not leaving]
        leaving.stop()
        stopped_at = time.monotonic()

        def gone(views: list[NodeView]) -> bool:
            return all(
                leaving.id not in v.members
                and leaving.id not in registry_of(n)["peers"]
                for v, n in zip(views, others, strict=True)
            )

        wait_for_cluster(others, gone, 5, "the stopped node gone everywhere")
        self.assertLess(time.monotonic() - stopped_at, 1.0)


class NodeWithAuthTests(TestCase):
    def test_node_with_user_and_password(self) -> None:
        """--etcd-user logs in; a wrong password shows etcd's reason in /status."""
        etcd = shared_auth_etcd()
        cluster = "auth-" + uuid.uuid4().hex[:10]
        nodes = []
        for password in (PASSWORD, "wrong"):
            node = ClusterNodeProcess(
                etcd=etcd.url,
                cluster=cluster,
                extra_args=["--etcd-api", "v3", "--etcd-user", f"root:{password}"],
            )
            node.start()
            self.addCleanup(node.stop)
            nodes.append(node)
        good, bad = nodes

        def settled(views: list[NodeView]) -> bool:
            return (
                registry_of(good)["state"] == "watching"
                and registry_of(bad)["lastError"] is not None
            )

        wait_for_cluster(nodes, settled, 15, "one node in, one refused")
        error = registry_of(bad)["lastError"]
        self.assertIn("refused user 'root'", error)
        self.assertIn("invalid user ID or password", error)
        self.assertNotEqual(registry_of(bad)["state"], "watching")


class NodeOverTLSTests(TestCase):
    def test_node_registers_over_tls(self) -> None:
        """A node with --etcd-cacert/--etcd-cert/--etcd-key registers over https."""
        etcd = shared_tls_etcd()
        pki = etcd.pki
        node = ClusterNodeProcess(
            etcd=etcd.url,
            cluster="tls-" + uuid.uuid4().hex[:10],
            extra_args=[
                "--etcd-api",
                "v3",
                "--etcd-cacert",
                pki.ca,
                "--etcd-cert",
                pki.client_cert,
                "--etcd-key",
                pki.client_key,
            ],
        )
        node.start()
        self.addCleanup(node.stop)
        registry_of(node)

        def registered(views: list[NodeView]) -> bool:
            return bool(registry_of(node)["state"] == "watching")

        wait_for_cluster([node], registered, 15, "the node registered over TLS")
        registry = registry_of(node)
        self.assertEqual(registry["endpoint"], etcd.url)
        self.assertTrue(registry["endpoint"].startswith("https://"))
        self.assertIsNotNone(registry["ownIndex"])
