"""Test certificates made with C{cryptography}: a CA, a server and a client cert.

L{make_pki} writes PEM files into a directory: C{ca.pem}, C{server.pem} +
C{server-key.pem} (for 127.0.0.1 and localhost, server and client auth),
C{client.pem} + C{client-key.pem} (client auth), and an unrelated
C{other-ca.pem}. EC P-256 keys keep it fast.
"""

from __future__ import annotations

import datetime
import ipaddress
import os

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@frozen
class Pki:
    """Paths of the files L{make_pki} wrote."""

    ca: str
    other_ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _ca(common: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common: str,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    usages: list[x509.ObjectIdentifier],
    server: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if server:
        names: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost"),
        ]
        builder = builder.add_extension(
            x509.SubjectAlternativeName(names), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(directory: str) -> Pki:
    """Write a CA, a server and a client certificate into C{directory}."""
    ca, ca_key = _ca("twistednode test CA")
    other, _ = _ca("some other CA")
    # etcd's v3 JSON gateway dials etcd's own gRPC server presenting the server
    # certificate as its client certificate, so with --client-cert-auth the server
    # certificate needs clientAuth too (else every /v3/ call is a 503).
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    server, server_key = _leaf("etcd", ca, ca_key, both, server=True)
    client, client_key = _leaf(
        "root", ca, ca_key, [ExtendedKeyUsageOID.CLIENT_AUTH], server=False
    )
    path = lambda name: os.path.join(directory, name)  # noqa: E731
    return Pki(
        ca=_write(path("ca.pem"), _cert_pem(ca)),
        other_ca=_write(path("other-ca.pem"), _cert_pem(other)),
        server_cert=_write(path("server.pem"), _cert_pem(server)),
        server_key=_write(path("server-key.pem"), _key_pem(server_key)),
        client_cert=_write(path("client.pem"), _cert_pem(client)),
        client_key=_write(path("client-key.pem"), _key_pem(client_key)),
    )
