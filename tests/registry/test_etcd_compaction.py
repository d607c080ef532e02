"""A real etcd 3.4 compaction of the revision a watch resumes from loses no join.

etcd v3 keeps history only back to its last compaction; a watch asked to start
before it is cancelled with C{compact_revision}. The registry must then list again
and diff. The test makes the window deterministic: the registry's watch stream is
broken, its re-opening is held back (a slow connection), and meanwhile a peer joins
and etcd compacts past the revision the new watch will start from.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tests.etcd.test_v3 import shared_etcd_v3
from tests.registry.test_service import RecordingListener, eventually, make_id, rec
from twistednode.etcd.base import JsonLines
from twistednode.etcd.v3 import EtcdV3Client
from twistednode.registry.backend import Change, HistoryLost, Listing
from twistednode.registry.service import Registry
from twistednode.registry.v3 import EtcdV3Backend
from twistednode.registry.v3codec import encode


class GatedClient(EtcdV3Client):
    """A v3 client whose new streams wait at a gate; it keeps the open ones."""

    gate: Deferred[None] | None = None
    waiting = 0
    streams: list[JsonLines]

    def stream(
        self, path: str, body: Mapping[str, Any], lines: JsonLines
    ) -> Deferred[str]:
        self.streams = [*getattr(self, "streams", []), lines]
        return Deferred.fromCoroutine(self._gated(path, body, lines))

    async def _gated(self, path: str, body: Mapping[str, Any], lines: JsonLines) -> str:
        if self.gate is not None:
            self.waiting += 1
            await self.gate
        url: str = await super().stream(path, body, lines)
        return url


@define(eq=False)
class WatchErrors:
    """The v3 backend, noting what every watch failed with."""

    inner: EtcdV3Backend
    errors: list[BaseException] = field(factory=list)

    @property
    def endpoint(self) -> str:
        return self.inner.endpoint

    def create(self, key: str, value: str, ttl: int) -> Deferred[int]:
        return self.inner.create(key, value, ttl)

    def replace(self, key: str, value: str, ttl: int) -> Deferred[int]:
        return self.inner.replace(key, value, ttl)

    def refresh(self, key: str, ttl: int) -> Deferred[None]:
        return self.inner.refresh(key, ttl)

    def delete(self, key: str) -> Deferred[None]:
        return self.inner.delete(key)

    def refresh_if(self, key: str, value: str, ttl: int) -> Deferred[None]:
        return self.inner.refresh_if(key, value, ttl)

    def delete_if(self, key: str, value: str, created_index: int) -> Deferred[None]:
        return self.inner.delete_if(key, value, created_index)

    def list(self, directory: str) -> Deferred[Listing]:
        return self.inner.list(directory)

    def watch(
        self,
        directory: str,
        from_index: int,
        timeout: float,
        only: str | None = None,
    ) -> Deferred[Sequence[Change]]:
        def noted(failure: Any) -> Any:
            self.errors.append(failure.value)
            return failure

        d = self.inner.watch(directory, from_index, timeout, only)
        return d.addErrback(noted)

    def close(self) -> Deferred[None]:
        return self.inner.close()


class CompactionTests(TestCase):
    def test_compacted_resume_point_loses_no_join(self) -> Deferred[None]:
        """A join during a compacted gap is found by the re-list that follows."""
        return Deferred.fromCoroutine(self._compaction())

    async def _compaction(self) -> None:
        from twisted.internet import reactor

        etcd = shared_etcd_v3()
        cluster = "cp-" + uuid.uuid4().hex[:12]
        client = GatedClient(reactor, [etcd.url])
        backend = WatchErrors(EtcdV3Backend(client, reactor))
        heard = RecordingListener()
        registry = Registry(
            backend=backend,
            cluster=cluster,
            listener=heard,
            clock=reactor,
            record=rec(make_id(1)),
        )
        writer = EtcdV3Backend(EtcdV3Client(reactor, [etcd.url]), reactor)
        registry.startService()
        try:
            await eventually(lambda: registry.state == "watching", "registered")
            lists = registry.stats.lists
            gate: Deferred[None] = Deferred()
            client.gate = gate
            client.streams[-1].abort()  # the stream breaks
            await eventually(lambda: client.waiting == 1, "a re-watch held back")
            self.assertEqual(registry.stats.lists, lists + 1)
            resume_from = registry.view_index + 1

            joiner = make_id(2)
            key = f"{registry.directory}/{joiner}"
            await writer.create(key, rec(joiner).to_json(), 30)
            for n in range(3):
                other = {
                    "key": encode(f"/elsewhere/{cluster}"),
                    "value": encode(str(n)),
                }
                await writer.client.call("/v3/kv/put", other)
            latest = (await writer.list(registry.directory)).index
            self.assertGreaterEqual(latest, resume_from)
            await writer.client.call("/v3/kv/compaction", {"revision": str(latest)})
            self.assertNotIn(joiner, registry.peers)

            client.gate = None
            gate.callback(None)
            await eventually(lambda: joiner in registry.peers, "the join is found")
            self.assertTrue(
                any(isinstance(e, HistoryLost) for e in backend.errors),
                f"the resumed watch met the compaction: {backend.errors!r}",
            )
            self.assertEqual(
                heard.events, [("added", joiner, registry.members[joiner])]
            )
            await eventually(lambda: registry.state == "watching", "watching again")
            await writer.delete(key)
            await eventually(lambda: joiner not in registry.peers, "later changes seen")
        finally:
            await registry.stopService()
            await writer.close()
