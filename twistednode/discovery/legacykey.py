# -*- test-case-name: tests.discovery.test_legacykey -*-
"""node-discover's legacy C{key} option (spec node-discover-wire.md §9).

node-discover encrypts with Node's deprecated C{crypto.createCipher("aes256", key)}:
the key and IV come from OpenSSL's C{EVP_BytesToKey} (MD5, one round, no salt), the
cipher is AES-256-CBC with PKCS#7 padding, and the ciphertext bytes are sent as a
"binary" (latin-1) string encoded to UTF-8, so each byte >= 0x80 takes two bytes on
the wire. There is no authentication and the IV is static: this is obfuscation that
lets us join an existing keyed cluster, not security.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from attrs import Attribute, field, frozen

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

KEY_SIZE: Final = 32
IV_SIZE: Final = 16
_BLOCK: Final = 16


class LegacyKeyError(ValueError):
    """A datagram could not be decrypted (wrong key, plain text, truncation...)."""


def evp_bytes_to_key(
    password: bytes, key_size: int = KEY_SIZE, iv_size: int = IV_SIZE
) -> tuple[bytes, bytes]:
    """OpenSSL C{EVP_BytesToKey} with MD5, one iteration and no salt.

    C{D1 = MD5(pw)}, C{Di = MD5(D(i-1) || pw)}; the key is the first C{key_size}
    bytes of C{D1 || D2 || ...} and the IV the next C{iv_size}.
    """
    derived = b""
    block = b""
    while len(derived) < key_size + iv_size:
        block = hashlib.md5(block + password).digest()
        derived += block
    return derived[:key_size], derived[key_size : key_size + iv_size]


def _check_length(_instance: object, attribute: Attribute[bytes], value: bytes) -> None:
    size = KEY_SIZE if attribute.name == "key" else IV_SIZE
    if not isinstance(value, bytes) or len(value) != size:
        raise ValueError(f"{attribute.name} must be {size} bytes")


@frozen(repr=False)
class LegacyKey:
    """An AES-256-CBC key and static IV derived from a node-discover C{key} string."""

    key: bytes = field(validator=_check_length)
    iv: bytes = field(validator=_check_length)

    def __repr__(self) -> str:
        return "LegacyKey(<secret>)"

    @classmethod
    def from_password(cls, password: str) -> LegacyKey:
        """Derive the key as node-discover does from its C{key} option."""
        if not isinstance(password, str) or password == "":
            raise ValueError("the legacy key must be a non-empty string")
        return _derive(password)

    def _cipher(self) -> Cipher[modes.CBC]:
        # cryptography loads only when a key is in use (most nodes have none).
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        return Cipher(algorithms.AES(self.key), modes.CBC(self.iv))

    def encrypt(self, plaintext: bytes) -> bytes:
        """Encrypt and expand to wire bytes (each ciphertext byte as a latin-1 char)."""
        from cryptography.hazmat.primitives import padding

        padder = padding.PKCS7(_BLOCK * 8).padder()
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = self._cipher().encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        return ciphertext.decode("latin-1").encode("utf-8")

    def decrypt(self, wire: bytes) -> bytes:
        """Reverse L{encrypt}; raise L{LegacyKeyError} on any failure."""
        try:
            ciphertext = wire.decode("utf-8").encode("latin-1")
        except UnicodeError:
            raise LegacyKeyError("not a latin-1-as-UTF-8 ciphertext") from None
        if not ciphertext or len(ciphertext) % _BLOCK:
            raise LegacyKeyError(
                f"ciphertext of {len(ciphertext)} bytes is not whole AES blocks"
            )
        from cryptography.hazmat.primitives import padding

        decryptor = self._cipher().decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(_BLOCK * 8).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise LegacyKeyError("bad padding (wrong key?)") from None


@lru_cache(maxsize=16)
def _derive(password: str) -> LegacyKey:
    key, iv = evp_bytes_to_key(password.encode("utf-8"))
    return LegacyKey(key=key, iv=iv)
