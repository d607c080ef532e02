"""The real node-discover harness (tests/harness/nodediscover.py) against node-discover
1.2.1.

These tests prove the harness and pin node-discover's behaviour that the wire spec
relies on: a static unicast mesh, one master (the oldest), failover after SIGKILL,
channels, the legacy key, and a hello crafted in Python being accepted. Timers are
shortened (tests.harness.nodediscover.FAST_TIMERS) where the default timing is not the
point.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.harness.nodediscover import (
    FAST_TIMERS,
    NodeDiscoverPeer,
    PeerEvent,
    masters_agreed,
    require_node_discover,
    spawn_mesh,
    spawn_peer,
    stop_all,
)

#: The hello captured from node-discover in wire spec section 1 (221 bytes).
CAPTURED_HELLO = (
    '{"event":"hello","pid":"8893444d-80e2-4550-9677-f59708e67608",'
    '"iid":"e91fa857-abf7-4f58-a7bb-ded22f2766d9","hostName":"vm",'
    '"data":{"isMaster":false,"isMasterEligible":true,'
    '"weight":-0.1795700674136,"address":"127.0.0.1"}}'
)
CAPTURED_IID = "e91fa857-abf7-4f58-a7bb-ded22f2766d9"

#: Wire spec section 9, key "secret": V1 is CAPTURED_HELLO encrypted.
KEY_VECTOR_V1 = bytes.fromhex(
    "2ec282c2af4a55c3963e405ac383c28ec3a943c3ae4ec2847cc29371c39437c3b034c39f44c2985"
    "0c3a4c2b8c3a4c397c2aac2b500c28cc28a3bc29c70c3880f"
    "1500c39928c293c3a7c2a27c11c39d33c3b5c281c3a4c28cc2921fc3b10cc2b703c391c293404d58"
    "c2bbc2866dc3b548c3943bc288c3b1c289c28a24c39c3bc3"
    "8bc2a1c29167c29ac3a6c3b8c28ec2bac28b41c3ac28c2b1062d7223c2bd3bc29dc38604c385236a"
    "48c39969665dc3a013c39964c2a8c29e6bc2b934c3b97dc2"
    "ba2a46c2871200c29bc29b0a361254c3bfc2bdc386c386054039c3bc1271c3a6c2b3c391c2b5c382"
    "c3a2c29ec3b440c2b52ec285c2ac3cc2bc6ac287c3abc3b8"
    "c3b6c38853c3abc297c2a8c39e17c3aac3a6c294c3841ac3b1c382c2ae10c29fc3be32c38ac289c3"
    "91c29b3e2e01c3b5c38237c2aa3dc2937640c2bdc38449c2"
    "8d1230497c7bc3864951c39f6cc3af1cc384567619c2aac3aac293c2abc3ad"
)
#: Wire spec section 9, V3: {"event":"hello","iid":"X","data":{"isMaster":false}}.
KEY_VECTOR_V3 = bytes.fromhex(
    "2ec282c2af4a55c3963e405ac383c28ec3a943c3ae4ec284c3834569c39618c297c2a45cc28d36c3"
    "b4c29b72c3a7c3a650c287297ec3af2c76c2914120c29204"
    "c298c28c0228c29c48c2b265c286c2bec2877a3c18c28c71586f64c3b717"
)

#: Generous bound for anything that takes a few fast timer periods.
SOON = 5.0


def wait_full_mesh(peers: Sequence[NodeDiscoverPeer], timeout: float = SOON) -> None:
    """Block until every peer has emitted C{added} for every other peer."""
    iids = {p.iid for p in peers}
    for peer in peers:
        others = iids - {peer.iid}

        def meshed(peer: NodeDiscoverPeer = peer, others: set[str] = others) -> bool:
            return others <= peer.added_ids()

        peer.wait_until(meshed, timeout, "added for every other peer")


def wait_checks(peer: NodeDiscoverPeer, count: int, since: int) -> None:
    """Block until a verbose peer has run C{count} more checks after C{since}."""
    peer.wait_until(
        lambda: len(peer.events("check", since)) >= count,
        SOON,
        f"{count} checks",
    )


def master_of(peers: Sequence[NodeDiscoverPeer]) -> NodeDiscoverPeer:
    """The oldest peer of a staggered mesh, after checking it is the heaviest."""
    weights = [p.weight for p in peers]
    if weights != sorted(weights, reverse=True) or len(set(weights)) != len(weights):
        raise AssertionError(f"staggered peers' weights do not decrease: {weights}")
    return peers[0]


def udp_socket(test: SynchronousTestCase) -> socket.socket:
    """A raw UDP socket on 127.0.0.1, closed when the test ends."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    test.addCleanup(s.close)
    s.bind(("127.0.0.1", 0))
    s.settimeout(SOON)
    return s


class NodeDiscoverMeshTests(SynchronousTestCase):
    """Several real node-discover peers on one static unicast list."""

    def mesh(self, count: int, **options: Any) -> list[NodeDiscoverPeer]:
        peers = spawn_mesh(count, fast=True, stagger=True, **options)
        self.addCleanup(stop_all, peers)
        return peers

    def test_full_mesh_one_oldest_master(self) -> None:
        """Three peers all add each other and agree on the oldest as only master."""
        peers = self.mesh(3, verbose=True)
        wait_full_mesh(peers)
        master = master_of(peers)
        master.wait_for_kind("promotion", SOON)
        for peer in peers:
            if peer is not master:
                peer.wait_for(
                    lambda e: e.kind == "master" and e.node_id == master.iid,
                    SOON,
                    "master event for the heaviest peer",
                )
        marks = [p.mark() for p in peers]
        for peer, mark in zip(peers, marks, strict=True):
            wait_checks(peer, 2, mark)
        self.assertEqual(masters_agreed(peers), master.iid)
        self.assertEqual([len(p.events("promotion")) for p in peers].count(1), 1)
        self.assertEqual(sum(len(p.events("demotion")) for p in peers), 0)
        for peer in peers:
            table = {n["id"]: n for n in peer.members()}
            self.assertEqual(set(table), {p.iid for p in peers} - {peer.iid})
            for other in peers:
                if other is not peer:
                    self.assertEqual(table[other.iid]["port"], other.port)
                    self.assertEqual(table[other.iid]["address"], "127.0.0.1")

    def test_failover_after_sigkill(self) -> None:
        """SIGKILL of the master makes the heavier survivor the one new master."""
        peers = self.mesh(3)
        wait_full_mesh(peers)
        master = master_of(peers)
        master.wait_for_kind("promotion", SOON)
        survivors = [p for p in peers if p is not master]
        for peer in survivors:
            peer.wait_for(lambda e: e.kind == "master", SOON, "master event")
        marks = [p.mark() for p in survivors]
        self.assertEqual(master.kill(), -9)
        successor = master_of(survivors)
        for peer, mark in zip(survivors, marks, strict=True):
            peer.wait_for(
                lambda e: e.kind == "removed" and e.node_id == master.iid,
                SOON,
                "removal of the killed master",
                since=mark,
            )
        successor.wait_for_kind("promotion", SOON)
        for peer in survivors:
            if peer is not successor:
                peer.wait_for(
                    lambda e: e.kind == "master" and e.node_id == successor.iid,
                    SOON,
                    "master event for the successor",
                )
        self.assertEqual(masters_agreed(survivors), successor.iid)
        self.assertEqual(
            [len(p.events("promotion")) for p in survivors],
            [1 if p is successor else 0 for p in survivors],
        )

    def test_channel_message(self) -> None:
        """A message on a joined channel reaches the other peers, not the sender."""
        peers = self.mesh(3, channels=("jobs",))
        sender, *receivers = peers
        self.assertFalse(sender.send("hello", {"x": 1}))
        self.assertTrue(sender.send("jobs", 0))
        self.assertTrue(sender.send("jobs", {"id": 42, "op": "rébuild"}))
        for peer in receivers:
            got = peer.wait_for_kind("message", SOON)
            self.assertEqual(got["channel"], "jobs")
            self.assertEqual(got["data"], {"id": 42, "op": "rébuild"})
            self.assertEqual(got["envelope"]["iid"], sender.iid)
            self.assertEqual(got["envelope"]["pid"], sender.process_uuid)
            self.assertEqual(
                got["source"], {"address": "127.0.0.1", "port": sender.port}
            )
        self.assertEqual(sender.events("message"), [])

    def test_keyed_mesh(self) -> None:
        """Peers sharing a key form a mesh; a peer without the key sees none of them."""
        keyed = self.mesh(3, key="secret", verbose=True)
        plain = NodeDiscoverPeer.create(
            unicast=[p.endpoint for p in keyed], fast=True, verbose=True
        )
        self.addCleanup(plain.stop)
        plain.start()
        plain.wait_started(SOON)
        wait_full_mesh(keyed)
        master = master_of(keyed)
        master.wait_for_kind("promotion", SOON)
        plain.wait_for_kind("promotion", SOON)
        mark = plain.mark()
        wait_checks(plain, 2, mark)
        self.assertEqual(masters_agreed(keyed), master.iid)
        self.assertEqual(plain.added_ids(), set())
        for peer in keyed:
            self.assertNotIn(plain.iid, peer.added_ids())

    def test_key_vectors_accepted(self) -> None:
        """The spec's encrypted test vectors V1 and V3 are accepted with key secret."""
        peer = spawn_peer(key="secret", fast=True)
        self.addCleanup(peer.stop)
        sock = udp_socket(self)
        sock.sendto(KEY_VECTOR_V1, ("127.0.0.1", peer.port))
        sock.sendto(KEY_VECTOR_V3, ("127.0.0.1", peer.port))
        v1 = peer.wait_for(
            lambda e: e.kind == "added" and e.node_id == CAPTURED_IID,
            SOON,
            "added for the V1 vector",
        )
        self.assertEqual(v1["node"]["weight"], -0.1795700674136)
        self.assertEqual(v1["node"]["hostName"], "vm")
        v3 = peer.wait_for(
            lambda e: e.kind == "added" and e.node_id == "X", SOON, "added for V3"
        )
        self.assertEqual(v3["source"]["port"], sock.getsockname()[1])
        self.assertEqual(peer.events("error"), [])


class NodeDiscoverRawDatagramTests(SynchronousTestCase):
    """Datagrams between a raw Python socket and a real node-discover peer."""

    def test_python_hello_accepted(self) -> None:
        """A hello in the captured format sent from Python adds a node, then expires."""
        sock = udp_socket(self)
        host, port = sock.getsockname()
        fake_iid = str(uuid.uuid4())
        hello = json.loads(CAPTURED_HELLO)
        hello["iid"] = fake_iid
        peer = spawn_peer(fast=True, unicast=[f"{host}:{port}"])
        self.addCleanup(peer.stop)
        sock.sendto(
            json.dumps(hello, separators=(",", ":")).encode(), (host, peer.port)
        )
        added = peer.wait_for(
            lambda e: e.kind == "added" and e.node_id == fake_iid,
            SOON,
            "added for the fake iid",
        )
        record = added["node"]
        self.assertEqual(record["address"], "127.0.0.1")
        self.assertEqual(record["port"], port)
        self.assertEqual(record["hostName"], "vm")
        self.assertEqual(record["weight"], -0.1795700674136)
        self.assertIs(record["isMasterEligible"], True)
        self.assertIsInstance(record["lastSeen"], int)
        self.assertEqual(
            added["envelope"]["pid"], "8893444d-80e2-4550-9677-f59708e67608"
        )
        removed = peer.wait_for(
            lambda e: e.kind == "removed" and e.node_id == fake_iid,
            (FAST_TIMERS["nodeTimeout"] + 2 * FAST_TIMERS["checkInterval"]) / 1000,
            "removal of the silent fake node",
        )
        gap = removed.wall_ms - record["lastSeen"]
        self.assertGreater(gap, FAST_TIMERS["nodeTimeout"])

    def test_peer_hello_format(self) -> None:
        """A peer's hello, read from a raw socket, has the spec's compact envelope."""
        sock = udp_socket(self)
        host, port = sock.getsockname()
        peer = spawn_peer(fast=True, unicast=[f"{host}:{port}"], hostname="nd-1")
        self.addCleanup(peer.stop)
        raw, source = sock.recvfrom(65535)
        self.assertEqual(source, ("127.0.0.1", peer.port))
        envelope = json.loads(raw)
        self.assertEqual(list(envelope), ["event", "pid", "iid", "hostName", "data"])
        self.assertEqual(raw, json.dumps(envelope, separators=(",", ":")).encode())
        self.assertEqual(envelope["event"], "hello")
        self.assertEqual(envelope["iid"], peer.iid)
        self.assertEqual(envelope["pid"], peer.process_uuid)
        self.assertEqual(envelope["hostName"], "nd-1")
        self.assertEqual(
            envelope["data"],
            {
                "isMaster": False,
                "isMasterEligible": True,
                "weight": peer.weight,
                "address": "127.0.0.1",
            },
        )

    def test_error_packet_and_null_datagram(self) -> None:
        """An "error" packet is reported and survived; a null datagram kills it."""
        sock = udp_socket(self)
        peer = spawn_peer(fast=True)
        self.addCleanup(peer.stop)
        packet = {"event": "error", "iid": "E", "data": {"boom": 1}}
        sock.sendto(json.dumps(packet).encode(), ("127.0.0.1", peer.port))
        error = peer.wait_for_kind("error", SOON)
        self.assertEqual(error["data"], {"boom": 1})
        self.assertEqual(peer.members(), [])
        sock.sendto(b"null", ("127.0.0.1", peer.port))
        crash = peer.wait_for_kind("crash", SOON)
        self.assertIn("TypeError", crash["stack"])
        peer.stop()
        self.assertEqual(peer.returncode, 70)


class NodeDiscoverPeerLifecycleTests(SynchronousTestCase):
    """The harness itself: timeouts, bad options, stopping and killing."""

    def setUp(self) -> None:
        # Skip before any assertRaises(AssertionError): inside one, the SkipTest for a
        # missing node-discover would be reported as a failure.
        require_node_discover()

    def test_wait_for_timeout_shows_events(self) -> None:
        """wait_for raises AssertionError listing the recent events on timeout."""
        peer = spawn_peer(fast=True)
        self.addCleanup(peer.stop)
        with self.assertRaises(AssertionError) as caught:
            peer.wait_for(lambda e: False, 0.2, "nothing")
        message = str(caught.exception)
        self.assertIn("timed out after 0.2 s waiting for nothing", message)
        self.assertIn(f'started {{"iid": "{peer.iid}"', message)

    def test_bad_options_reported(self) -> None:
        """node-discover's refusal of nodeTimeout < checkInterval fails the start."""
        with self.assertRaises(AssertionError) as caught:
            spawn_peer(check_interval=2000, node_timeout=1000)
        self.assertIn(
            "nodeTimeout must be greater than or equal", str(caught.exception)
        )

    def test_stop_and_kill_leave_no_process(self) -> None:
        """stop() exits 0 after a stopped event; kill() ends the process by SIGKILL."""
        gentle = spawn_peer(fast=True)
        rough = spawn_peer(fast=True)
        self.addCleanup(gentle.kill)
        self.addCleanup(rough.kill)
        self.assertEqual(gentle.stop(), 0)
        self.assertEqual([e.kind for e in gentle.events()][-2:], ["stopped", "exit"])
        self.assertEqual(rough.kill(), -9)
        for peer in (gentle, rough):
            assert peer.pid is not None
            self.assertRaises(ProcessLookupError, os.kill, peer.pid, 0)

    def test_taken_port_reported(self) -> None:
        """A port already bound (no SO_REUSEADDR sharing) fails the start clearly."""
        sock = udp_socket(self)
        with self.assertRaises(AssertionError) as caught:
            spawn_peer(port=sock.getsockname()[1])
        self.assertIn("EADDRINUSE", str(caught.exception))


class NodeDiscoverDeferredTests(TestCase):
    """NodeDiscoverPeer.when: waiting driven by the running reactor."""

    def test_when_fires_from_reactor(self) -> Deferred[None]:
        """when() fires with the lone peer's own promotion without blocking."""
        from twisted.internet import reactor

        peer = spawn_peer(fast=True)
        self.addCleanup(peer.stop)
        d = peer.when(lambda e: e.kind == "promotion", reactor, SOON, "promotion")

        def promoted(event: PeerEvent) -> None:
            self.assertIs(event["me"]["isMaster"], True)
            started = peer.started_event.mono_ms
            self.assertGreaterEqual(
                event.mono_ms - started, FAST_TIMERS["checkInterval"] - 5
            )

        return d.addCallback(promoted)

    def test_when_times_out(self) -> Deferred[Any]:
        """when() fails with AssertionError after its timeout."""
        from twisted.internet import reactor

        peer = spawn_peer(fast=True)
        self.addCleanup(peer.stop)
        d = peer.when(lambda e: False, reactor, 0.2, "nothing")
        return self.assertFailure(d, AssertionError)


ENSURE = Path(__file__).resolve().parent / "nodejs" / "ensure.py"


class EnsureTests(SynchronousTestCase):
    """tests/harness/nodejs/ensure.py installs node-discover with the machine's npm
    config."""

    def test_npm_runs_in_the_directory_without_prefix(self) -> None:
        """npm ci runs with the harness directory as cwd, never with --prefix (which
        would move npm's global config, with its registry and CA, away)."""
        spec = importlib.util.spec_from_file_location("ensure_under_test", ENSURE)
        assert spec is not None and spec.loader is not None
        ensure = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ensure)
        calls: list[tuple[list[str], Any]] = []

        def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
            calls.append((command, kwargs.get("cwd")))
            return subprocess.CompletedProcess(command, 0)

        self.patch(ensure, "INSTALLED", Path(self.mktemp()))
        self.patch(ensure.shutil, "which", lambda name: "/usr/bin/" + name)
        self.patch(ensure.subprocess, "run", run)
        self.assertEqual(ensure.main(), 0)
        self.assertEqual(
            calls, [(["/usr/bin/npm", "ci", "--no-audit", "--no-fund"], ENSURE.parent)]
        )
