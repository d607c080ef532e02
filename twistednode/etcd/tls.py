# -*- test-case-name: tests.etcd.test_tls -*-
"""
Client TLS for talking to an https:// etcd: the C{--etcd-cacert/--etcd-cert/--etcd-key}
options turned into an C{IPolicyForHTTPS} for C{twisted.web.client.Agent}.

L{ClientTLS.from_files} reads and checks the PEM files once, at start-up, so a wrong
path or a key that does not match its certificate is a clear C{ValueError} before the
node runs, not a handshake failure later. L{ClientTLS.policy} gives the object to pass
as C{Agent(reactor, contextFactory=...)}; it builds Twisted's
C{optionsForClientTLS(hostname, trustRoot, clientCertificate)} per connection, so the
server's certificate is verified against the given CA (or the platform's trust store
when no CA file is given) and its name or IP address against the URL's host.

Both the v2 and the v3 client use it through L{twistednode.etcd.httpclient.http_client}.
This module loads OpenSSL, so it is imported only when TLS options are given.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import re
from typing import Any

from attrs import define, field, frozen
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"cannot read the {what} {path!r}: {e.strerror}") from None


def _certificates(data: bytes, path: str, what: str) -> list[ssl.Certificate]:
    blocks = _PEM_CERTIFICATE.findall(data)
    if not blocks:
        raise ValueError(f"the {what} {path!r} holds no PEM certificate")
    try:
        return [ssl.Certificate.loadPEM(block) for block in blocks]
    except (crypto.Error, ValueError) as e:
        problem = f"the {what} {path!r} is not a valid certificate: {e}"
        raise ValueError(problem) from None


def _public(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )


@frozen
class ClientTLS:
    """
    What a client needs to talk TLS to etcd.

    @ivar trust_root: the CA(s) the server's certificate must chain to, or None
        for the platform's trust store.
    @ivar client_certificate: our certificate for etcd's C{--client-cert-auth}
        (with C{client_key}), or None.
    """

    trust_root: Any = None
    client_certificate: x509.Certificate | None = None
    client_key: Any = field(default=None, repr=False)

    @classmethod
    def from_files(
        cls,
        cacert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
    ) -> ClientTLS:
        """
        Load the PEM files named by C{--etcd-cacert}, C{--etcd-cert}, C{--etcd-key}.

        C{key} may be omitted when the key is in the C{cert} file.

        @raise ValueError: a file cannot be read, holds no PEM certificate or key,
            a key is given without a certificate, or the key does not match.
        """
        trust_root: Any = None
        if cacert is not None:
            cas = _certificates(_read(cacert, "CA file"), cacert, "CA file")
            trust_root = ssl.trustRootFromCertificates(cas)
        if cert is None:
            if key is not None:
                raise ValueError(
                    "--etcd-key needs --etcd-cert (the certificate it signs)"
                )
            return cls(trust_root=trust_root)
        cert_data = _read(cert, "client certificate")
        _certificates(cert_data, cert, "client certificate")
        certificate = x509.load_pem_x509_certificates(cert_data)[0]
        where = cert if key is None else key
        key_data = cert_data if key is None else _read(key, "client key")
        try:
            private = serialization.load_pem_private_key(key_data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError(
                f"{where!r} holds no valid PEM private key (without a passphrase)"
            ) from None
        if _public(private.public_key()) != _public(certificate.public_key()):
            raise ValueError(
                f"the key {where!r} does not match the certificate {cert!r}"
            )
        return cls(trust_root, certificate, private)

    def options_for(self, hostname: str) -> IOpenSSLClientConnectionCreator:
        """The connection creator for a server named C{hostname} (name or IP)."""
        extra: dict[str, Any] = {}
        if self.client_certificate is not None:
            # cryptography objects, which pyOpenSSL takes without deprecation.
            extra["extraCertificateOptions"] = {
                "certificate": self.client_certificate,
                "privateKey": self.client_key,
            }
        return ssl.optionsForClientTLS(hostname, trustRoot=self.trust_root, **extra)

    def policy(self) -> IPolicyForHTTPS:
        """The C{contextFactory} for an C{Agent}."""
        return ClientTLSPolicy(self)


@implementer(IPolicyForHTTPS)
@define(eq=False)
class ClientTLSPolicy:
    """An C{IPolicyForHTTPS} that applies one L{ClientTLS} to every connection."""

    tls: ClientTLS

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return self.tls.options_for(hostname.decode("ascii"))
