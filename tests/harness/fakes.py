"""In-memory fakes for node-level unit tests: one clock, a UDP network between nodes.

L{MemoryUDPReactor} is a C{MemoryReactorClock} that also implements C{listenUDP}:
datagrams written by one listening protocol are delivered to the protocol bound to
the destination address after C{delay} seconds of the shared clock, with the
sender's bound address as the source, like the loopback interface.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock


class MemoryUDPPort:
    """The transport and the listening port of one bound protocol."""

    def __init__(
        self,
        reactor: MemoryUDPReactor,
        protocol: DatagramProtocol,
        host: str,
        port: int,
    ) -> None:
        self.reactor = reactor
        self.protocol = protocol
        self.host = host
        self.port = port
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.listening = True

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", self.host, self.port)

    def write(self, packet: bytes, addr: tuple[str, int]) -> None:
        self.written.append((packet, addr))
        if self.listening:
            self.reactor.deliver(packet, (self.host, self.port), addr)

    def stopListening(self) -> None:
        if self.listening:
            self.listening = False
            self.reactor.unbind(self)
            self.protocol.doStop()


class MemoryUDPReactor(MemoryReactorClock):
    """A memory reactor whose UDP ports reach each other through the shared clock."""

    def __init__(self, delay: float = 0.001) -> None:
        super().__init__()
        self.delay = delay
        self.bound: dict[tuple[str, int], MemoryUDPPort] = {}
        self.dropped: list[tuple[bytes, tuple[str, int]]] = []
        self._next_port = 40000

    def listenUDP(
        self,
        port: int,
        protocol: DatagramProtocol,
        interface: str = "",
        maxPacketSize: int = 8192,
    ) -> MemoryUDPPort:
        host = interface or "0.0.0.0"
        if port == 0:
            self._next_port += 1
            port = self._next_port
        if any(p == port for (_, p) in self.bound):
            raise OSError(98, "Address already in use")
        bound = MemoryUDPPort(self, protocol, host, port)
        self.bound[(host, port)] = bound
        protocol.makeConnection(bound)  # type: ignore[arg-type]
        return bound

    def unbind(self, port: MemoryUDPPort) -> None:
        self.bound.pop((port.host, port.port), None)

    def _target(self, addr: tuple[str, int]) -> MemoryUDPPort | None:
        host, port = addr
        for candidate in ((host, port), ("0.0.0.0", port)):
            if candidate in self.bound:
                return self.bound[candidate]
        return None

    def deliver(self, packet: bytes, source: tuple[str, int], addr: Any) -> None:
        host, port = source
        if host == "0.0.0.0":
            source = ("127.0.0.1", port)

        def arrive() -> None:
            target = self._target(addr)
            if target is None or not target.listening:
                self.dropped.append((packet, addr))
                return
            target.protocol.datagramReceived(packet, source)

        self.callLater(self.delay, arrive)

    def run_for(self, seconds: float, step: float = 0.01) -> None:
        """Advance the clock by C{seconds} in small steps, firing everything due."""
        end = self.seconds() + seconds
        while self.seconds() < end - 1e-9:
            self.advance(min(step, end - self.seconds()))
