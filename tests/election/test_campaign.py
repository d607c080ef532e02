"""The leased election on real registries: minietcd, etcd's v2 API and its v3 API.

Each test runs three L{ClusterNode}s in this process, on the real reactor, against a
real server; mastership is sampled every few milliseconds and must never be held by
two nodes at once.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall, deferLater
from twisted.trial.unittest import TestCase

from tests.harness.servers import MiniEtcdProcess, shared_minietcd, shared_real_etcd
from tests.registry.test_service import eventually
from twistednode import ClusterNode, Demotion, MasterSeen, Promotion, make_settings
from twistednode.election.fencing import EpochFence, StaleEpoch


def master_key_index(url: str, cluster: str) -> int | None:
    """The master key's createdIndex, read with a plain v2 GET."""
    try:
        with urllib.request.urlopen(
            f"{url}/v2/keys/twistednode/{cluster}/master", timeout=5
        ) as answer:
            return int(json.load(answer)["node"]["createdIndex"])
    except urllib.error.HTTPError as e:
        e.close()
        return None


def delete_master_key(url: str, cluster: str) -> None:
    request = urllib.request.Request(
        f"{url}/v2/keys/twistednode/{cluster}/master", method="DELETE"
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


class LeaseElectionMixin:
    """The cases, for a server given by L{server_url} and an etcd API."""

    api = "v2"

    def server_url(self) -> str:
        raise NotImplementedError

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.url = self.server_url()
        self.cluster = "lease-" + uuid.uuid4().hex[:10]
        self.nodes: list[ClusterNode] = []
        self.events: list[tuple[str, str, Any]] = []
        self.both: list[tuple[str, ...]] = []
        sampler = LoopingCall(self._sample)
        sampler.clock = reactor
        sampler.start(0.005)
        self.addCleanup(sampler.stop)  # type: ignore[attr-defined]

    def _sample(self) -> None:
        masters = tuple(n.id for n in self.nodes if n.running and n.is_master)
        if len(masters) > 1:
            self.both.append(masters)

    def node(self, weight: float) -> ClusterNode:
        node = ClusterNode(
            reactor=self.reactor,
            settings=make_settings(epoch_ms=int(time.time() * 1000), weight=weight),
            cluster=self.cluster,
            etcd_urls=(self.url,),
            udp_port=0,
            udp_interface="127.0.0.1",
            pid=str(uuid.uuid4()),
            etcd_api=self.api,
        )
        for name in ("promotion", "demotion", "master"):
            node.on(name, self._recorder(node, name))  # type: ignore[arg-type]
        node.startService()
        self.nodes.append(node)

        async def stop() -> None:
            if node.running:
                await node.stopService()

        self.addCleanup(lambda: Deferred.fromCoroutine(stop()))  # type: ignore[attr-defined]
        return node

    def _recorder(self, node: ClusterNode, name: str) -> Any:
        def record(event: Any) -> None:
            if isinstance(event, Promotion | Demotion):
                self.events.append((name, node.id, event.epoch))
            elif isinstance(event, MasterSeen):
                self.events.append((name, event.member.id, event.epoch))

        return record

    def masters(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.running and n.is_master]

    def agreed(self) -> ClusterNode | None:
        """The one master every running node names, if there is one."""
        masters = self.masters()
        if len(masters) != 1:
            return None
        master = masters[0]
        running = [n for n in self.nodes if n.running]
        if all(n.master == master.id for n in running):
            return master
        return None

    async def three(self) -> ClusterNode:
        for weight in (3.0, 2.0, 1.0):
            self.node(weight)
        await eventually(lambda: self.agreed() is not None, "one master", 10)
        master = self.agreed()
        assert master is not None
        return master

    async def _one_master_with_epoch(self) -> None:
        master = await self.three()
        lead = master.leadership
        self.assertEqual(lead.mode, "lease")  # type: ignore[attr-defined]
        self.assertGreater(lead.valid_for, 0)  # type: ignore[attr-defined]
        if self.api == "v2":
            self.assertEqual(  # type: ignore[attr-defined]
                lead.epoch, master_key_index(self.url, self.cluster)
            )
        self.assertIn(("promotion", master.id, lead.epoch), self.events)  # type: ignore[attr-defined]
        # Hellos say what the lease says: the others hear the master as master.
        await eventually(
            lambda: all(
                any(m.id == master.id and m.is_master for m in n.members)
                for n in self.nodes
                if n is not master
            ),
            "hellos naming the master",
        )
        status = master.status_document()["election"]
        self.assertEqual((status["mode"], status["epoch"]), ("lease", lead.epoch))  # type: ignore[attr-defined]
        self.assertEqual(self.both, [])  # type: ignore[attr-defined]

    def test_one_master_with_epoch(self) -> Deferred[None]:
        """Three nodes: one master, whose epoch is the key's index, heard by all."""
        return Deferred.fromCoroutine(self._one_master_with_epoch())

    async def _clean_stop_hands_over_fast(self) -> None:
        master = await self.three()
        old = master.leadership.epoch
        assert old is not None
        started = time.monotonic()
        stopping = master.stopService()
        await eventually(lambda: self.agreed() is not None, "a new master", 5)
        took = time.monotonic() - started
        await stopping
        new = self.agreed()
        assert new is not None and new is not master
        new_epoch = new.leadership.epoch
        assert new_epoch is not None
        self.assertGreater(new_epoch, old)  # type: ignore[attr-defined]
        self.assertLess(took, 0.1, f"handover took {took:.3f} s")  # type: ignore[attr-defined]
        self.assertIn(("demotion", master.id, old), self.events)  # type: ignore[attr-defined]
        self.assertEqual(self.both, [])  # type: ignore[attr-defined]

    def test_clean_stop_hands_over_fast(self) -> Deferred[None]:
        """A master that stops resigns: a new master within 100 ms, higher epoch."""
        return Deferred.fromCoroutine(self._clean_stop_hands_over_fast())

    async def _fenced_writes(self) -> None:
        master = await self.three()
        fence = EpochFence()
        first = master.leadership.epoch
        assert first is not None
        fence.admit(first)
        await master.stopService()
        await eventually(lambda: self.agreed() is not None, "a new master", 5)
        new = self.agreed()
        assert new is not None
        second = new.leadership.epoch
        assert second is not None
        fence.admit(second)
        self.assertRaises(StaleEpoch, fence.admit, first)  # type: ignore[attr-defined]

    def test_stale_epoch_refused_by_fence(self) -> Deferred[None]:
        """After a handover the old master's epoch is refused by the fence."""
        return Deferred.fromCoroutine(self._fenced_writes())


class MiniEtcdLeaseTests(LeaseElectionMixin, TestCase):
    """The leased election on minietcd."""

    def server_url(self) -> str:
        return shared_minietcd().url

    async def _deleted_key(self) -> None:
        master = await self.three()
        old = master.leadership.epoch
        assert old is not None
        delete_master_key(self.url, self.cluster)

        def new_term() -> bool:
            new = self.agreed()
            return new is not None and (new.leadership.epoch or 0) > old

        # The heaviest node may well take the key again at once: a new term.
        await eventually(new_term, "a new term", 5)
        self.assertIn(("demotion", master.id, old), self.events)
        new = self.agreed()
        assert new is not None and new.leadership.epoch is not None
        # No lease covers a key deleted under its master (lease.py's docstring):
        # until its watch tells it, the old master may still say it leads, and the
        # fence is what refuses it.
        fence = EpochFence()
        fence.admit(new.leadership.epoch)
        self.assertRaises(StaleEpoch, fence.admit, old)

    def test_deleted_key_ends_the_term(self) -> Deferred[None]:
        """A master key deleted by hand: its master steps down, a new term begins
        with a higher epoch, which a fence prefers to the old one."""
        return Deferred.fromCoroutine(self._deleted_key())


class RegistryOutageTests(LeaseElectionMixin, TestCase):
    """minietcd stopped and restarted empty: no master while it is down, then one."""

    def server_url(self) -> str:
        self.minietcd = MiniEtcdProcess().start()
        self.addCleanup(self.minietcd.stop)
        return self.minietcd.url

    async def _outage(self) -> None:
        master = await self.three()
        self.minietcd.stop()
        down = time.monotonic()
        await eventually(lambda: not self.masters(), "no master", 3)
        self.assertLess(time.monotonic() - down, master.master_ttl)
        late = self.node(0.5)  # starts during the outage: must not promote
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            self.assertEqual(self.masters(), [])
            await deferLater(self.reactor, 0.05)
        self.assertFalse(late.is_master)
        self.minietcd = MiniEtcdProcess(port=self.minietcd.port).start()
        self.addCleanup(self.minietcd.stop)
        await eventually(lambda: self.agreed() is not None, "one master again", 15)
        self.assertEqual(self.both, [])

    def test_outage_means_no_master_then_one(self) -> Deferred[None]:
        """Registry down: every master steps down within the TTL and a node started
        meanwhile never promotes; registry back: one master again."""
        return Deferred.fromCoroutine(self._outage())


class RealEtcdV2LeaseTests(LeaseElectionMixin, TestCase):
    """The leased election on real etcd 3.4's v2 API."""

    def server_url(self) -> str:
        return shared_real_etcd().url


class RealEtcdV3LeaseTests(LeaseElectionMixin, TestCase):
    """The leased election on real etcd 3.4's v3 API (a lease per term)."""

    api = "v3"

    def server_url(self) -> str:
        return shared_real_etcd().url
