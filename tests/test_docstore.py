"""The demo's document store: each document on its key's owner, handed on when
ownership moves, and counted in the node's advertisement."""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from demo.docstore import (
    ADVERTISE_DELAY,
    GET,
    HANDOFF,
    HANDOFF_PARALLEL,
    HANDOFF_RETRY,
    PUT,
    DocumentStore,
    install,
)
from twistednode import CallTimedOut, OwnershipChanged, OwnershipView

A, B = "node-a", "node-b"


@define
class Cluster:
    """Fake nodes that share one ownership view; calls run on the key's owner."""

    clock: Clock = field(factory=Clock)
    view: OwnershipView = field(factory=lambda: OwnershipView.of(1, [A]))
    nodes: dict[str, FakeNode] = field(factory=dict)
    down: set[str] = field(factory=set)
    held: list[tuple[Deferred[Any], str, str, object]] = field(factory=list)
    hold: bool = False

    def node(self, node_id: str, advertisement: object = None) -> FakeNode:
        node = FakeNode(self, node_id, advertisement)
        self.nodes[node_id] = node
        return node

    def change(self, *members: str) -> None:
        """A new view: every node's ownership observers hear of it."""
        old, self.view = self.view, OwnershipView.of(self.view.version + 1, members)
        event = OwnershipChanged.between(old, self.view)
        for node in list(self.nodes.values()):
            for observer in node.observers.get("ownership", []):
                observer(event)

    def run(self, owner: str, service: str, key: str, payload: object) -> Any:
        return maybeDeferred(self.nodes[owner].handlers[service], key, payload)

    def call(self, service: str, key: str, payload: object) -> Deferred[Any]:
        owner = self.view.owner(key)
        assert owner is not None
        if owner in self.down:
            return fail(CallTimedOut(f"{owner} does not answer", owner))
        if self.hold:
            waiting: Deferred[Any] = Deferred()
            self.held.append((waiting, service, key, payload))
            return waiting
        result: Deferred[Any] = self.run(owner, service, key, payload)
        return result

    def release(self) -> None:
        """Run every held call on its owner and answer it."""
        held, self.held = self.held, []
        for waiting, service, key, payload in held:
            owner = self.view.owner(key)
            assert owner is not None
            self.run(owner, service, key, payload).chainDeferred(waiting)


@define(eq=False)
class FakeNode:
    """What the store uses of a ClusterNode."""

    cluster: Cluster
    node_id: str
    advertisement: object = None
    handlers: dict[str, Any] = field(factory=dict)
    observers: dict[str, list[Any]] = field(factory=dict)
    shown: list[object] = field(factory=list)
    timeouts: list[float | None] = field(factory=list)

    @property
    def reactor(self) -> Clock:
        return self.cluster.clock

    def handle(self, service: str, handler: Any) -> None:
        self.handlers[service] = handler

    def on(self, event: str, observer: Any) -> None:
        self.observers.setdefault(event, []).append(observer)

    def owns(self, key: str | bytes) -> bool:
        return self.cluster.view.owns(self.node_id, key)

    def call(
        self,
        service: str,
        key: str | bytes,
        payload: object = None,
        timeout: float | None = None,
    ) -> Deferred[Any]:
        assert isinstance(key, str)
        self.timeouts.append(timeout)
        return self.cluster.call(service, key, payload)

    def set_advertisement(self, value: object) -> None:
        self.advertisement = value
        self.shown.append(value)


def keys_of(view: OwnershipView, owner: str, count: int) -> list[str]:
    """C{count} keys that C{owner} owns in C{view}."""
    found = (f"doc-{i}" for i in range(10_000) if view.owner(f"doc-{i}") == owner)
    return [next(found) for _ in range(count)]


class DocumentStoreTests(SynchronousTestCase):
    """Documents are stored, read, counted and handed on."""

    def setUp(self) -> None:
        self.cluster = Cluster()
        self.a = self.cluster.node(A)
        self.b = self.cluster.node(B)
        self.store_a = install(self.a)
        self.store_b = install(self.b)

    def put(self, node: FakeNode, key: str, document: object) -> Any:
        return self.successResultOf(maybeDeferred(node.handlers[PUT], key, document))

    def test_put_and_get(self) -> None:
        """A put document is read back; its answer names the node that stored it."""
        self.assertEqual(
            self.put(self.a, "doc-1", {"title": "one"}),
            {"key": "doc-1", "storedBy": A, "documents": 1},
        )
        self.assertEqual(
            self.a.handlers[GET]("doc-1", None),
            {"key": "doc-1", "owner": A, "found": True, "document": {"title": "one"}},
        )

    def test_get_of_a_missing_key(self) -> None:
        """A key never put is not found."""
        self.assertEqual(
            self.a.handlers[GET]("doc-9", None),
            {"key": "doc-9", "owner": A, "found": False, "document": None},
        )

    def test_bytes_keys_are_refused(self) -> None:
        """Document keys are strings."""
        self.assertRaises(TypeError, self.a.handlers[PUT], b"doc-1", {})

    def test_advertisement_counts_after_a_delay(self) -> None:
        """Many puts make one advertisement, once the delay has passed."""
        self.cluster.clock.advance(ADVERTISE_DELAY)
        self.assertEqual(self.a.shown, [{"documents": 0}])
        for i in range(5):
            self.put(self.a, f"doc-{i}", i)
        self.assertEqual(self.a.shown, [{"documents": 0}])
        self.cluster.clock.advance(ADVERTISE_DELAY)
        self.assertEqual(self.a.shown, [{"documents": 0}, {"documents": 5}])

    def test_advertisement_keeps_the_nodes_own(self) -> None:
        """A dict the node already advertised keeps its fields beside the count."""
        node = self.cluster.node("node-c", {"role": "web"})
        install(node)
        self.cluster.clock.advance(ADVERTISE_DELAY)
        self.assertEqual(node.advertisement, {"role": "web", "documents": 0})

    def test_ownership_change_hands_documents_on(self) -> None:
        """Keys B now owns go to B with their documents; A keeps only its own."""
        with_b = OwnershipView.of(2, [A, B])
        to_b = keys_of(with_b, B, 3)
        stay = keys_of(with_b, A, 2)
        for key in to_b + stay:
            self.put(self.a, key, {"key": key})
        self.cluster.change(A, B)
        self.cluster.clock.advance(ADVERTISE_DELAY)
        self.assertEqual(self.store_a.documents, 2)
        self.assertEqual(self.store_b.documents, 3)
        self.assertEqual(self.a.advertisement, {"documents": 2})
        self.assertEqual(self.b.advertisement, {"documents": 3})
        for key in to_b:
            self.assertEqual(self.b.handlers[GET](key, None)["document"], {"key": key})
            self.assertFalse(self.a.handlers[GET](key, None)["found"])
        self.assertEqual(set(self.a.timeouts), {30.0})

    def test_handoff_in_flight_is_advertised(self) -> None:
        """While documents wait for their new owner, the advertisement says so."""
        with_b = OwnershipView.of(2, [A, B])
        for key in keys_of(with_b, B, 4):
            self.put(self.a, key, 1)
        self.cluster.hold = True
        self.cluster.change(A, B)
        self.cluster.clock.advance(ADVERTISE_DELAY)
        self.assertEqual(self.a.advertisement, {"documents": 0, "handoff": 4})
        self.cluster.release()
        self.cluster.clock.advance(ADVERTISE_DELAY)
        self.assertEqual(self.a.advertisement, {"documents": 0})
        self.assertEqual(self.b.advertisement, {"documents": 4})

    def test_handoffs_in_flight_are_limited(self) -> None:
        """At most HANDOFF_PARALLEL handoffs are in flight at once."""
        with_b = OwnershipView.of(2, [A, B])
        for key in keys_of(with_b, B, HANDOFF_PARALLEL + 5):
            self.put(self.a, key, 1)
        self.cluster.hold = True
        self.cluster.change(A, B)
        self.assertEqual(len(self.cluster.held), HANDOFF_PARALLEL)
        self.cluster.release()
        self.assertEqual(len(self.cluster.held), 5)
        self.cluster.release()
        self.assertEqual(self.store_b.documents, HANDOFF_PARALLEL + 5)

    def test_failed_handoff_is_tried_again(self) -> None:
        """A handoff that failed is sent again after HANDOFF_RETRY; the document
        stays meanwhile."""
        with_b = OwnershipView.of(2, [A, B])
        (key,) = keys_of(with_b, B, 1)
        self.put(self.a, key, "kept")
        self.cluster.down.add(B)
        self.cluster.change(A, B)
        self.assertEqual(self.store_a.handing_off, 1)
        self.cluster.down.clear()
        self.cluster.clock.advance(HANDOFF_RETRY)
        self.assertEqual(self.store_a.handing_off, 0)
        self.assertEqual(self.b.handlers[GET](key, None)["document"], "kept")

    def test_handoff_does_not_overwrite_a_newer_put(self) -> None:
        """A document put on the new owner first is newer than the one handed on."""
        with_b = OwnershipView.of(2, [A, B])
        (key,) = keys_of(with_b, B, 1)
        self.put(self.a, key, "old")
        self.cluster.hold = True
        self.cluster.change(A, B)
        self.put(self.b, key, "new")
        self.cluster.release()
        self.assertEqual(self.b.handlers[GET](key, None)["document"], "new")
        self.assertEqual(self.store_a.documents + self.store_a.handing_off, 0)

    def test_owned_again_before_the_handoff_ran(self) -> None:
        """A key owned again while its handoff waited is not sent, and stays."""
        with_b = OwnershipView.of(2, [A, B])
        keys = keys_of(with_b, B, HANDOFF_PARALLEL + 1)
        for key in keys:
            self.put(self.a, key, 1)
        self.cluster.hold = True
        self.cluster.change(A, B)
        self.cluster.change(A)
        self.cluster.release()
        self.assertEqual(self.cluster.held, [])
        self.assertEqual(self.store_a.documents, len(keys))

    def test_handoff_payload_is_checked(self) -> None:
        """A handoff without a document is refused."""
        self.assertRaises(ValueError, self.b.handlers[HANDOFF], "doc-1", {})


class InstallTests(SynchronousTestCase):
    """C{install} is what C{--app demo.docstore:install} calls."""

    def test_install_registers_the_services(self) -> None:
        """The three services are handled; the store follows ownership."""
        cluster = Cluster()
        node = cluster.node(A)
        store = install(node)
        self.assertIsInstance(store, DocumentStore)
        self.assertEqual(sorted(node.handlers), [GET, HANDOFF, PUT])
        self.assertEqual(list(node.observers), ["ownership"])

    def test_loads_with_the_node(self) -> None:
        """clusternode's --app option finds it by the name the demo gives."""
        from twistednode.tap import Options

        config = Options(environ={})
        config.parseOptions(
            ["--no-etcd", "--peer", "127.0.0.1", "--app", "demo.docstore:install"]
        )
        ((name, loaded),) = config["apps"]
        self.assertEqual(name, "demo.docstore:install")
        self.assertIs(loaded, install)
