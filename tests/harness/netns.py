"""Network namespaces for fault tests: one per node, a bridge between them, iptables.

L{Topology} builds, for one test, a private layer-2 network that nothing else uses:

  - a hub namespace holding a bridge;
  - one namespace per node, each joined to the bridge by a veth pair, with its own
    address (C{10.A.B.2}, C{.3}, ...) and its own iptables tables;
  - one veth pair from the test's own (root) namespace to the bridge, with address
    C{10.A.B.1}: the registry listens there, and the test reaches every node's
    status API through it.

Traffic stays on these links: no route, forwarding or NAT is added anywhere, and the
root namespace's firewall is never touched. A partition is an iptables rule inside one
node's namespace (L{Topology.cut_udp}, L{Topology.cut_tcp_to}); L{Topology.destroy}
deletes the namespaces, which takes their links and rules with them. Every name
carries a random tag, so two tests (or two test runs) never share anything.

Needs root and the C{ip} (iproute2) and C{iptables} programs: L{require_netns} skips,
saying why, where they are missing.
"""

from __future__ import annotations

import os
import random
import subprocess
import uuid
from collections.abc import Sequence

from attrs import define, field
from twisted.trial.unittest import SkipTest

from tests.harness.childprocess import Backstop
from tests.harness.requirements import require_binary

#: The address block the topologies draw from (private, unused on test machines).
SECOND_OCTETS = range(200, 250)


def require_netns() -> tuple[str, str]:
    """The paths of C{ip} and C{iptables}; skip when not root or either is missing."""
    if os.geteuid() != 0:
        raise SkipTest("network namespaces and iptables need root")
    return require_binary("ip", "iproute2"), require_binary("iptables", "iptables")


def _run(argv: Sequence[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}"
        )


@define(eq=False)
class Topology:
    """A bridge, C{size} node namespaces and the root's link (module docstring)."""

    size: int
    ip: str = "ip"
    iptables: str = "iptables"
    tag: str = field(factory=lambda: uuid.uuid4().hex[:6])
    subnet: str = field(
        factory=lambda: f"10.{random.choice(SECOND_OCTETS)}.{random.randrange(256)}"
    )
    _created: list[str] = field(factory=list, init=False)
    _root_link: str | None = field(default=None, init=False)

    @property
    def hub(self) -> str:
        return f"tn{self.tag}-hub"

    @property
    def host_address(self) -> str:
        """The root namespace's address on the bridge: where the registry listens."""
        return f"{self.subnet}.1"

    def namespace(self, index: int) -> str:
        """The name of node C{index}'s namespace (0-based)."""
        return f"tn{self.tag}-n{index}"

    def address(self, index: int) -> str:
        """Node C{index}'s address."""
        return f"{self.subnet}.{index + 2}"

    def create(self) -> Topology:
        """Build everything; on any failure, remove what was built and re-raise."""
        try:
            self._create()
        except BaseException:
            self.destroy()
            raise
        _backstop.add(self)
        return self

    def _create(self) -> None:
        ip, hub = self.ip, self.hub
        _run([ip, "netns", "add", hub])
        self._created.append(hub)
        _run([ip, "-n", hub, "link", "add", "br0", "type", "bridge"])
        _run([ip, "-n", hub, "link", "set", "br0", "up"])
        root_link = f"tn{self.tag}-r"
        _run([ip, "link", "add", root_link, "type", "veth", "peer", "name", "p-root"])
        self._root_link = root_link
        _run([ip, "link", "set", "p-root", "netns", hub])
        _run([ip, "-n", hub, "link", "set", "p-root", "master", "br0", "up"])
        _run([ip, "addr", "add", f"{self.host_address}/24", "dev", root_link])
        _run([ip, "link", "set", root_link, "up"])
        for index in range(self.size):
            name = self.namespace(index)
            _run([ip, "netns", "add", name])
            self._created.append(name)
            peer = f"p{index}"
            _run(
                [
                    ip,
                    "-n",
                    name,
                    "link",
                    "add",
                    "eth0",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    peer,
                ]
            )
            _run([ip, "-n", name, "link", "set", peer, "netns", hub])
            _run([ip, "-n", hub, "link", "set", peer, "master", "br0", "up"])
            _run(
                [
                    ip,
                    "-n",
                    name,
                    "addr",
                    "add",
                    f"{self.address(index)}/24",
                    "dev",
                    "eth0",
                ]
            )
            _run([ip, "-n", name, "link", "set", "eth0", "up"])
            _run([ip, "-n", name, "link", "set", "lo", "up"])

    def exec_prefix(self, index: int) -> list[str]:
        """The argv prefix that runs a program in node C{index}'s namespace.

        C{ip netns exec} execs the program in place, so its pid is the program's
        and signals (SIGSTOP, SIGKILL) reach it directly.
        """
        return [self.ip, "netns", "exec", self.namespace(index)]

    def _iptables(self, index: int, *rule: str) -> None:
        _run([*self.exec_prefix(index), self.iptables, "-w", *rule])

    def cut_udp(self, index: int) -> None:
        """Drop every UDP datagram into and out of node C{index} (its hellos)."""
        for chain in ("INPUT", "OUTPUT"):
            self._iptables(index, "-A", chain, "-p", "udp", "-j", "DROP")

    def cut_tcp_to(self, index: int, address: str, port: int) -> None:
        """Drop node C{index}'s TCP traffic with C{address:port} (its registry)."""
        self._iptables(
            index,
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            address,
            "--dport",
            str(port),
            "-j",
            "DROP",
        )
        self._iptables(
            index,
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "-s",
            address,
            "--sport",
            str(port),
            "-j",
            "DROP",
        )

    def heal(self, index: int) -> None:
        """Remove every rule of node C{index}'s namespace."""
        for chain in ("INPUT", "OUTPUT"):
            self._iptables(index, "-F", chain)

    def destroy(self) -> None:
        """Delete every namespace and link this topology made (idempotent)."""
        for name in reversed(self._created):
            subprocess.run([self.ip, "netns", "del", name], capture_output=True)
        self._created.clear()
        if self._root_link is not None:
            subprocess.run(
                [self.ip, "link", "del", self._root_link], capture_output=True
            )
            self._root_link = None
        _backstop.discard(self)


_backstop: Backstop[Topology] = Backstop(lambda topology: topology.destroy())
