# -*- test-case-name: tests.transport.test_proof -*-
"""Proof that a node-to-node request comes from a holder of the cluster key.

When the node has a keyring, every request carries one header::

    X-Twistednode-Proof: v1 <key id hex> <timestamp ms> <nonce hex> <mac hex>

C{mac} is HMAC-SHA256, under a key derived from the cluster key (HMAC-SHA256 of the
label C{"twistednode transport v1"} and the cluster name, so the sealing key and this
one never coincide), over::

    twistednode-transport-v1 LF cluster LF method LF path LF timestamp LF nonce LF
    SHA-256 of the body in hex

The receiver accepts a request when the key id is one of its keyring's, the MAC
matches, the timestamp is within L{WINDOW} seconds of its clock, and the nonce has
not been seen within the window (a replayed request is refused). It does no I/O and
takes C{now} in every call.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from attrs import define, field

from twistednode.trust.keyring import Keyring, key_id

HEADER: Final = "X-Twistednode-Proof"
VERSION: Final = "v1"
WINDOW: Final = 30.0
NONCE_SIZE: Final = 16
_LABEL: Final = b"twistednode transport v1"
#: Nonces remembered at most; beyond, the oldest are forgotten (they are also
#: refused by the window once older than it).
MAX_NONCES: Final = 100_000


class ProofError(Exception):
    """A request's proof was refused; C{str()} says why."""


def transport_key(key: bytes, cluster: str) -> bytes:
    """The MAC key derived from one cluster key for one cluster."""
    return hmac.new(key, _LABEL + b"\x00" + cluster.encode("utf-8"), "sha256").digest()


def _message(
    cluster: str, method: str, path: str, millis: int, nonce: str, body: bytes
) -> bytes:
    return "\n".join(
        (
            "twistednode-transport-v1",
            cluster,
            method,
            path,
            str(millis),
            nonce,
            hashlib.sha256(body).hexdigest(),
        )
    ).encode("utf-8")


def sign(
    keyring: Keyring,
    cluster: str,
    now: float,
    method: str,
    path: str,
    body: bytes,
    nonce: bytes | None = None,
) -> str:
    """The header value proving this request, signed with the keyring's first key."""
    key = keyring.send_key
    millis = int(now * 1000)
    nonce_hex = (os.urandom(NONCE_SIZE) if nonce is None else nonce).hex()
    mac = hmac.new(
        transport_key(key, cluster),
        _message(cluster, method, path, millis, nonce_hex, body),
        "sha256",
    ).hexdigest()
    return f"{VERSION} {key_id(key).hex()} {millis} {nonce_hex} {mac}"


@define
class ProofChecker:
    """The receiving side: which proofs it accepts, and the nonces it has seen."""

    keyring: Callable[[], Keyring | None]
    cluster: str
    window: float = WINDOW
    _seen: OrderedDict[str, float] = field(factory=OrderedDict, init=False)

    def check(
        self, now: float, header: str | None, method: str, path: str, body: bytes
    ) -> None:
        """Accept the request or raise L{ProofError} saying why."""
        keyring = self.keyring()
        if keyring is None:
            return
        if header is None:
            raise ProofError(f"no {HEADER} header (this cluster has a key)")
        parts = header.split(" ")
        if len(parts) != 5 or parts[0] != VERSION:
            raise ProofError(f"the {HEADER} header is not '{VERSION} id ts nonce mac'")
        _, kid, millis_text, nonce, mac = parts
        keys = {key_id(k).hex(): k for k in keyring.keys}
        key = keys.get(kid)
        if key is None:
            raise ProofError("signed with a key this node does not have")
        if not millis_text.isdigit() or len(nonce) != 2 * NONCE_SIZE:
            raise ProofError("a malformed timestamp or nonce")
        millis = int(millis_text)
        if abs(millis / 1000 - now) > self.window:
            raise ProofError(f"the timestamp is more than {self.window:g} s off")
        expected = hmac.new(
            transport_key(key, self.cluster),
            _message(self.cluster, method, path, millis, nonce, body),
            "sha256",
        ).hexdigest()
        if not hmac.compare_digest(expected, mac):
            raise ProofError("the MAC does not match (another cluster, or tampered)")
        self._forget(now)
        if nonce in self._seen:
            raise ProofError("a replayed request (its nonce was seen)")
        self._seen[nonce] = now
        if len(self._seen) > MAX_NONCES:
            self._seen.popitem(last=False)

    def _forget(self, now: float) -> None:
        while self._seen:
            nonce, seen = next(iter(self._seen.items()))
            if now - seen <= 2 * self.window:
                break
            del self._seen[nonce]
