"""The application the routing tests load into real nodes with C{--app}.

    twistd -n clusternode ... --app tests.harness.routeapp:install

It registers three services beside the built-in C{echo}:

  - C{fail}: raises C{KeyError} (a handler that fails must reach the caller as a
    clear error, not a hang);
  - C{publish-big}: publishes C{payload["size"]} bytes of a seeded text on the
    C{big} channel, too large for any datagram, and answers its SHA-256;
  - C{slow}: answers after C{payload} seconds.

Every message received on C{big} is shown in the node's advertisement (so in every
C{GET /status}) as C{{"received": [{"from", "size", "sha256"}, ...]}}.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from twisted.internet.task import deferLater

from twistednode import ClusterNode


def big_text(size: int, seed: str) -> str:
    """C{size} printable characters that depend on C{seed} (so not compressible)."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(rng.choice(alphabet) for _ in range(size))


def install(node: ClusterNode) -> None:
    """Register the services and the C{big} channel's subscriber on C{node}."""
    received: list[dict[str, Any]] = []

    def fail(key: str | bytes, payload: object) -> object:
        raise KeyError(f"no document {key!r}")

    def publish_big(key: str | bytes, payload: Any) -> dict[str, Any]:
        text = big_text(int(payload["size"]), f"{node.node_id}:{key!r}")
        node.publish("big", text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        return {"from": node.node_id, "size": len(text), "sha256": digest}

    def slow(key: str | bytes, payload: Any) -> Any:
        return deferLater(node.reactor, float(payload), lambda: {"slept": payload})

    def on_big(payload: object, envelope: Any, source: object) -> None:
        text = payload if isinstance(payload, str) else ""
        digest = hashlib.sha256(text.encode()).hexdigest()
        received.append({"from": envelope.iid, "size": len(text), "sha256": digest})
        node.set_advertisement({"received": received})

    node.handle("fail", fail)
    node.handle("publish-big", publish_big)
    node.handle("slow", slow)
    node.subscribe("big", on_big)
