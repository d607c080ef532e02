"""A small document store written on twistednode's public API, for the demo.

    twistd -n clusternode ... --app demo.docstore:install

Each document lives on the node that owns its key, in memory, one copy. The
services (call them with C{node.call}, or over HTTP on any node's status port:
C{POST /v1/route/<service>/<key>} with a JSON body):

    - C{docs.put}: the payload is the document (any JSON value), stored under the
      key; answers C{{"key", "storedBy", "documents"}} (this node's count after it).
    - C{docs.get}: answers C{{"key", "owner", "found", "document"}}; a key never put,
      or whose document was lost with a dead node, is C{"found": false}.
    - C{docs.handoff}: between nodes: C{{"document": value}} is stored unless the
      key already has a document (a put that reached the new owner first is newer);
      answers C{{"key", "storedBy", "kept"}}.

When ownership changes (a node joins, or its record leaves the registry), every
node hands the documents it no longer owns to their new owner with C{docs.handoff}
and drops its copy once the owner has answered; a failed handoff is tried again.
A node that dies takes its documents with it (there are no replicas): the new
owners of its keys have none until a client puts them again.

The node's advertisement (in its hellos, its registry record, its status document
and its live page) says C{{"documents": n}}: the documents it owns and holds, plus
C{"handoff": m} while m documents wait to be handed on. It is rewritten at most
once every L{ADVERTISE_DELAY} seconds, since each change rewrites the record.
"""

from __future__ import annotations

from typing import Any, Protocol

from attrs import define, field
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

PUT = "docs.put"
GET = "docs.get"
HANDOFF = "docs.handoff"

ADVERTISE_DELAY = 0.2
"""Seconds between a change and the advertisement that shows it."""

HANDOFF_PARALLEL = 16
"""Handoffs in flight at once, per node."""

HANDOFF_TIMEOUT = 30.0
"""How long one handoff keeps trying the new owner (views converge meanwhile)."""

HANDOFF_RETRY = 1.0
"""Seconds after a failed handoff before the documents still away are tried again."""


class StoreNode(Protocol):
    """What the store needs of a C{twistednode.ClusterNode}."""

    @property
    def node_id(self) -> str: ...

    @property
    def reactor(self) -> Any: ...

    @property
    def advertisement(self) -> object: ...

    def handle(self, service: str, handler: Any) -> Any: ...

    def call(
        self,
        service: str,
        key: str | bytes,
        payload: object = None,
        timeout: float | None = None,
    ) -> Deferred[Any]: ...

    def owns(self, key: str | bytes) -> bool: ...

    def on(self, event: Any, observer: Any) -> Any: ...

    def set_advertisement(self, value: object) -> None: ...


def _text_key(key: str | bytes) -> str:
    if not isinstance(key, str):
        raise TypeError("document keys are strings")
    return key


@define(eq=False)
class DocumentStore:
    """One node's share of the documents, and the handoff of those it gave up.

    @ivar node: the cluster node whose services and ownership it uses.
    @ivar clock: for the advertisement's delay and the handoff's retries.
    """

    log = Logger()

    node: StoreNode
    clock: IReactorTime
    advertise_delay: float = ADVERTISE_DELAY
    handoff_retry: float = HANDOFF_RETRY
    _documents: dict[str, object] = field(factory=dict, init=False)
    _away: set[str] = field(factory=set, init=False)
    _in_flight: set[str] = field(factory=set, init=False)
    _base: dict[str, object] = field(factory=dict, init=False)
    _shown: dict[str, object] | None = field(default=None, init=False)
    _advertising: IDelayedCall | None = field(default=None, init=False)
    _retrying: IDelayedCall | None = field(default=None, init=False)
    _limit: DeferredSemaphore = field(
        factory=lambda: DeferredSemaphore(HANDOFF_PARALLEL), init=False
    )

    def install(self) -> None:
        """Register the services and follow ownership changes."""
        given = self.node.advertisement
        if isinstance(given, dict):
            self._base = dict(given)
        elif given is not None:
            self._base = {"advertisement": given}
        self.node.handle(PUT, self.put)
        self.node.handle(GET, self.get)
        self.node.handle(HANDOFF, self.receive_handoff)
        self.node.on("ownership", self.ownership_changed)
        self._advertise()

    # -- what the node counts ------------------------------------------------------

    @property
    def documents(self) -> int:
        """How many documents this node owns and holds."""
        return len(self._documents) - len(self._away)

    @property
    def handing_off(self) -> int:
        """How many documents it holds for keys it no longer owns."""
        return len(self._away)

    # -- the services (run only on the key's owner) --------------------------------

    def put(self, key: str | bytes, payload: object) -> dict[str, object]:
        """C{docs.put}: store C{payload} under C{key}."""
        name = _text_key(key)
        self._documents[name] = payload
        self._away.discard(name)
        self._advertise()
        return {"key": name, "storedBy": self.node.node_id, "documents": self.documents}

    def get(self, key: str | bytes, payload: object) -> dict[str, object]:
        """C{docs.get}: the document under C{key}, if this node has it."""
        name = _text_key(key)
        found = name in self._documents
        return {
            "key": name,
            "owner": self.node.node_id,
            "found": found,
            "document": self._documents.get(name),
        }

    def receive_handoff(self, key: str | bytes, payload: object) -> dict[str, object]:
        """C{docs.handoff}: keep a previous owner's document unless one is here."""
        name = _text_key(key)
        if not isinstance(payload, dict) or "document" not in payload:
            raise ValueError('a handoff is {"document": value}')
        kept = name not in self._documents
        if kept:
            self._documents[name] = payload["document"]
            self._away.discard(name)
            self._advertise()
        return {"key": name, "storedBy": self.node.node_id, "kept": kept}

    # -- handing documents on ------------------------------------------------------

    def ownership_changed(self, event: object) -> None:
        """The node's C{ownership} event: hand on what this node no longer owns."""
        self._away = {key for key in self._documents if not self.node.owns(key)}
        self._hand_off()
        self._advertise()

    def _hand_off(self) -> None:
        if self._retrying is not None and self._retrying.active():
            self._retrying.cancel()
        self._retrying = None
        for key in sorted(self._away - self._in_flight):
            self._in_flight.add(key)
            value = self._documents[key]
            sent = self._limit.run(self._send, key, value)
            sent.addBoth(self._sent, key, value)

    def _send(self, key: str, value: object) -> Deferred[Any] | None:
        if key not in self._away or self._documents.get(key) is not value:
            return None  # owned again, or replaced, while it waited its turn
        return self.node.call(HANDOFF, key, {"document": value}, HANDOFF_TIMEOUT)

    def _sent(self, result: object, key: str, value: object) -> None:
        self._in_flight.discard(key)
        if isinstance(result, Failure):
            self.log.warn(
                "handing document {key} on failed: {error}",
                key=key,
                error=result.getErrorMessage(),
            )
            if self._retrying is None:
                self._retrying = self.clock.callLater(
                    self.handoff_retry, self._hand_off
                )
            return
        if result is None:
            return
        if key in self._away and self._documents.get(key) is value:
            del self._documents[key]
            self._away.discard(key)
            self._advertise()

    # -- the advertisement ---------------------------------------------------------

    def _advertise(self) -> None:
        if self._advertising is None:
            self._advertising = self.clock.callLater(
                self.advertise_delay, self._publish
            )

    def _publish(self) -> None:
        self._advertising = None
        shown = dict(self._base, documents=self.documents)
        if self._away:
            shown["handoff"] = len(self._away)
        if shown != self._shown:
            self._shown = shown
            self.node.set_advertisement(shown)


def install(node: StoreNode) -> DocumentStore:
    """C{--app demo.docstore:install}: a document store on C{node}, on its reactor."""
    store = DocumentStore(node, node.reactor)
    store.install()
    return store
