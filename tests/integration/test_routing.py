"""Work sent to any node is done by the key's owner: five real nodes on minietcd.

Five C{twistd -n clusternode} processes, each loading L{tests.harness.routeapp} with
C{--app}. Every node names the same owner for 1,000 keys (the owner the documented
hash gives for the registry's member set); C{POST /v1/route/echo/<key>} sent to
random nodes is handled by that owner; a handler that raises and a service nobody
has are clear JSON errors at once; a 1 MiB message published by one node reaches
every other node whole. Under a steady stream of routed requests, a SIGKILLed node's
keys, and only its keys, move once its record expires; every request is answered
(the calls for its keys wait for the new owner within their deadline), and none is
handled by a node that was gone.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.trial.unittest import SynchronousTestCase

from tests.harness.clusternodes import (
    FAST_TIMERS,
    ClusterNodeProcess,
    start_nodes,
    stop_nodes,
    wait_for_agreed_master,
    wait_for_cluster,
)
from tests.harness.servers import shared_minietcd
from twistednode.routing.ownership import Candidate, OwnershipView

NODES = 5
KEYS = [f"doc-{i}" for i in range(1000)]
SETTLE = 30.0
ROOT = str(Path(__file__).resolve().parents[2])


def request(
    node: ClusterNodeProcess,
    method: str,
    path: str,
    body: object = None,
    timeout: float = 15.0,
) -> tuple[int, Any]:
    """One HTTP request to a node's --http port; (status, JSON body)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", node.http_port, timeout=timeout
    )
    try:
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def owners_seen_by(node: ClusterNodeProcess, keys: list[str]) -> dict[str, str]:
    """What C{GET /v1/owner/<key>} answers on C{node}, on one kept-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=10)
    found: dict[str, str] = {}
    try:
        for key in keys:
            connection.request("GET", f"/v1/owner/{key}")
            document = json.loads(connection.getresponse().read())
            found[key] = document["owner"]
    finally:
        connection.close()
    return found


if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object


class _RoutedCluster(_Base):
    """Five nodes with the routing test application, all seeing the same view."""

    def start(self, *extra: str) -> None:
        previous = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, previous]))
        self.addCleanup(self._restore_path, previous)
        self.registry = shared_minietcd()
        self.nodes = start_nodes(
            NODES,
            etcd=self.registry.url,
            cluster=f"routing-{uuid.uuid4().hex[:10]}",
            timers=FAST_TIMERS,
            extra_args=["--app", "tests.harness.routeapp:install", *extra],
        )
        self.addCleanup(stop_nodes, self.nodes)
        wait_for_agreed_master(self.nodes, SETTLE)
        self.wait_for_view({n.id for n in self.nodes})

    def _restore_path(self, previous: str | None) -> None:
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous

    def wait_for_view(
        self, ids: set[str], nodes: list[ClusterNodeProcess] | None = None
    ) -> int:
        """Wait until every node's ownership view is C{ids}, at one version."""
        nodes = self.nodes if nodes is None else nodes
        seen: dict[str, tuple[int, set[str]]] = {}

        def same_view(_views: object) -> bool:
            for node in nodes:
                ownership = node.status()["ownership"]
                owners = {o["id"] for o in ownership["owners"]}
                seen[node.id] = (ownership["view"], owners)
            versions = {version for version, _ in seen.values()}
            return len(versions) == 1 and all(o == ids for _, o in seen.values())

        wait_for_cluster(nodes, same_view, SETTLE, f"one ownership view of {ids}")
        return next(iter(seen.values()))[0]


class RoutingTests(_RoutedCluster, SynchronousTestCase):
    """Owners agreed, requests routed to them, errors clear, large messages whole."""

    def setUp(self) -> None:
        self.start()

    def test_every_node_names_the_documented_owner_for_1000_keys(self) -> None:
        """Each node answers the same owner for every key: the one the documented
        hash gives for the five members, and every member owns some."""
        expected_view = OwnershipView(0, tuple(Candidate(n.id) for n in self.nodes))
        expected = {key: expected_view.owner(key) for key in KEYS}
        for node in self.nodes:
            self.assertEqual(owners_seen_by(node, KEYS), expected, node.id)
        self.assertEqual(set(expected.values()), {n.id for n in self.nodes})

    def test_routed_requests_are_handled_by_the_owner(self) -> None:
        """POST /v1/route/echo/<key> to random nodes: the owner handles each."""
        owners = owners_seen_by(self.nodes[0], KEYS)
        rng = random.Random(7)
        forwarded = 0
        for key in rng.sample(KEYS, 200):
            node = rng.choice(self.nodes)
            status, answer = request(node, "POST", f"/v1/route/echo/{key}", {"k": key})
            self.assertEqual(status, 200, answer)
            self.assertEqual(
                answer, {"handledBy": owners[key], "key": key, "payload": {"k": key}}
            )
            forwarded += owners[key] != node.id
        self.assertTrue(forwarded > 100, forwarded)
        calls = [n.status()["ownership"]["calls"] for n in self.nodes]
        self.assertEqual(sum(c["forwarded"] for c in calls), forwarded)
        self.assertEqual(sum(c["received"] for c in calls), forwarded)

    def test_a_raising_handler_and_an_unknown_service_are_clear_errors(self) -> None:
        """The owner's KeyError comes back as 502 handler-failed naming it, a
        service nobody has as 404, both at once, from a node that forwards."""
        owners = owners_seen_by(self.nodes[0], KEYS)
        key = next(k for k in KEYS if owners[k] != self.nodes[0].id)
        started = time.monotonic()
        status, answer = request(self.nodes[0], "POST", f"/v1/route/fail/{key}", {})
        self.assertEqual((status, answer["error"]), (502, "handler-failed"), answer)
        self.assertIn("KeyError", answer["message"])
        self.assertEqual(answer["node"], owners[key])
        status, answer = request(self.nodes[0], "POST", f"/v1/route/nope/{key}", {})
        self.assertEqual((status, answer["error"]), (404, "unknown-service"), answer)
        self.assertLess(time.monotonic() - started, 2.0)

    def test_a_message_of_one_mebibyte_reaches_every_member(self) -> None:
        """publish of 1 MiB goes over the transport to the four others, whole."""
        status, sent = request(
            self.nodes[0], "POST", "/v1/route/publish-big/big-1", {"size": 1 << 20}
        )
        self.assertEqual(status, 200, sent)
        others = [n for n in self.nodes if n.id != sent["from"]]
        wanted = {"from": sent["from"], "size": 1 << 20, "sha256": sent["sha256"]}

        def everyone_has_it(_views: object) -> bool:
            for node in others:
                advertised = node.status()["self"]["advertisement"] or {}
                if wanted not in advertised.get("received", []):
                    return False
            return True

        wait_for_cluster(others, everyone_has_it, 10.0, "the 1 MiB message everywhere")


class OwnerKilledTests(_RoutedCluster, SynchronousTestCase):
    """SIGKILL of a node under a steady stream of routed requests."""

    def setUp(self) -> None:
        self.start("--ttl", "2")

    def test_only_the_killed_nodes_keys_move_and_every_request_is_answered(
        self,
    ) -> None:
        """Requests keep flowing to the survivors while one node is killed: each
        is answered by a live owner (the victim's keys wait for the new owner
        within the call's deadline), and the new view moves only its keys."""
        before = owners_seen_by(self.nodes[0], KEYS)
        victim = next(n for n in self.nodes[1:] if n.id in before.values())
        survivors = [n for n in self.nodes if n is not victim]
        results: list[tuple[float, str, int, Any]] = []
        lock = threading.Lock()
        stop = threading.Event()
        killed_at: list[float] = []

        def stream(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                key = rng.choice(KEYS)
                node = rng.choice(survivors)
                sent = time.monotonic()
                try:
                    status, answer = request(node, "POST", f"/v1/route/echo/{key}", key)
                except OSError as e:
                    status, answer = -1, repr(e)
                with lock:
                    results.append((sent, key, status, answer))
                time.sleep(0.01)

        workers = [threading.Thread(target=stream, args=(i,)) for i in range(8)]
        for worker in workers:
            worker.start()
        try:
            time.sleep(1.0)
            victim.kill()
            killed_at.append(time.monotonic())
            self.wait_for_view({n.id for n in survivors}, survivors)
            moved_at = time.monotonic()
            time.sleep(1.5)
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)

        after = owners_seen_by(survivors[0], KEYS)
        moved = {k for k in KEYS if before[k] != after[k]}
        self.assertEqual(moved, {k for k in KEYS if before[k] == victim.id})
        self.assertTrue(all(after[k] != victim.id for k in KEYS))

        failures = [r for r in results if r[2] != 200]
        self.assertEqual(failures, [], f"{len(failures)} of {len(results)} failed")
        for sent, key, _status, answer in results:
            self.assertEqual(answer["key"], key)
            if sent > killed_at[0]:
                self.assertTrue(answer["handledBy"] != victim.id, (sent, answer))
            if sent > moved_at:
                self.assertEqual(answer["handledBy"], after[key])
        during = [r for r in results if killed_at[0] < r[0] < moved_at]
        victims_keys = [r for r in during if before[r[1]] == victim.id]
        self.assertTrue(len(results) > 100, len(results))
        self.assertTrue(victims_keys, "no request for the victim's keys while it died")
