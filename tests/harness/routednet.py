"""Networks across subnets for tests: sites joined by a router, and a home behind NAT.

L{RoutedNetwork} builds, for one test, an internet in miniature that nothing else
uses, out of network namespaces:

  - a router namespace that forwards between its links;
  - C{sites} site namespaces, each alone in its own subnet C{10.A.<n>.0/24} (the
    router is C{.1}, the site C{.2}), its default route through the router;
  - a registry namespace, in its own subnet C{10.A.100.0/24}, the same way;
  - with C{nat=True}, a home: a NAT namespace whose outside is C{10.A.200.2} (its
    default route through the router) and whose inside is C{192.168.77.1}, in front
    of a home namespace at C{192.168.77.2}. The NAT masquerades what leaves, as a home
    router does, and L{RoutedNetwork.forward} forwards a port of its outside address
    to the home, as a user does on theirs. The router knows no route into the home:
    its private subnet is reachable only through the forwarded ports;
  - a link from the test's own (root) namespace to the router (C{10.A.250.0/24}),
    with one route, C{10.A.0.0/16}, through it: the test reaches the registry and the
    nodes' status APIs that way. Deleting the link deletes the route.

Nothing else of the root namespace is touched (no forwarding, no firewall rule);
L{RoutedNetwork.destroy} deletes the namespaces and the root's link, which takes every
address, route and rule with them. Names carry a random tag, so two runs never share
anything. Needs root, C{ip} and C{iptables} (L{tests.harness.netns.require_netns}).
"""

from __future__ import annotations

import random
import subprocess
import uuid
from collections.abc import Sequence

from attrs import define, field

from tests.harness.childprocess import Backstop
from tests.harness.netns import SECOND_OCTETS

#: The home's private subnet, behind the NAT (only ever inside its namespaces).
HOME_SUBNET = "192.168.77"
REGISTRY_NET = 100
NAT_NET = 200
ROOT_NET = 250


def _run(argv: Sequence[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}"
        )


@define(eq=False)
class RoutedNetwork:
    """Sites, a registry subnet and an optional NAT home (see the module docstring)."""

    sites: int
    nat: bool = False
    ip: str = "ip"
    iptables: str = "iptables"
    tag: str = field(factory=lambda: uuid.uuid4().hex[:6])
    block: str = field(factory=lambda: f"10.{random.choice(SECOND_OCTETS)}")
    _created: list[str] = field(factory=list, init=False)
    _root_link: str | None = field(default=None, init=False)

    # -- names and addresses ---------------------------------------------------------

    @property
    def router(self) -> str:
        return f"tn{self.tag}-rt"

    def site(self, index: int) -> str:
        """Site C{index}'s namespace (0-based)."""
        return f"tn{self.tag}-s{index}"

    def site_address(self, index: int) -> str:
        return f"{self.block}.{index + 1}.2"

    @property
    def registry(self) -> str:
        return f"tn{self.tag}-reg"

    @property
    def registry_address(self) -> str:
        return f"{self.block}.{REGISTRY_NET}.2"

    @property
    def nat_namespace(self) -> str:
        return f"tn{self.tag}-nat"

    @property
    def home(self) -> str:
        return f"tn{self.tag}-home"

    @property
    def public_address(self) -> str:
        """The NAT's outside address: the home as the rest of the network sees it."""
        return f"{self.block}.{NAT_NET}.2"

    @property
    def home_address(self) -> str:
        """The home's private address (unroutable from outside the NAT)."""
        return f"{HOME_SUBNET}.2"

    def exec_prefix(self, namespace: str) -> list[str]:
        """The argv prefix that runs a program in C{namespace} (its pid is the
        program's: C{ip netns exec} execs in place)."""
        return [self.ip, "netns", "exec", namespace]

    # -- building --------------------------------------------------------------------

    def create(self) -> RoutedNetwork:
        """Build everything; on any failure, remove what was built and re-raise."""
        try:
            self._create()
        except BaseException:
            self.destroy()
            raise
        _backstop.add(self)
        return self

    def _namespace(self, name: str) -> None:
        _run([self.ip, "netns", "add", name])
        self._created.append(name)
        _run([self.ip, "-n", name, "link", "set", "lo", "up"])

    def _sysctl(self, namespace: str, setting: str) -> None:
        _run([*self.exec_prefix(namespace), "sysctl", "-qw", setting])

    def _link(
        self, a: str, a_if: str, a_addr: str, b: str, b_if: str, b_addr: str
    ) -> None:
        """A veth pair between namespaces C{a} and C{b}, addressed /24 at both ends."""
        ip = self.ip
        # Each end made in its own namespace at once: the names may exist elsewhere.
        _run(
            [ip, "link", "add", a_if, "netns", a, "type", "veth"]
            + ["peer", "name", b_if, "netns", b]
        )
        for ns, name, address in ((a, a_if, a_addr), (b, b_if, b_addr)):
            _run([ip, "-n", ns, "addr", "add", f"{address}/24", "dev", name])
            _run([ip, "-n", ns, "link", "set", name, "up"])

    def _stub(self, namespace: str, net: int, name: str) -> None:
        """C{namespace} alone in subnet C{net}, its default route the router."""
        gateway = f"{self.block}.{net}.1"
        self._link(
            self.router, name, gateway, namespace, "eth0", f"{self.block}.{net}.2"
        )
        _run([self.ip, "-n", namespace, "route", "add", "default", "via", gateway])

    def _create(self) -> None:
        ip = self.ip
        self._namespace(self.router)
        self._sysctl(self.router, "net.ipv4.ip_forward=1")
        for index in range(self.sites):
            self._namespace(self.site(index))
            self._stub(self.site(index), index + 1, f"s{index}")
        self._namespace(self.registry)
        self._stub(self.registry, REGISTRY_NET, "reg")
        if self.nat:
            self._create_home()
        root_link = f"tn{self.tag}-r"
        _run([ip, "link", "add", root_link, "type", "veth", "peer", "name", "root"])
        self._root_link = root_link
        _run([ip, "link", "set", "root", "netns", self.router])
        gateway = f"{self.block}.{ROOT_NET}.1"
        _run([ip, "-n", self.router, "addr", "add", f"{gateway}/24", "dev", "root"])
        _run([ip, "-n", self.router, "link", "set", "root", "up"])
        _run([ip, "addr", "add", f"{self.block}.{ROOT_NET}.2/24", "dev", root_link])
        _run([ip, "link", "set", root_link, "up"])
        _run(
            [
                ip,
                "route",
                "add",
                f"{self.block}.0.0/16",
                "via",
                gateway,
                "dev",
                root_link,
            ]
        )

    def _create_home(self) -> None:
        nat, home = self.nat_namespace, self.home
        self._namespace(nat)
        self._namespace(home)
        self._stub(nat, NAT_NET, "nat")
        self._sysctl(nat, "net.ipv4.ip_forward=1")
        self._link(nat, "lan", f"{HOME_SUBNET}.1", home, "eth0", self.home_address)
        _run(
            [self.ip, "-n", home, "route", "add", "default", "via", f"{HOME_SUBNET}.1"]
        )
        self._nat_rule(
            "-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-j", "MASQUERADE"
        )

    def _nat_rule(self, *rule: str) -> None:
        _run([*self.exec_prefix(self.nat_namespace), self.iptables, "-w", *rule])

    def forward(self, protocol: str, port: int, action: str = "-A") -> None:
        """Forward C{protocol} (udp or tcp) port C{port} of the NAT's outside address
        to the same port of the home (C{action} C{-D} takes it back)."""
        self._nat_rule(
            "-t",
            "nat",
            action,
            "PREROUTING",
            "-i",
            "eth0",
            "-p",
            protocol,
            "--dport",
            str(port),
            "-j",
            "DNAT",
            "--to-destination",
            f"{self.home_address}:{port}",
        )

    def unforward(self, protocol: str, port: int) -> None:
        """Stop forwarding what L{forward} forwarded."""
        self.forward(protocol, port, "-D")

    def destroy(self) -> None:
        """Delete every namespace and link this network made (idempotent)."""
        for name in reversed(self._created):
            subprocess.run([self.ip, "netns", "del", name], capture_output=True)
        self._created.clear()
        if self._root_link is not None:
            subprocess.run(
                [self.ip, "link", "del", self._root_link], capture_output=True
            )
            self._root_link = None
        _backstop.discard(self)


_backstop: Backstop[RoutedNetwork] = Backstop(lambda network: network.destroy())
