"""Tests for twistednode.etcd.tls: loading the etcd client TLS files."""

from __future__ import annotations

import os

from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IPolicyForHTTPS

from tests.harness.certs import make_pki
from twistednode.etcd.tls import ClientTLS
from twistednode.registry.backends import tls_from_options


class ClientTLSTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.pki = make_pki(self.dir)

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def test_loads_ca_and_client_certificate(self) -> None:
        """A CA and a client certificate with its key load into a policy."""
        tls = ClientTLS.from_files(
            self.pki.ca, self.pki.client_cert, self.pki.client_key
        )
        assert tls.client_certificate is not None
        self.assertIn("CN=root", tls.client_certificate.subject.rfc4514_string())
        policy = tls.policy()
        self.assertTrue(IPolicyForHTTPS.providedBy(policy))
        creator = policy.creatorForNetloc(b"127.0.0.1", 2379)
        self.assertIsNotNone(creator.clientConnectionForTLS)

    def test_key_in_certificate_file(self) -> None:
        """Without --etcd-key the key is read from the certificate file."""
        both = self.write(
            "both.pem", self.read(self.pki.client_cert) + self.read(self.pki.client_key)
        )
        tls = ClientTLS.from_files(None, both)
        self.assertIsNotNone(tls.client_certificate)
        self.assertIsNone(tls.trust_root)

    def test_several_cas(self) -> None:
        """A CA bundle with several certificates is accepted."""
        bundle = self.write(
            "bundle.pem", self.read(self.pki.other_ca) + self.read(self.pki.ca)
        )
        tls = ClientTLS.from_files(bundle)
        self.assertTrue(IOpenSSLTrustRoot.providedBy(tls.trust_root))

    def test_errors_are_clear(self) -> None:
        """Missing files, non-PEM data and mismatched keys are clear ValueErrors."""
        junk = self.write("junk.pem", b"hello")
        cases = [
            ((os.path.join(self.dir, "nope.pem"), None, None), "cannot read the CA"),
            ((junk, None, None), "holds no PEM certificate"),
            ((None, self.pki.client_cert, junk), "no valid PEM private key"),
            ((None, self.pki.client_cert, None), "no valid PEM private key"),
            ((None, self.pki.client_cert, self.pki.server_key), "does not match"),
            ((None, None, self.pki.client_key), "needs --etcd-cert"),
        ]
        for args, message in cases:
            with self.assertRaises(ValueError) as caught:
                ClientTLS.from_files(*args)
            self.assertIn(message, str(caught.exception))

    def test_tls_from_options(self) -> None:
        """The option helper builds ClientTLS only when an option is given."""
        self.assertIsNone(tls_from_options(None, None, None))
        tls = tls_from_options(self.pki.ca, None, None)
        assert tls is not None
        self.assertIsNone(tls.client_certificate)
