# -*- test-case-name: tests.minietcd.test_tap -*-
"""Server TLS from files, as etcd takes it: a certificate and key, and optionally a CA
whose certificates clients must present (etcd's C{--client-cert-auth})."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from twisted.internet.error import VerifyError
from twisted.python import usage

if TYPE_CHECKING:
    from twisted.internet.ssl import CertificateOptions

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.S
)


def _read(option: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise usage.UsageError(f"{option} {path}: {e.strerror or e}") from None


def server_tls(
    cert_file: str, key_file: str, client_ca_file: str | None = None
) -> CertificateOptions:
    """TLS options serving C{cert_file} with C{key_file}; with C{client_ca_file}, a
    client must present a certificate that CA signed, or the handshake fails.

    Any file that cannot be read or parsed is a one-line L{usage.UsageError} naming
    etcd's flag for it (C{--cert-file}, C{--key-file}, C{--trusted-ca-file}).
    """
    from OpenSSL import crypto
    from twisted.internet import ssl

    cert_pem = _read("--cert-file", cert_file)
    key_pem = _read("--key-file", key_file)
    try:
        private = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
    except (crypto.Error, VerifyError, ValueError) as e:
        raise usage.UsageError(
            f"--cert-file {cert_file} with --key-file {key_file}: not a PEM "
            f"certificate and its key ({e or type(e).__name__})"
        ) from None
    if client_ca_file is None:
        return ssl.CertificateOptions(
            privateKey=private.privateKey.original, certificate=private.original
        )
    blocks = _PEM_CERTIFICATE.findall(_read("--trusted-ca-file", client_ca_file))
    try:
        authorities = [ssl.Certificate.loadPEM(block).original for block in blocks]
    except (crypto.Error, ValueError) as e:
        raise usage.UsageError(f"--trusted-ca-file {client_ca_file}: {e}") from None
    if not authorities:
        raise usage.UsageError(
            f"--trusted-ca-file {client_ca_file}: no PEM certificate in it"
        )
    return ssl.CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        verify=True,
        caCerts=authorities,
        requireCertificate=True,
    )
