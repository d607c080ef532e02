"""Forged membership traffic against three real nodes: none of it is believed.

Three C{twistd -n clusternode} processes (L{tests.harness.clusternodes}) on one
minietcd, under node-discover's election (the one the hellos decide, so a believed
forgery would show as a demotion or a second master). The forger is a UDP socket of
the test process on 127.0.0.1, which is where the attacks of issue 12 came from: a
master hello from a made-up id (weight 1e300), a real member's id from another
address, a goodbye in the master's name, a dead master's captured hello replayed
after its death, a message on an application channel, datagrams sealed with another
cluster's key and unsealed ones.

To capture real traffic, the forger registers a record of its own pointing at its
socket: the nodes then send it their hellos, as they send them to every registry
peer. The replay goes out from that socket and, after the sender's SIGKILL, from the
dead node's own address and port (free once it died).

While each attack runs, every node is sampled: the forged or dead id is never a
member, the master stays the one agreed before, and it never demotes; afterwards
every attacked node's C{dropped} counters (C{GET /status}) show the refusal.
L{SealedClusterForgeryTests} runs with C{--cluster-key-file} (everything is refused
by the seal, as C{dropped.auth}); L{StaticSealedForgeryTests} the same on static
peers, where the seal is the only protection; L{RegistryAuthorityForgeryTests}
without a keyring, where the registry is the membership authority (issue 12 item 2).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

from twisted.trial.unittest import SynchronousTestCase

from tests.harness.clusternodes import (
    FAST_TIMERS,
    ClusterNodeProcess,
    Status,
    start_nodes,
    stop_nodes,
    wait_for_agreed_master,
)
from tests.harness.servers import shared_minietcd
from twistednode.discovery.events import (
    BYE_EVENT,
    EXTENSION_KEY,
    EXTENSION_VERSION,
    HELLO_ADDRESS,
)
from twistednode.discovery.wire import Envelope, encode
from twistednode.registry.record import MemberRecord
from twistednode.trust.keyring import new_key, parse_keyring
from twistednode.trust.seal import HEADER_SIZE, TAG_SIZE, Sealer

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object

TIMERS = FAST_TIMERS
SETTLE = 20.0
#: How long each attack is kept up (several hello intervals and master timeouts).
ATTACK = 2.0
#: The pause between two rounds of forged datagrams.
ROUND = 0.02
#: The issue's replay came 5 s after the death of the master.
REPLAY_AFTER = 5.0


def hello(
    iid: str, *, master: bool = True, weight: float = 1e300, seq: int = 10**9
) -> bytes:
    """A node-discover hello claiming C{iid}, with our extension key."""
    data = {
        "isMaster": master,
        "isMasterEligible": True,
        "weight": weight,
        "address": HELLO_ADDRESS,
        EXTENSION_KEY: {"v": EXTENSION_VERSION, "seq": seq},
    }
    return encode(Envelope("hello", str(uuid.uuid4()), iid, "forger", data))


def goodbye(iid: str, seq: int = 10**9) -> bytes:
    """A goodbye in C{iid}'s name, with a sequence number above any real one."""
    data = {EXTENSION_KEY: {"v": EXTENSION_VERSION, "seq": seq}}
    return encode(Envelope(BYE_EVENT, str(uuid.uuid4()), iid, "forger", data))


def channel_message(iid: str) -> bytes:
    """A message on an application channel, in a member's name."""
    return encode(Envelope("jobs", str(uuid.uuid4()), iid, "forger", {"run": "rm"}))


def sealed_elsewhere(datagram: bytes, cluster: str) -> list[bytes]:
    """C{datagram} sealed with another cluster's key (same name), and with a key
    of ours' shape but for another cluster name."""
    other = Sealer(parse_keyring(new_key()), cluster)
    renamed = Sealer(parse_keyring(new_key()), cluster + "-other")
    now = time.time()
    return [other.seal(now, datagram), renamed.seal(now, datagram)]


def fake_sealed(datagram: bytes, like: bytes) -> bytes:
    """A datagram with the header of a real sealed one (its key id, boot, a higher
    counter) and random bytes for the ciphertext and tag: a guess at the tag."""
    header = bytearray(like[:HEADER_SIZE])
    header[-16] ^= 0x01  # another counter
    return bytes(header) + os.urandom(len(datagram) + TAG_SIZE)


def dropped(status: Status, reasons: Iterable[str]) -> int:
    """How many datagrams a node dropped for any of C{reasons}."""
    counts = status["dropped"]
    return sum(int(counts.get(reason, 0)) for reason in reasons)


def member_of(status: Status, member_id: str) -> dict[str, object] | None:
    """One member's entry in a node's C{/status}, or None."""
    for member in status["members"]:
        if member["id"] == member_id:
            return dict(member)
    return None


class _ForgerySuite(_Base):
    """The attacks; the concrete classes say how the cluster runs and what refuses."""

    #: C{--cluster-key-file} for every node.
    sealed: ClassVar[bool]
    #: The C{dropped} reasons that count a refused forgery in each attack.
    refused_as: ClassVar[dict[str, tuple[str, ...]]]

    def setUp(self) -> None:
        self.registry = shared_minietcd()
        self.cluster = f"forgery-{uuid.uuid4().hex[:10]}"
        self.scratch = tempfile.mkdtemp(prefix="twistednode-forgery-")
        self.addCleanup(shutil.rmtree, self.scratch, True)
        extra = ["--election", "node-discover"]
        if self.sealed:
            path = os.path.join(self.scratch, "cluster.keys")
            with open(path, "w") as f:
                f.write(new_key() + "\n")
            extra += ["--cluster-key-file", path]
        self.forger = self.udp_socket()
        self.captured: list[tuple[bytes, int]] = []
        self.forger_id: str | None = None
        self.nodes = self.start_cluster(extra)
        self.addCleanup(stop_nodes, self.nodes)
        self.master = wait_for_agreed_master(self.nodes, SETTLE)

    def start_cluster(self, extra: list[str]) -> list[ClusterNodeProcess]:
        """Three nodes on the registry."""
        return start_nodes(
            3,
            etcd=self.registry.url,
            cluster=self.cluster,
            timers=TIMERS,
            extra_args=extra,
        )

    def udp_socket(self, port: int = 0) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", port))
        sock.setblocking(False)
        return sock

    def node(self, node_id: str) -> ClusterNodeProcess:
        return next(n for n in self.nodes if n.id == node_id)

    def others(self, node_id: str) -> list[ClusterNodeProcess]:
        return [n for n in self.nodes if n.id != node_id and n.running]

    # -- the attack loop -------------------------------------------------------------

    def attack(
        self,
        datagrams: Sequence[bytes],
        targets: Sequence[ClusterNodeProcess],
        *,
        absent: Iterable[str] = (),
        master: str | None = None,
        reasons: Sequence[str],
        sender: socket.socket | None = None,
        check: Callable[[ClusterNodeProcess, Status], None] | None = None,
    ) -> None:
        """Send every datagram to every target each round for L{ATTACK} seconds,
        sampling every target each round: no id of C{absent} is a member, C{master}
        is still master (and says so), nothing else claims it; then the targets'
        drops for C{reasons} must have risen."""
        sender = sender or self.forger
        master = master or self.master
        absent = set(absent)
        before = {n.id: dropped(n.status(), reasons) for n in targets}
        watched = [n for n in self.nodes if n.running]
        end = time.monotonic() + ATTACK
        rounds = 0
        while time.monotonic() < end:
            for target in targets:
                for datagram in datagrams:
                    sender.sendto(datagram, ("127.0.0.1", target.udp_port))
            for node in watched:
                status = node.status()
                self.assert_undisturbed(node, status, absent, master)
                if check is not None:
                    check(node, status)
            rounds += 1
            time.sleep(ROUND)
        time.sleep(TIMERS.hello_interval)
        for node in watched:
            self.assert_undisturbed(node, node.status(), absent, master)
        for target in targets:
            after = dropped(target.status(), reasons)
            self.assertGreater(
                after,
                before[target.id],
                f"{target.id} did not count the forgeries as {reasons} "
                f"({rounds} rounds): {target.status()['dropped']}",
            )

    def assert_undisturbed(
        self,
        node: ClusterNodeProcess,
        status: Status,
        absent: set[str],
        master: str,
    ) -> None:
        members = {m["id"] for m in status["members"]}
        self.assertFalse(
            members & absent, f"{node.id} lists {members & absent}: {status}"
        )
        self.assertEqual(status["master"], master, f"{node.id}: {status}")
        if node.id == master:
            self.assertTrue(status["self"]["isMaster"], f"{node.id} demoted")
        else:
            self.assertFalse(status["self"]["isMaster"], f"{node.id} promoted")
        claimants = [m["id"] for m in status["members"] if m["isMaster"]]
        self.assertEqual(
            claimants, [] if node.id == master else [master], f"{node.id}: {status}"
        )

    # -- capture ---------------------------------------------------------------------

    def register_forger(self) -> None:
        """Write a record naming the forger's socket (once)."""
        if self.forger_id is not None:
            return
        forger_id = self.forger_id = str(uuid.uuid4())
        record = MemberRecord(
            id=forger_id,
            address="127.0.0.1",
            port=self.forger.getsockname()[1],
            host_name="forger",
            started_at=time.time(),
            client=True,  # the election does not wait for it
        )
        key = f"{self.registry.url}/v2/keys/twistednode/{self.cluster}/members/"
        body = urllib.parse.urlencode({"value": record.to_json(), "ttl": 60}).encode()
        request = urllib.request.Request(key + forger_id, data=body, method="PUT")
        with urllib.request.urlopen(request, timeout=5):
            pass

    def capture(self, seconds: float) -> None:
        """Keep every datagram sent to the forger for C{seconds}, with its port."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data, (_host, port) = self.forger.recvfrom(65535)
            except BlockingIOError:
                time.sleep(0.005)
                continue
            self.captured.append((data, port))

    def captured_from(self, node: ClusterNodeProcess) -> list[bytes]:
        return [d for d, port in self.captured if port == node.udp_port]

    # -- the attacks ---------------------------------------------------------------

    def test_forged_master_hello_is_refused(self) -> None:
        """A master hello from a made-up id with weight 1e300: no node lists it, the
        master stays master."""
        forged_id = str(uuid.uuid4())
        forged = hello(forged_id)
        self.attack(
            [forged, *self.variants(forged)],
            self.nodes,
            absent={forged_id},
            reasons=self.refused_as["forged-master"],
        )

    def test_impersonation_is_refused(self) -> None:
        """A real member's id, claiming mastership from the forger's address: it is
        still listed at its own address and port, and not as master."""
        victim = next(n for n in self.nodes if n.id != self.master)
        datagrams = [hello(victim.id)]
        datagrams += self.variants(hello(victim.id))

        def listed_at_home(node: ClusterNodeProcess, status: Status) -> None:
            if node is victim:
                return
            seen = member_of(status, victim.id)
            self.assertIsNotNone(seen, f"{node.id} lost {victim.id}")
            assert seen is not None
            self.assertEqual(seen["port"], victim.udp_port, f"{node.id}: {seen}")

        self.attack(
            datagrams,
            self.others(victim.id),
            reasons=self.refused_as["impersonation"],
            check=listed_at_home,
        )

    def test_forged_goodbye_is_refused(self) -> None:
        """Goodbyes in the master's name: every node keeps it as member and master."""
        datagrams = [goodbye(self.master)] + self.variants(goodbye(self.master))

        def master_listed(node: ClusterNodeProcess, status: Status) -> None:
            if node.id != self.master:
                self.assertIsNotNone(member_of(status, self.master), node.id)

        self.attack(
            datagrams,
            self.others(self.master),
            reasons=self.refused_as["goodbye"],
            check=master_listed,
        )

    def test_replay_after_death_is_refused(self) -> None:
        """The dead master's captured hellos, replayed 5 s after its SIGKILL from
        the forger's socket and from its own address: it stays dead."""
        self.register_forger()
        dead = self.node(self.master)
        self.capture(TIMERS.hello_interval * 5)
        replays = self.captured_from(dead)
        self.assertTrue(replays, f"nothing captured from {dead.id}: {self.captured}")
        dead.kill()
        killed = time.monotonic()
        survivors = self.others(dead.id)
        successor = wait_for_agreed_master(survivors, SETTLE, "a successor")
        time.sleep(max(0.0, killed + REPLAY_AFTER - time.monotonic()))
        reasons = self.refused_as["replay"]
        self.attack(
            replays, survivors, absent={dead.id}, master=successor, reasons=reasons
        )
        own_address = self.udp_socket(dead.udp_port)
        self.attack(
            replays,
            survivors,
            absent={dead.id},
            master=successor,
            reasons=reasons,
            sender=own_address,
        )

    def test_forged_channel_message_is_refused(self) -> None:
        """A message on an application channel in a member's name is refused before
        any channel is looked up."""
        datagrams = [channel_message(self.master)] + self.variants(
            channel_message(self.master)
        )
        self.attack(
            datagrams, self.others(self.master), reasons=self.refused_as["channel"]
        )

    def variants(self, datagram: bytes) -> list[bytes]:
        """The same forgery in other clothes (sealed ones, with a keyring)."""
        return []


class SealedClusterForgeryTests(_ForgerySuite, SynchronousTestCase):
    """With C{--cluster-key-file}: the seal refuses everything (C{dropped.auth})."""

    sealed = True
    refused_as: ClassVar[dict[str, tuple[str, ...]]] = {
        "forged-master": ("auth",),
        "impersonation": ("auth",),
        "goodbye": ("auth",),
        "replay": ("auth",),
        "channel": ("auth",),
    }

    def setUp(self) -> None:
        super().setUp()
        self.register_forger()
        self.capture(TIMERS.hello_interval * 3)
        self.assertTrue(self.captured, "no sealed hello reached the forger")
        self.sample = self.captured[-1][0]

    def variants(self, datagram: bytes) -> list[bytes]:
        """Sealed with other keys, and a guessed tag under the real key's id."""
        return [
            *sealed_elsewhere(datagram, self.cluster),
            fake_sealed(datagram, self.sample),
        ]

    def test_unsealed_datagrams_are_refused(self) -> None:
        """Plain node-discover hellos, goodbyes and channel messages: all dropped as
        'auth', never parsed (no 'not-joined' or decode reason rises)."""
        target = self.others(self.master)[0]
        before = target.status()["dropped"]
        datagrams = [
            hello(str(uuid.uuid4())),
            goodbye(self.master),
            channel_message(self.master),
            b"{not json",
            b"\xffTN\x01truncated",
        ]
        self.attack(datagrams, [target], reasons=("auth",))
        after = target.status()["dropped"]
        parsed = {r for r in after if r != "auth" and after[r] != before.get(r, 0)}
        self.assertEqual(parsed, set(), f"parsed past the seal: {before} -> {after}")

    def test_other_clusters_key_is_refused(self) -> None:
        """A hello sealed with another cluster's key, or for another cluster name,
        is dropped as 'auth'."""
        forged = hello(str(uuid.uuid4()))
        self.attack(
            sealed_elsewhere(forged, self.cluster),
            self.nodes,
            reasons=("auth",),
        )


class RegistryAuthorityForgeryTests(_ForgerySuite, SynchronousTestCase):
    """Without a keyring, in a registry cluster: the registry is the membership
    authority, so the same forgeries are refused as unlisted, from the wrong
    address, a goodbye of a live record, or a replay of a removed member."""

    sealed = False
    refused_as: ClassVar[dict[str, tuple[str, ...]]] = {
        "forged-master": ("unlisted",),
        "impersonation": ("address",),
        "goodbye": ("live-goodbye",),
        "replay": ("address", "stale-seq", "removed", "unlisted"),
        "channel": ("address",),
    }


class StaticSealedForgeryTests(SealedClusterForgeryTests):
    """A sealed cluster of static peers (C{--no-etcd}, no registry to consult):
    the seal alone refuses the forgeries, and a removed member's boot id keeps
    its replayed hellos out. The forger is one of the static peers, so it is sent
    every hello."""

    def start_cluster(self, extra: list[str]) -> list[ClusterNodeProcess]:
        ports = free_udp_ports(3)
        forger = f"127.0.0.1:{self.forger.getsockname()[1]}"
        nodes = [
            ClusterNodeProcess(
                peers=[f"127.0.0.1:{p}" for p in ports if p != port] + [forger],
                cluster=self.cluster,
                udp_port=port,
                timers=TIMERS,
                extra_args=extra,
            )
            for port in ports
        ]
        try:
            for node in nodes:
                node.launch()
            for node in nodes:
                node.wait_ready()
        except BaseException:
            stop_nodes(nodes)
            raise
        return nodes

    def register_forger(self) -> None:
        """Nothing to do: the forger is a static peer of every node."""


def free_udp_ports(count: int) -> list[int]:
    """C{count} UDP ports that were free a moment ago."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
