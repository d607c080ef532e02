# -*- test-case-name: tests.trust.test_keyring -*-
"""The cluster keyring: the keys a node seals with and accepts (sealed-datagrams.md).

A keyring file holds one key per line, each 32 random bytes in standard base64 (44
characters). The first key is the one this node seals with; every key is accepted
on receipt. Blank lines and lines starting with C{#} are ignored. That is what makes
a rotation possible without a moment in which two nodes cannot read each other: add
the new key everywhere, make it first everywhere, then remove the old one.

L{parse_keyring} is pure; L{read_keyring} reads a file. Both raise L{KeyringError}
with a message naming the line that is wrong, never the key material.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Final

from attrs import field, frozen

#: A key is 32 bytes: AES-256.
KEY_SIZE: Final = 32
#: Bytes of a key's id on the wire (a hint for which key to try, not a secret).
KEY_ID_SIZE: Final = 4
_KEY_ID_LABEL: Final = b"twistednode key id v1\x00"


class KeyringError(ValueError):
    """A keyring cannot be used (no key, a line that is not a 32-byte base64 key)."""


def key_id(key: bytes) -> bytes:
    """The key's 4-byte id: the start of SHA-256 over a label and the key."""
    return hashlib.sha256(_KEY_ID_LABEL + key).digest()[:KEY_ID_SIZE]


def _unique(keys: tuple[bytes, ...]) -> tuple[bytes, ...]:
    return tuple(dict.fromkeys(keys))


def _check_keys(_instance: object, _attribute: object, keys: tuple[bytes, ...]) -> None:
    if not keys:
        raise KeyringError("a keyring needs at least one key")
    for key in keys:
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise KeyringError(f"every key must be {KEY_SIZE} bytes")


@frozen
class Keyring:
    """The keys of a cluster: C{keys[0]} seals, every one opens.

    @ivar keys: the keys, the sending one first; duplicates are kept once.
    """

    keys: tuple[bytes, ...] = field(converter=_unique, validator=_check_keys)
    #: The keys by id, computed once: every datagram opened looks its key up here.
    _by_id: dict[bytes, tuple[bytes, ...]] = field(
        init=False, eq=False, repr=False, hash=False
    )

    @_by_id.default
    def _index(self) -> dict[bytes, tuple[bytes, ...]]:
        by_id: dict[bytes, tuple[bytes, ...]] = {}
        for key in self.keys:
            kid = key_id(key)
            by_id[kid] = (*by_id.get(kid, ()), key)
        return by_id

    @property
    def send_key(self) -> bytes:
        """The key this node seals with."""
        return self.keys[0]

    @property
    def send_id(self) -> bytes:
        """The id of L{send_key}."""
        return next(kid for kid, keys in self._by_id.items() if self.keys[0] in keys)

    def candidates(self, wanted: bytes) -> list[bytes]:
        """The keys whose id is C{wanted} (usually one; none for a foreign key)."""
        return list(self._by_id.get(wanted, ()))

    def ids(self) -> list[str]:
        """The keys' ids in hex, in order: safe to log and show."""
        return [key_id(key).hex() for key in self.keys]


def new_key() -> str:
    """A fresh random key, as one keyring line (without the newline)."""
    return base64.b64encode(os.urandom(KEY_SIZE)).decode("ascii")


def parse_keyring(text: str) -> Keyring:
    """The keyring a file's text describes, or raise L{KeyringError}."""
    keys: list[bytes] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise KeyringError(f"line {number} is not base64") from None
        if len(key) != KEY_SIZE:
            raise KeyringError(
                f"line {number} is {len(key)} bytes, a key is {KEY_SIZE} "
                "(make one with: twistednode new-key)"
            )
        keys.append(key)
    if not keys:
        raise KeyringError("no key in it (make one with: twistednode new-key)")
    return Keyring(tuple(keys))


def read_keyring(path: str) -> Keyring:
    """Read and parse a keyring file; L{KeyringError} says what is wrong with it."""
    try:
        with open(path, encoding="ascii", errors="strict") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise KeyringError(f"{path} is not an ASCII text file") from None
    except OSError as e:
        raise KeyringError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        return parse_keyring(text)
    except KeyringError as e:
        raise KeyringError(f"{path}: {e}") from None
