"""The node-to-node transport: a client and a server resource, in memory."""

from __future__ import annotations

import json
import os
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twistednode.routing.errors import (
    BadCall,
    CallTimedOut,
    HandlerFailed,
    Unauthenticated,
    UnknownService,
)
from twistednode.routing.ownership import OwnershipView
from twistednode.routing.request import CallRequest
from twistednode.routing.router import Router
from twistednode.transport import server
from twistednode.transport.client import TransportClient
from twistednode.transport.proof import ProofChecker
from twistednode.transport.server import TransportResource
from twistednode.trust.keyring import Keyring

KEY, OTHER = os.urandom(32), os.urandom(32)
ME = "node-b"


class Pair:
    """A client posting to one node's transport resource (node B owns everything)."""

    def __init__(
        self, server_keys: tuple[bytes, ...] = (), client_keys: tuple[bytes, ...] = ()
    ) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        view = OwnershipView.of(1, [ME])
        self.router = Router(ME, self.clock, self.clock.seconds, lambda: view, str)
        self.router.handle(
            "echo", lambda key, payload: {"key": key, "payload": payload}
        )
        self.published: list[tuple[str, Any, dict[str, Any]]] = []
        server_ring = Keyring(server_keys) if server_keys else None
        self.resource = TransportResource(
            node_id=ME,
            receive=self.router.receive,
            publish=self.deliver,
            checker=ProofChecker(lambda: server_ring, "prod"),
            clock=self.clock,
        )
        self.stub = StubTreq(self.resource)
        client_ring = Keyring(client_keys) if client_keys else None
        self.client = TransportClient(
            self.clock,
            "prod",
            lambda: client_ring,
            http=self.stub,  # type: ignore[arg-type]
        )

    def deliver(self, channel: str, payload: Any, sender: dict[str, Any]) -> bool:
        self.published.append((channel, payload, sender))
        return channel == "big"

    def call(self, service: str, key: str | bytes, payload: Any = None) -> Any:
        request = CallRequest(service, key, payload, 1, 5.0, "node-a")
        d = self.client.call("http://node-b:7000", request)
        self.stub.flush()
        return d

    def raw(self, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
        d = self.stub.request(method, "http://node-b:7000" + path, data=body)
        self.stub.flush()
        response = self.successResultOf_(d)
        content = self.successResultOf_(response.content())
        return response.code, json.loads(content)

    @staticmethod
    def successResultOf_(d: Deferred[Any]) -> Any:
        results: list[Any] = []
        d.addBoth(results.append)
        return results[0]


class CallTests(SynchronousTestCase):
    def test_a_call_is_answered_by_the_remote_router(self) -> None:
        pair = Pair()
        answer = self.successResultOf(pair.call("echo", "user-1", {"n": [1, 2]}))
        self.assertEqual(answer, {"key": "user-1", "payload": {"n": [1, 2]}})

    def test_a_bytes_key_arrives_as_bytes(self) -> None:
        pair = Pair()
        seen: list[object] = []

        def kind(key: object, payload: object) -> str:
            seen.append(key)
            return "ok"

        pair.router.handle("kind", kind)
        self.successResultOf(pair.call("kind", b"\xff\x00"))
        self.assertEqual(seen, [b"\xff\x00"])

    def test_remote_errors_come_back_as_their_exceptions(self) -> None:
        pair = Pair()

        def broken(key: object, payload: object) -> None:
            raise ValueError("bad document")

        pair.router.handle("broken", broken)
        failure = self.failureResultOf(pair.call("broken", "k"), HandlerFailed)
        self.assertEqual(failure.value.node, ME)
        self.assertIn("bad document", failure.value.message)
        self.flushLoggedErrors(ValueError)
        self.failureResultOf(pair.call("missing", "k"), UnknownService)

    def test_a_remote_that_does_not_answer_in_time_times_out(self) -> None:
        pair = Pair()
        pair.router.handle("never", lambda key, payload: Deferred())
        d = pair.call("never", "k")
        self.assertNoResult(d)
        pair.clock.advance(5.0)
        self.failureResultOf(d, CallTimedOut)


class ProofOnTheWireTests(SynchronousTestCase):
    def test_with_the_cluster_key_calls_pass(self) -> None:
        pair = Pair(server_keys=(KEY,), client_keys=(KEY,))
        self.assertEqual(self.successResultOf(pair.call("echo", "k"))["key"], "k")

    def test_without_the_key_a_call_is_refused_unread(self) -> None:
        """No proof, or a proof of another key: 401, the handler never runs."""
        for client_keys in ((), (OTHER,)):
            pair = Pair(server_keys=(KEY,), client_keys=client_keys)
            ran: list[object] = []

            def spy(key: object, payload: object, ran: list[object] = ran) -> None:
                ran.append(key)

            pair.router.handle("spy", spy)
            self.failureResultOf(pair.call("spy", "k"), Unauthenticated)
            self.assertEqual(ran, [])
            self.assertEqual(pair.resource.refused, {"unauthenticated": 1})


class BadInputTests(SynchronousTestCase):
    def test_bad_requests_get_json_errors_with_a_status(self) -> None:
        pair = Pair()
        cases = [
            ("GET", "/v1/node/call", b"", 405, "bad-method"),
            ("POST", "/nowhere", b"{}", 404, "not-found"),
            ("POST", "/v1/node/call", b"{not json", 400, "bad-request"),
            ("POST", "/v1/node/call", b'{"service": "echo"}', 400, "bad-request"),
            ("POST", "/v1/node/publish", b"[]", 400, "bad-request"),
        ]
        for method, path, body, status, kind in cases:
            code, document = pair.raw(method, path, body)
            self.assertEqual((code, document["error"]), (status, kind), path)
            self.assertEqual(document["node"], ME)

    def test_a_body_over_the_limit_is_refused(self) -> None:
        self.patch(server, "MAX_BODY", 64)
        code, document = Pair().raw("POST", "/v1/node/call", b"x" * 65)
        self.assertEqual((code, document["error"]), (413, "too-large"))

    def test_bad_call_documents_are_named(self) -> None:
        for document, why in [
            (
                {"service": "a b", "key": "k", "hops": 1, "timeout": 1, "from": "x"},
                "service",
            ),
            (
                {
                    "service": "s",
                    "keyBase64": "%%",
                    "hops": 1,
                    "timeout": 1,
                    "from": "x",
                },
                "base64",
            ),
            (
                {"service": "s", "key": "k", "hops": 0, "timeout": 1, "from": "x"},
                "hops",
            ),
            (
                {"service": "s", "key": "k", "hops": 1, "timeout": -1, "from": "x"},
                "timeout",
            ),
            ({"service": "s", "key": "k", "hops": 1, "timeout": 1}, "from"),
        ]:
            with self.assertRaisesRegex(BadCall, why):
                CallRequest.from_document(document)


class PublishTests(SynchronousTestCase):
    def test_a_large_message_is_delivered_to_the_node(self) -> None:
        pair = Pair(server_keys=(KEY,), client_keys=(KEY,))
        payload = {"blob": "x" * 1_048_576}
        sender = {"from": "node-a", "hostName": "a", "pid": "p"}
        d = pair.client.publish("http://node-b:7000", "big", sender, payload)
        pair.stub.flush()
        self.assertEqual(self.successResultOf(d), {"delivered": True})
        [(channel, received, who)] = pair.published
        self.assertEqual((channel, received, who), ("big", payload, sender))
