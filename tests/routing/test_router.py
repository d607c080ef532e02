"""Routed calls: local or forwarded, re-checked by the owner, retried, and failing
with a reason that says what failed."""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twistednode.routing.errors import (
    BadCall,
    CallTimedOut,
    HandlerFailed,
    Moved,
    NoOwner,
    UnknownService,
    Unreachable,
)
from twistednode.routing.ownership import OwnershipView
from twistednode.routing.request import CallRequest
from twistednode.routing.router import Router

A, B, C = "node-a", "node-b", "node-c"


def key_owned_by(view: OwnershipView, owner: str) -> str:
    return next(f"k{i}" for i in range(1000) if view.owner(f"k{i}") == owner)


@define
class Cluster:
    """Routers wired to each other in memory; each has its own view."""

    clock: Clock = field(factory=Clock)
    routers: dict[str, Router] = field(factory=dict)
    views: dict[str, OwnershipView] = field(factory=dict)
    down: set[str] = field(factory=set)
    sent: list[tuple[str, CallRequest]] = field(factory=list)
    hold: bool = False
    held: list[Deferred[Any]] = field(factory=list)

    def add(self, node: str, view: OwnershipView) -> Router:
        self.views[node] = view
        router = Router(
            node_id=node,
            clock=self.clock,
            monotonic=self.clock.seconds,
            view=lambda: self.views[node],
            endpoint_of=lambda member: f"http://{member}",
            send=self.send,
        )
        router.handle("echo", lambda key, payload: {"by": node, "payload": payload})
        self.routers[node] = router
        return router

    def send(self, url: str, request: CallRequest) -> Deferred[Any]:
        target = url.removeprefix("http://")
        self.sent.append((target, request))
        if target in self.down:
            return fail(Unreachable(f"{target} refused", target))
        if self.hold:
            d: Deferred[Any] = Deferred()
            self.held.append(d)
            return d
        return self.routers[target].receive(request)


def three(version: int = 1) -> tuple[Cluster, OwnershipView]:
    cluster = Cluster()
    view = OwnershipView.of(version, [A, B, C])
    for node in (A, B, C):
        cluster.add(node, view)
    return cluster, view


class LocalTests(SynchronousTestCase):
    def test_a_key_we_own_runs_here_without_sending(self) -> None:
        cluster, view = three()
        key = key_owned_by(view, A)
        answer = self.successResultOf(cluster.routers[A].call("echo", key, {"n": 1}))
        self.assertEqual(answer, {"by": A, "payload": {"n": 1}})
        self.assertEqual(cluster.sent, [])
        self.assertEqual(cluster.routers[A].stats.local, 1)

    def test_a_handler_returning_a_deferred_is_waited_for(self) -> None:
        cluster, view = three()
        d: Deferred[Any] = Deferred()
        cluster.routers[A].handle("slow", lambda key, payload: d)
        result = cluster.routers[A].call("slow", key_owned_by(view, A))
        self.assertNoResult(result)
        d.callback([1, 2])
        self.assertEqual(self.successResultOf(result), [1, 2])

    def test_a_raising_handler_fails_the_call_with_its_reason(self) -> None:
        """The caller gets HandlerFailed naming the exception; no retry."""
        cluster, view = three()

        def broken(key: object, payload: object) -> None:
            raise KeyError("missing")

        cluster.routers[B].handle("broken", broken)
        failure = self.failureResultOf(
            cluster.routers[B].call("broken", key_owned_by(view, B)), HandlerFailed
        )
        self.assertIn("KeyError", str(failure.value))
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_an_answer_that_is_not_json_is_a_handler_failure(self) -> None:
        cluster, view = three()
        cluster.routers[A].handle("odd", lambda key, payload: {1, 2})
        self.failureResultOf(
            cluster.routers[A].call("odd", key_owned_by(view, A)), HandlerFailed
        )

    def test_an_unknown_service_fails_at_once(self) -> None:
        cluster, view = three()
        self.failureResultOf(
            cluster.routers[A].call("nobody", key_owned_by(view, B)), UnknownService
        )
        self.assertEqual(cluster.clock.getDelayedCalls(), [])

    def test_bad_arguments_raise_at_the_call(self) -> None:
        cluster, _ = three()
        router = cluster.routers[A]
        self.assertRaises(BadCall, router.call, "no spaces", "k")
        self.assertRaises(TypeError, router.call, "echo", 7)
        self.assertRaises(ValueError, router.call, "echo", "k", None, 0)
        self.assertRaises(ValueError, router.handle, "echo", lambda k, p: None)


class ForwardTests(SynchronousTestCase):
    def test_a_key_another_node_owns_is_handled_by_it(self) -> None:
        cluster, view = three()
        key = key_owned_by(view, C)
        answer = self.successResultOf(cluster.routers[A].call("echo", key, "x"))
        self.assertEqual(answer["by"], C)
        [(target, request)] = cluster.sent
        self.assertEqual((target, request.hops, request.sender), (C, 1, A))
        self.assertEqual(request.timeout, 5.0)

    def test_an_owner_whose_view_differs_forwards_once_more(self) -> None:
        """A thinks B owns the key; B's newer view says C: C answers, two hops."""
        cluster, view = three()
        key = key_owned_by(view, C)
        cluster.views[A] = OwnershipView.of(0, [A, B])
        if cluster.views[A].owner(key) != B:
            key = next(
                f"k{i}"
                for i in range(1000)
                if view.owner(f"k{i}") == C and cluster.views[A].owner(f"k{i}") == B
            )
        answer = self.successResultOf(cluster.routers[A].call("echo", key))
        self.assertEqual(answer["by"], C)
        self.assertEqual([(t, r.hops) for t, r in cluster.sent], [(B, 1), (C, 2)])

    def test_a_third_hop_is_refused_as_moved(self) -> None:
        """A second receiver that does not own the key answers Moved."""
        cluster, view = three()
        key = key_owned_by(view, A)
        request = CallRequest("echo", key, None, 2, 1.0, C)
        self.failureResultOf(cluster.routers[B].receive(request), Moved)

    def test_bytes_keys_route_like_their_text(self) -> None:
        cluster, view = three()
        key = key_owned_by(view, B)
        answer = self.successResultOf(cluster.routers[A].call("echo", key.encode()))
        self.assertEqual(answer["by"], B)


class RetryTests(SynchronousTestCase):
    def test_an_unreachable_owner_is_retried_on_the_next_owner(self) -> None:
        """C is dead; once the view drops it the call goes to the new owner."""
        cluster, view = three()
        key = key_owned_by(view, C)
        cluster.down.add(C)
        result = cluster.routers[A].call("echo", key)
        self.assertNoResult(result)
        cluster.clock.advance(0.05)
        self.assertNoResult(result)
        shrunk = OwnershipView.of(2, [A, B])
        cluster.views.update({A: shrunk, B: shrunk})
        cluster.clock.advance(0.1)
        self.assertIn(self.successResultOf(result)["by"], (A, B))
        self.assertEqual(cluster.routers[A].stats.retries, 2)

    def test_the_deadline_ends_the_retries_with_the_last_reason(self) -> None:
        cluster, view = three()
        cluster.down.add(B)
        result = cluster.routers[A].call("echo", key_owned_by(view, B), timeout=1.0)
        cluster.clock.pump([0.1] * 11)
        failure = self.failureResultOf(result, CallTimedOut)
        self.assertIn("refused", str(failure.value))
        self.assertEqual(cluster.routers[A].stats.failed, {"timed-out": 1})

    def test_no_owner_until_the_deadline_says_no_owner(self) -> None:
        cluster = Cluster()
        client = cluster.add(A, OwnershipView.of(1, []))
        result = client.call("echo", "k", timeout=0.5)
        cluster.clock.pump([0.1] * 6)
        self.failureResultOf(result, NoOwner)

    def test_a_member_joining_while_there_is_no_owner_takes_the_call(self) -> None:
        cluster = Cluster()
        client = cluster.add(A, OwnershipView.of(1, []))
        cluster.add(B, OwnershipView.of(2, [B]))
        result = client.call("echo", "k")
        cluster.clock.advance(0.01)
        cluster.views[A] = OwnershipView.of(2, [B])
        cluster.clock.advance(0.05)
        self.assertEqual(self.successResultOf(result)["by"], B)

    def test_a_moved_answer_is_retried_once_the_view_catches_up(self) -> None:
        cluster, view = three()
        key = key_owned_by(view, B)
        cluster.views[B] = OwnershipView.of(2, [A, C])  # B left in its own view
        cluster.down.add(cluster.views[B].owner(key) or "")
        result = cluster.routers[A].call("echo", key)
        self.assertNoResult(result)
        cluster.views[A] = cluster.views[B]
        cluster.down.clear()
        cluster.clock.advance(0.05)
        self.assertIn(self.successResultOf(result)["by"], (A, C))

    def test_no_transport_means_only_our_own_keys(self) -> None:
        clock = Clock()
        view = OwnershipView.of(1, [A, B])
        router = Router(A, clock, clock.seconds, lambda: view, lambda m: None)
        router.handle("echo", lambda key, payload: "here")
        self.assertEqual(
            self.successResultOf(router.call("echo", key_owned_by(view, A))), "here"
        )
        result = router.call("echo", key_owned_by(view, B), timeout=0.2)
        clock.pump([0.05] * 5)
        self.assertIn(
            "no node-to-node transport", str(self.failureResultOf(result).value)
        )

    def test_a_remote_handler_failure_is_not_retried(self) -> None:
        cluster, view = three()

        def broken(key: object, payload: object) -> None:
            raise RuntimeError("disk full")

        cluster.routers[C].handle("store", broken)
        result = cluster.routers[A].call("store", key_owned_by(view, C))
        failure = self.failureResultOf(result, HandlerFailed)
        self.assertEqual(failure.value.node, C)
        self.assertEqual(len(cluster.sent), 1)
        self.flushLoggedErrors(RuntimeError)

    def test_a_send_in_flight_past_the_deadline_times_out(self) -> None:
        """The transport's own timeout fails the send; the call says timed out."""
        cluster, view = three()
        cluster.hold = True
        result = cluster.routers[A].call("echo", key_owned_by(view, B), timeout=1.0)
        cluster.clock.advance(1.0)
        cluster.held[0].errback(CallTimedOut("no answer in 1 s", B))
        self.failureResultOf(result, CallTimedOut)
