# -*- test-case-name: tests.registry.test_backends -*-
"""The HTTP client the etcd clients share: treq over one persistent, quiet pool.

Twisted's pool logs "Starting factory ..." for every new connection; a node that
reconnects to etcd now and then should not fill its log with that, so the pool's
connection factory is made quiet. TLS options come from L{twistednode.etcd.tls},
imported only by those who configure TLS (it loads OpenSSL).

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from treq.client import HTTPClient
from twisted.web.client import Agent, HTTPConnectionPool, _HTTP11ClientFactory

if TYPE_CHECKING:
    from twistednode.etcd.tls import ClientTLS


class _QuietFactory(_HTTP11ClientFactory):
    noisy = False


class QuietPool(HTTPConnectionPool):
    """A persistent connection pool that does not log each new connection."""

    _factory = _QuietFactory


def http_client(
    reactor: Any, tls: ClientTLS | None = None, connect_timeout: float = 5.0
) -> tuple[HTTPClient, HTTPConnectionPool]:
    """
    A treq C{HTTPClient} for etcd over a persistent pool, and the pool to close.

    With C{tls}, https:// connections use L{ClientTLS.policy}; without it, the
    platform's trust store (Twisted's C{BrowserLikePolicyForHTTPS}).
    """
    pool = QuietPool(reactor, persistent=True)
    extra: dict[str, Any] = {}
    if tls is not None:
        extra["contextFactory"] = tls.policy()
    agent = Agent(reactor, pool=pool, connectTimeout=connect_timeout, **extra)
    return HTTPClient(agent), pool
