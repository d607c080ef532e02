"""Registering over TLS with a real etcd 3.4 that demands client certificates.

The certificates are made in the test (L{tests.harness.certs}); etcd serves its client
URL
over https with C{--cert-file/--key-file/--trusted-ca-file --client-cert-auth}. A
registry verifies etcd against the test CA and presents its client certificate, over
the v2 and the v3 API; without a client certificate, or trusting another CA, it
cannot get in, and says why.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tests.harness.certs import Pki, make_pki
from tests.harness.servers import RealEtcd, free_port, shared_instance
from tests.registry.test_service import RecordingListener, eventually, make_id, rec
from twistednode.etcd.tls import ClientTLS
from twistednode.registry.backend import BackendUnavailable
from twistednode.registry.backends import make_backend
from twistednode.registry.service import Registry


class TLSEtcd(RealEtcd):
    """Real etcd with its client URL on https and client-certificate auth.

    The certificates are made in its scratch dir (gone with it). Readiness is
    polled on a plain-http metrics URL (etcd serves /health there).
    """

    def __init__(self, **kwargs: Any) -> None:
        self.metrics_port = free_port()
        super().__init__(**kwargs)
        self.url = self.url.replace("http://", "https://")
        directory = os.path.join(self.workdir, "pki")
        os.mkdir(directory)
        self.pki: Pki = make_pki(directory)

    def _argv(self) -> list[str]:
        return [
            *super()._argv(),
            "--cert-file",
            self.pki.server_cert,
            "--key-file",
            self.pki.server_key,
            "--trusted-ca-file",
            self.pki.ca,
            "--client-cert-auth",
            "--listen-metrics-urls",
            f"http://127.0.0.1:{self.metrics_port}",
        ]

    def _ready_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/health"


def shared_tls_etcd() -> TLSEtcd:
    """One TLS etcd (v2 and v3) per test process, started on first use."""

    return shared_instance("etcd-tls", lambda: TLSEtcd(enable_v2=True).start())


class EtcdTLSTests(TestCase):
    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.etcd = shared_tls_etcd()
        self.pki = self.etcd.pki
        self.cluster = "tls-" + uuid.uuid4().hex[:12]

    def tls(self, ca: str | None = None, client: bool = True) -> ClientTLS:
        if not client:
            return ClientTLS.from_files(ca or self.pki.ca)
        return ClientTLS.from_files(
            ca or self.pki.ca, self.pki.client_cert, self.pki.client_key
        )

    async def _registers(self, api: str) -> None:
        self.assertTrue(self.etcd.url.startswith("https://127.0.0.1:"))
        registries = []
        heard = RecordingListener()
        for n, listener in ((1, heard), (2, RecordingListener())):
            backend = make_backend(self.reactor, [self.etcd.url], api, tls=self.tls())
            registry = Registry(
                backend=backend,
                cluster=self.cluster,
                listener=listener,
                clock=self.reactor,
                record=rec(make_id(n)),
            )
            registry.startService()
            registries.append(registry)
        try:
            first, second = registries
            await eventually(lambda: make_id(2) in first.peers, "the peer over TLS")
            await eventually(lambda: first.state == "watching", "registered")
            self.assertEqual(first.endpoint, self.etcd.url)
            await second.stopService()
            await eventually(lambda: make_id(2) not in first.peers, "clean leave")
            self.assertEqual(heard.events[-1], ("removed", make_id(2), "deleted"))
        finally:
            for registry in registries:
                if registry.running:
                    await registry.stopService()

    def test_registers_over_tls_v3(self) -> Deferred[None]:
        """Over v3, registries verify etcd and authenticate with their certificate."""
        return Deferred.fromCoroutine(self._registers("v3"))

    def test_registers_over_tls_v2(self) -> Deferred[None]:
        """The same TLS settings work for the v2 client."""
        return Deferred.fromCoroutine(self._registers("v2"))

    async def _refused(self, tls: ClientTLS) -> str:
        backend = make_backend(self.reactor, [self.etcd.url], "auto", tls=tls)
        try:
            with self.assertRaises(BackendUnavailable) as caught:
                await backend.list(f"/twistednode/{self.cluster}/members")
        finally:
            await backend.close()
        self.assertIsNone(backend.api)
        return str(caught.exception)

    def test_no_client_certificate(self) -> Deferred[None]:
        """Without a client certificate etcd refuses the connection."""

        async def run() -> None:
            message = await self._refused(self.tls(client=False))
            self.assertIn(self.etcd.url, message)

        return Deferred.fromCoroutine(run())

    def test_untrusted_server(self) -> Deferred[None]:
        """A server certificate from a CA we do not trust is not accepted."""

        async def run() -> None:
            message = await self._refused(self.tls(ca=self.pki.other_ca))
            self.assertIn("certificate verify failed", message)

        return Deferred.fromCoroutine(run())
