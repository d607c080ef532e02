"""A TCP forwarder on 127.0.0.1 whose connections a test can cut (a network gap).

Put it between a client and a real server: C{cut()} aborts every forwarded
connection and refuses new ones (connections are accepted and reset at once, as a
dead link looks to a client), C{restore()} lets them through again.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.protocols.portforward import ProxyFactory, ProxyServer


class _CuttableServer(ProxyServer):
    noisy = False
    factory: _CuttableFactory  # type: ignore[assignment]

    def connectionMade(self) -> None:
        if self.factory.refusing:
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        self.factory.live.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.live.discard(self)
        super().connectionLost(reason)


class _CuttableFactory(ProxyFactory):
    protocol = _CuttableServer
    noisy = False

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.refusing = False
        self.live: set[_CuttableServer] = set()


class CuttableProxy:
    """Forward 127.0.0.1:<port> to 127.0.0.1:C{target_port}."""

    def __init__(self, reactor: Any, target_port: int) -> None:
        self._factory = _CuttableFactory("127.0.0.1", target_port)
        self._port: IListeningPort = reactor.listenTCP(
            0, self._factory, interface="127.0.0.1"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port.getHost().port}"

    def cut(self) -> None:
        """Abort every connection and refuse new ones."""
        self._factory.refusing = True
        for server in list(self._factory.live):
            server.transport.abortConnection()  # type: ignore[attr-defined]
            if server.peer is not None:
                server.peer.transport.abortConnection()  # type: ignore[union-attr]

    def restore(self) -> None:
        """Let connections through again."""
        self._factory.refusing = False

    def stop(self) -> Deferred[None]:
        """Close the listening port and every connection."""
        self.cut()
        d: Deferred[None] = Deferred.fromCoroutine(self._stop())
        return d

    async def _stop(self) -> None:
        stopping = self._port.stopListening()
        if stopping is not None:
            await stopping
