# -*- test-case-name: tests.metrics.test_exposition -*-
"""L{NodeMetrics}: one node's Prometheus registry and its C{GET /metrics} answer.

Each node has a C{CollectorRegistry} of its own (never the process-wide default
one), so several nodes in one process each show their own numbers. It holds the
node's L{NodeCollector} and prometheus_client's process, platform and garbage
collector collectors. The answer is in the format the scraper asks for
(C{Accept}): Prometheus text by default, OpenMetrics when asked, as
C{prometheus_client.exposition.choose_encoder} decides.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from attrs import define, field
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from twisted.web.iweb import IRequest

from twistednode.metrics.collector import HelloCounts, NodeCollector, RequestCounts

__all__ = ["NodeMetrics"]


@define(eq=False)
class NodeMetrics:
    """A node's metrics registry, and the renderer the status API serves.

    @ivar document: the node's status document provider.
    @ivar hellos: the socket's hello counts.
    @ivar requests: the registry calls' costs (None without a registry).
    @ivar process: also collect the process's own metrics (CPU, memory, GC).
    """

    document: Callable[[], Mapping[str, Any]]
    hellos: HelloCounts
    requests: RequestCounts | None = None
    process: bool = True
    registry: CollectorRegistry = field(init=False, factory=CollectorRegistry)

    def __attrs_post_init__(self) -> None:
        self.registry.register(NodeCollector(self.document, self.hellos, self.requests))
        if self.process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """Every metric in the format C{accept} asks for, and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def render(self, request: IRequest) -> bytes:
        """Answer C{GET /metrics}: the exposition, with its content type."""
        accept = request.getHeader(b"accept")
        body, content_type = self.exposition(
            "" if accept is None else accept.decode("latin-1")
        )
        request.setHeader(b"content-type", content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return body
