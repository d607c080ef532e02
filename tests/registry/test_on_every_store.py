"""The registry's behaviour, the same on every store it supports.

One suite, three real servers: minietcd (v2), real etcd 3.4 over the v2 API, and real
etcd 3.4 over the v3 API (started without v2). Each test runs registries with the
backend L{twistednode.registry.backends.make_backend} builds for that server, and
checks what
the node relies on: join, change, clean leave ("deleted"), expiry ("expired"),
re-creation of our own record after it is lost, and a re-list after a gap in the
watch (the link to the store cut while peers come and go).
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tests.etcd.test_v3 import shared_etcd_v3
from tests.harness.servers import shared_minietcd, shared_real_etcd
from tests.harness.tcpcut import CuttableProxy
from tests.registry.test_service import RecordingListener, eventually, make_id, rec
from twistednode.registry.backends import SelectedBackend, make_backend
from twistednode.registry.service import Registry

A, B, C, D = (make_id(n) for n in (11, 12, 13, 14))


class RegistryBehaviourMixin:
    """The behaviour suite; subclasses say which server and API."""

    api = "auto"

    def server_url(self) -> str:
        raise NotImplementedError

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.cluster = "rb-" + uuid.uuid4().hex[:12]
        self.directory = f"/twistednode/{self.cluster}/members"

    def backend(self, url: str | None = None) -> SelectedBackend:
        backend = make_backend(self.reactor, [url or self.server_url()], api=self.api)
        self.addCleanup(backend.close)  # type: ignore[attr-defined]
        return backend

    def registry(
        self, member: str, url: str | None = None, **kwargs: Any
    ) -> tuple[Registry, RecordingListener]:
        listener = RecordingListener()
        registry = Registry(
            backend=self.backend(url),
            cluster=self.cluster,
            listener=listener,
            clock=self.reactor,
            record=rec(member),
            **kwargs,
        )
        registry.startService()

        async def stop() -> None:
            if registry.running:
                await registry.stopService()

        self.addCleanup(lambda: Deferred.fromCoroutine(stop()))  # type: ignore[attr-defined]
        return registry, listener

    # -- the behaviours ----------------------------------------------------------------

    def test_join_change_leave(self) -> Deferred[None]:
        """A peer's join, change and clean leave ("deleted") are all reported."""
        return Deferred.fromCoroutine(self._join_change_leave())

    async def _join_change_leave(self) -> None:
        a, heard = self.registry(A)
        await eventually(lambda: a.state == "watching", "A registered")
        b, _ = self.registry(B)
        await eventually(lambda: B in a.peers, "A sees B")
        self.assertEqual(heard.events, [("added", B, b.own_index)])  # type: ignore[attr-defined]
        b.set_record(attrs.evolve(rec(B), advertisement={"v": 2}))
        await eventually(lambda: a.peers[B].advertisement == {"v": 2}, "B's change")
        self.assertEqual(heard.events[-1], ("changed", B, {"v": 2}))  # type: ignore[attr-defined]
        await b.stopService()
        await eventually(lambda: B not in a.peers, "A sees B leave")
        self.assertEqual(heard.events[-1], ("removed", B, "deleted"))  # type: ignore[attr-defined]
        listing = await self.backend().list(self.directory)
        self.assertEqual([e.name for e in listing.entries], [A])  # type: ignore[attr-defined]

    def test_expiry(self) -> Deferred[None]:
        """A record that is not kept alive (a crashed peer) is reported "expired"."""
        return Deferred.fromCoroutine(self._expiry())

    async def _expiry(self) -> None:
        a, heard = self.registry(A)
        await eventually(lambda: a.state == "watching", "A registered")
        crashed = self.backend()
        await crashed.create(f"{self.directory}/{C}", rec(C).to_json(), 2)
        await eventually(lambda: C in a.peers, "A sees C")
        await eventually(lambda: C not in a.peers, "C expires", timeout=10)
        self.assertEqual(heard.events[-1], ("removed", C, "expired"))  # type: ignore[attr-defined]

    def test_own_record_lost_is_recreated(self) -> Deferred[None]:
        """Our record removed behind our back is written again; peers see it back."""
        return Deferred.fromCoroutine(self._recreated())

    async def _recreated(self) -> None:
        a, _ = self.registry(A)
        b, heard_by_b = self.registry(B)
        await eventually(lambda: A in b.peers and B in a.peers, "A and B meet")
        first = a.own_index
        await self.backend().delete(f"{self.directory}/{A}")
        await eventually(lambda: a.stats.recreations == 1, "A re-creates its record")
        await eventually(lambda: A in b.peers, "B sees A again")
        self.assertGreater(a.own_index, first)  # type: ignore[attr-defined]
        # B's watch shows the deletion and the new record, unless it was between
        # two watches (re-listing after a quiet timeout) while both happened: then
        # its listing has A all along. Either way it ends up listing A.
        self.assertIn(  # type: ignore[attr-defined]
            [e[:2] for e in heard_by_b.events],
            ([("added", A), ("removed", A), ("added", A)], [("added", A)]),
        )
        listing = await self.backend().list(self.directory)
        self.assertEqual(sorted(e.name for e in listing.entries), sorted([A, B]))  # type: ignore[attr-defined]

    def test_relist_after_gap(self) -> Deferred[None]:
        """After the link to the store is cut, a re-list finds what was missed."""
        return Deferred.fromCoroutine(self._gap())

    async def _gap(self) -> None:
        port = int(self.server_url().rsplit(":", 1)[1])
        proxy = CuttableProxy(self.reactor, port)
        self.addCleanup(proxy.stop)  # type: ignore[attr-defined]
        writer = self.backend()
        await writer.create(f"{self.directory}/{C}", rec(C).to_json(), 30)
        a, heard = self.registry(A, url=proxy.url)
        await eventually(lambda: a.state == "watching" and C in a.peers, "A sees C")
        lists = a.stats.lists
        proxy.cut()
        await eventually(lambda: a.state == "unreachable", "A notices the gap")
        await writer.delete(f"{self.directory}/{C}")
        await writer.create(f"{self.directory}/{D}", rec(D).to_json(), 30)
        self.assertIn(C, a.peers, "the last known peers are kept meanwhile")  # type: ignore[attr-defined]
        proxy.restore()
        await eventually(lambda: D in a.peers and C not in a.peers, "A re-lists", 15)
        self.assertEqual(  # type: ignore[attr-defined]
            heard.events[-2:],
            [("removed", C, "vanished"), ("added", D, a.members[D])],
        )
        self.assertGreater(a.stats.lists, lists)  # type: ignore[attr-defined]
        await eventually(lambda: a.state == "watching", "A watches again")
        await writer.delete(f"{self.directory}/{D}")


class MiniEtcdV2Tests(RegistryBehaviourMixin, TestCase):
    api = "v2"

    def server_url(self) -> str:
        return shared_minietcd().url


class RealEtcdV2Tests(RegistryBehaviourMixin, TestCase):
    api = "v2"

    def server_url(self) -> str:
        return shared_real_etcd().url


class RealEtcdV3Tests(RegistryBehaviourMixin, TestCase):
    api = "v3"

    def server_url(self) -> str:
        return shared_etcd_v3().url


class RealEtcdAutoTests(RegistryBehaviourMixin, TestCase):
    """etcd 3.4 serving both APIs, with "auto": the probe picks v3."""

    api = "auto"

    def server_url(self) -> str:
        return shared_real_etcd().url

    def test_auto_picks_v3(self) -> Deferred[None]:
        """A real etcd that serves /v3/ is used over v3 when asked for "auto"."""
        return Deferred.fromCoroutine(self._auto())

    async def _auto(self) -> None:
        backend = self.backend()
        self.assertIsNone(backend.api)
        await backend.list(self.directory)
        self.assertEqual(backend.api, "v3")
