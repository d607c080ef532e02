"""Nodes in different networks find each other through the registry.

Each node runs in its own subnet (L{tests.harness.routednet}: network namespaces
joined by a router namespace), minietcd in a subnet of its own. Nothing but the
registry tells a node where the others are: they find each other, elect one master
by the registry's lease, and fail over when it is killed.

A node behind a masquerading NAT (a home router, its UDP and status ports forwarded)
joins with C{--advertise} set to the NAT's outside address: its record names that
address, the others' hellos reach it through the forwarded port, and the cluster is
whole.

Without C{--advertise} (and even without the UDP port forwarded) it registers its
private address, which nobody outside can reach, and yet it joins: its hellos get
out with the NAT's address as their source (masquerading keeps the port), the others
answer where a hello comes from (node-discover's rule), and the NAT's connection
tracking lets those answers back in while its hellos keep the mapping alive. The
others must run with C{--trust-hello-address}: the registry being the membership
authority, they otherwise refuse hellos that do not come from the address the record
names (C{dropped.address}). What reads only the registry (C{twistednode members}, a
node that has not heard it yet) sees the private address. The README says to use
C{--advertise}.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

from twisted.trial.unittest import TestCase

from tests.harness.clusternodes import (
    FAST_TIMERS,
    ClusterNodeProcess,
    stop_nodes,
    wait_for_agreed_master,
)
from tests.harness.netns import require_netns
from tests.harness.routednet import RoutedNetwork
from tests.harness.servers import MiniEtcdProcess

SETTLE = 30.0
UDP_PORT = 41234
HTTP_PORT = 48080


class _Networks:
    """A routed network, minietcd in its own subnet, and helpers to start nodes."""

    sites = 3
    nat = False

    def setUp(self) -> None:
        ip, iptables = require_netns()
        self.network = RoutedNetwork(
            self.sites, nat=self.nat, ip=ip, iptables=iptables
        ).create()
        self.addCleanup(self.network.destroy)  # type: ignore[attr-defined]
        self.registry = MiniEtcdProcess(
            host=self.network.registry_address,
            prefix=self.network.exec_prefix(self.network.registry),
        )
        self.addCleanup(self.registry.stop)  # type: ignore[attr-defined]
        self.registry.start()
        self.cluster = "net-" + uuid.uuid4().hex[:8]
        self.nodes: list[ClusterNodeProcess] = []
        self.addCleanup(stop_nodes, self.nodes)  # type: ignore[attr-defined]

    def node(
        self,
        namespace: str,
        host: str,
        *,
        reach: str | None = None,
        weight: float | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> ClusterNodeProcess:
        node = ClusterNodeProcess(
            etcd=self.registry.url,
            cluster=self.cluster,
            udp_port=UDP_PORT,
            http_port=HTTP_PORT,
            weight=weight,
            timers=FAST_TIMERS,
            host=host,
            prefix=self.network.exec_prefix(namespace),
            reach=reach,
            extra_args=extra_args,
        )
        self.nodes.append(node)
        node.launch()
        return node

    def site_nodes(self, *extra: str) -> list[ClusterNodeProcess]:
        nodes = [
            self.node(
                self.network.site(i),
                self.network.site_address(i),
                weight=float(10 - i),
                extra_args=extra,
            )
            for i in range(self.sites)
        ]
        for node in nodes:
            node.wait_ready(SETTLE)
        return nodes


class SubnetTests(_Networks, TestCase):
    """Three nodes, three subnets, one router: the registry is all they share."""

    def test_nodes_in_separate_subnets_find_each_other_elect_and_fail_over(
        self,
    ) -> None:
        nodes = self.site_nodes()
        master = wait_for_agreed_master(nodes, SETTLE)
        views = {n.id: n.status() for n in nodes}
        for node in nodes:
            addresses = {m["address"] for m in views[node.id]["members"]}
            others = {n.host for n in nodes if n is not node}
            # Each sees the others at their own subnets' addresses.
            self.assertEqual(addresses, others)
            self.assertEqual(views[node.id]["election"]["mode"], "lease")
        (victim,) = [n for n in nodes if n.id == master]
        victim.kill()
        rest = [n for n in nodes if n is not victim]
        successor = wait_for_agreed_master(rest, SETTLE, "the survivors electing")
        self.assertNotEqual(successor, master)


class NatTests(_Networks, TestCase):
    """Two nodes in their subnets and one at home, behind a masquerading NAT."""

    sites = 2
    nat = True

    def setUp(self) -> None:
        super().setUp()
        self.network.forward("udp", UDP_PORT)
        self.network.forward("tcp", HTTP_PORT)

    def home_node(self, *extra: str) -> ClusterNodeProcess:
        node = self.node(
            self.network.home,
            self.network.home_address,
            reach=self.network.public_address,
            weight=1.0,
            extra_args=extra,
        )
        node.wait_ready(SETTLE)
        return node

    def test_node_behind_nat_joins_with_advertise(self) -> None:
        """--advertise NAT-ADDRESS: its record and hellos name the forwarded
        address; everyone sees everyone and agrees on one master."""
        outside = self.site_nodes()
        home = self.home_node("--advertise", self.network.public_address)
        everyone = [*outside, home]
        wait_for_agreed_master(everyone, SETTLE, "the cluster, the home node in it")
        for node in outside:
            (seen,) = [m for m in node.status()["members"] if m["id"] == home.id]
            self.assertEqual(
                (seen["address"], seen["port"]),
                (self.network.public_address, UDP_PORT),
            )
        me = home.status()["self"]
        self.assertEqual(me["address"], self.network.public_address)

    def test_node_behind_nat_without_advertise_registers_its_private_address(
        self,
    ) -> None:
        """Without --advertise (and without the UDP port forwarded) its record names
        its private address; the others, run with --trust-hello-address (the
        registry's authority then checks the port alone), accept its hellos from
        the NAT's address and reach it there, through the NAT's connection
        tracking."""
        self.network.unforward("udp", UDP_PORT)
        outside = self.site_nodes("--trust-hello-address")
        home = self.home_node()
        everyone = [*outside, home]
        wait_for_agreed_master(everyone, SETTLE, "the cluster, the home node in it")
        self.assertEqual(
            record_of(self.registry.url, self.cluster, home.id)["address"],
            self.network.home_address,
        )
        for node in outside:
            (seen,) = [m for m in node.status()["members"] if m["id"] == home.id]
            self.assertEqual(seen["address"], self.network.public_address)


def record_of(url: str, cluster: str, node_id: str) -> dict[str, Any]:
    """A node's record in a v2 registry, as JSON."""
    key = f"{url}/v2/keys/twistednode/{cluster}/members/{node_id}"
    with urllib.request.urlopen(key, timeout=5) as response:
        record: dict[str, Any] = json.loads(json.load(response)["node"]["value"])
    return record
