"""The legacy key cipher against the spec's test vectors (node-discover-wire.md §9)."""

from __future__ import annotations

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from twistednode.discovery.legacykey import LegacyKey, LegacyKeyError, evp_bytes_to_key

V1_PLAIN = (
    b'{"event":"hello","pid":"8893444d-80e2-4550-9677-f59708e67608",'
    b'"iid":"e91fa857-abf7-4f58-a7bb-ded22f2766d9","hostName":"vm","data":'
    b'{"isMaster":false,"isMasterEligible":true,"weight":-0.1795700674136,'
    b'"address":"127.0.0.1"}}'
)
V1_WIRE = bytes.fromhex(
    "2ec282c2af4a55c3963e405ac383c28ec3a943c3ae4ec2847cc29371c39437c3b034c39f44c2985"
    "0c3a4c2b8c3a4c397c2aac2b500c28cc28a3bc29c70c3880f"
    "1500c39928c293c3a7c2a27c11c39d33c3b5c281c3a4c28cc2921fc3b10cc2b703c391c293404d5"
    "8c2bbc2866dc3b548c3943bc288c3b1c289c28a24c39c3bc3"
    "8bc2a1c29167c29ac3a6c3b8c28ec2bac28b41c3ac28c2b1062d7223c2bd3bc29dc38604c385236"
    "a48c39969665dc3a013c39964c2a8c29e6bc2b934c3b97dc2"
    "ba2a46c2871200c29bc29b0a361254c3bfc2bdc386c386054039c3bc1271c3a6c2b3c391c2b5c38"
    "2c3a2c29ec3b440c2b52ec285c2ac3cc2bc6ac287c3abc3b8"
    "c3b6c38853c3abc297c2a8c39e17c3aac3a6c294c3841ac3b1c382c2ae10c29fc3be32c38ac289c"
    "391c29b3e2e01c3b5c38237c2aa3dc2937640c2bdc38449c2"
    "8d1230497c7bc3864951c39f6cc3af1cc384567619c2aac3aac293c2abc3ad"
)
V1_SHA256 = "77d0883c91ac8d644491578c16040f5291c0397973b4d8487bff4c778285a051"

V2_PLAIN = (
    '{"event":"hello","pid":"0f6c1c52-3a43-4c4e-9d8e-2b1f5e7a9c10",'
    '"iid":"5b0e7d0a-6a1f-4c2b-8f3e-9d4c2a1b0e77","hostName":"py-node","data":'
    '{"isMaster":true,"isMasterEligible":true,"weight":-0.17957,'
    '"address":"127.0.0.1","advertisement":{"svc":"api","zone":"z\u00fcrich"}}}'
).encode("utf-8")
V2_WIRE = bytes.fromhex(
    "2ec282c2af4a55c3963e405ac383c28ec3a943c3ae4ec28465c295c3bc76c2a1c295c38425c3863"
    "c532bc2b1c3ae54291ec3b87048c2b3c2b4c38b1c6cc2ba01"
    "c2a95a7e00c3be3fc38739c39538c38007c385684dc2a603c29003c2935d1c2cc3bfc39c7435c2a"
    "bc3be69c2b4c3a725c2ab19c38970c285c2930f6b0a0f486b"
    "c384c286c38ac2bcc3ac4322c380c29c5dc39a6739315d5935c2ab43326d1f1017c2a856c2a630c"
    "38535c2a07479c39ac291c2a94578c288c283c297c385c28a"
    "c3946b44c3aa5a19c29877c3a2c386c38fc2ba4417c3b0c3ad00c2a3c293c2b9c28150c39bc2b4c"
    "2bb33192fc3aac388c2b63901c38ec393c3a8c293005bc28e"
    "382d6127c38554c2bdc2a43ac3a0366a5144c38f724dc383527dc2814730c288c38f3b26c3a65b1"
    "a73c28452c393c2b2c2b22dc392c38e3172c28ac39dc390c2"
    "851fc2a9465fc387c393c396c286c38141c2ad04c381270866c2b73f07c2ab72400e7ec28bc2a3c"
    "39fc3acc3a8c3971b402f2b5e00c2bbc3a804c39b31c388c3"
    "bdc293c3bd60c285c287553c60c296c29a45c385c29c"
)
V2_SHA256 = "024553708997fd78aece3af37585a54535c9b5acbf0f65bf2f3f15a991a0347c"

V3_PLAIN = b'{"event":"hello","iid":"X","data":{"isMaster":false}}'
V3_WIRE = bytes.fromhex(
    "2ec282c2af4a55c3963e405ac383c28ec3a943c3ae4ec284c3834569c39618c297c2a45cc28d36c"
    "3b4c29b72c3a7c3a650c287297ec3af2c76c2914120c29204"
    "c298c28c0228c29c48c2b265c286c2bec2877a3c18c28c71586f64c3b717"
)
V3_SHA256 = "32c3b15283d752972c78b0570b9d8db94adec29a064df705e91ed053cb0d6c83"

VECTORS = [
    ("V1", V1_PLAIN, V1_WIRE, V1_SHA256, 221, 224, 351),
    ("V2", V2_PLAIN, V2_WIRE, V2_SHA256, 264, 272, 406),
    ("V3", V3_PLAIN, V3_WIRE, V3_SHA256, 53, 64, 94),
]


class EvpBytesToKeyTests(SynchronousTestCase):
    """OpenSSL EVP_BytesToKey as createCipher uses it."""

    def test_secret(self) -> None:
        """The password "secret" gives the spec's AES key and IV."""
        key, iv = evp_bytes_to_key(b"secret")
        self.assertEqual(
            key.hex(),
            "5ebe2294ecd0e0f08eab7690d2a6ee6926ae5cc854e36b6bdfca366848dea6bb",
        )
        self.assertEqual(iv.hex(), "e8c80b4b831fbb64b0d5c6c8499e541a")

    def test_chain(self) -> None:
        """The derivation is MD5(pw), MD5(D1||pw), MD5(D2||pw), concatenated."""
        d1 = hashlib.md5(b"pw").digest()
        d2 = hashlib.md5(d1 + b"pw").digest()
        d3 = hashlib.md5(d2 + b"pw").digest()
        self.assertEqual(evp_bytes_to_key(b"pw"), (d1 + d2, d3))

    def test_utf8_password(self) -> None:
        """A non-ASCII key string is derived from its UTF-8 bytes."""
        key = LegacyKey.from_password("z\u00fcrich")
        self.assertEqual((key.key, key.iv), evp_bytes_to_key("z\u00fcrich".encode()))


class VectorTests(SynchronousTestCase):
    """The three test vectors, byte for byte."""

    def setUp(self) -> None:
        self.key = LegacyKey.from_password("secret")

    def test_encrypt(self) -> None:
        """Each plaintext encrypts to the exact wire bytes, length and SHA-256."""
        for name, plain, wire, digest, plen, _clen, wlen in VECTORS:
            with self.subTest(name):
                self.assertEqual(len(plain), plen)
                out = self.key.encrypt(plain)
                self.assertEqual(out, wire)
                self.assertEqual(len(out), wlen)
                self.assertEqual(hashlib.sha256(out).hexdigest(), digest)

    def test_ciphertext_length(self) -> None:
        """The unexpanded ciphertext is 16 * (floor(|P|/16) + 1) bytes."""
        for name, _plain, wire, _digest, plen, clen, _wlen in VECTORS:
            with self.subTest(name):
                ciphertext = wire.decode("utf-8").encode("latin-1")
                self.assertEqual(len(ciphertext), clen)
                self.assertEqual(clen, 16 * (plen // 16 + 1))

    def test_decrypt(self) -> None:
        """Each wire vector decrypts to its plaintext."""
        for name, plain, wire, *_ in VECTORS:
            with self.subTest(name):
                self.assertEqual(self.key.decrypt(wire), plain)

    def test_static_iv_prefix(self) -> None:
        """All vectors share the first 24 wire bytes (one block; the static IV)."""
        prefix = bytes.fromhex("2e82af4a55d63e405ac38ee943ee4e84")
        for name, _plain, wire, *_ in VECTORS:
            with self.subTest(name):
                self.assertEqual(wire[:24], prefix.decode("latin-1").encode())


class FailureTests(SynchronousTestCase):
    """Decryption failures raise LegacyKeyError, never anything else."""

    def setUp(self) -> None:
        self.key = LegacyKey.from_password("secret")

    def test_wrong_key(self) -> None:
        """A different key fails (bad padding) or yields other bytes, never V1."""
        other = LegacyKey.from_password("Secret")
        try:
            result = other.decrypt(V1_WIRE)
        except LegacyKeyError:
            return
        self.assertNotEqual(result, V1_PLAIN)

    def test_plain_packet(self) -> None:
        """A plain JSON packet reaching a keyed node is refused."""
        self.assertRaises(LegacyKeyError, self.key.decrypt, V3_PLAIN)

    def test_truncated(self) -> None:
        """A truncated datagram is refused."""
        self.assertRaises(LegacyKeyError, self.key.decrypt, V1_WIRE[:-3])
        self.assertRaises(LegacyKeyError, self.key.decrypt, b"")

    def test_raw_ciphertext(self) -> None:
        """Raw, unexpanded ciphertext (invalid UTF-8) is refused, as Node does."""
        raw = V3_WIRE.decode("utf-8").encode("latin-1")
        self.assertRaises(LegacyKeyError, self.key.decrypt, raw)

    def test_wide_characters(self) -> None:
        """Characters above U+00FF cannot be ciphertext bytes."""
        self.assertRaises(LegacyKeyError, self.key.decrypt, ("\u20ac" * 16).encode())

    def test_empty_password(self) -> None:
        """An empty key string is refused with a clear error."""
        self.assertRaises(ValueError, LegacyKey.from_password, "")

    def test_bad_sizes(self) -> None:
        """A key or IV of the wrong size is refused."""
        self.assertRaises(ValueError, LegacyKey, key=b"x" * 31, iv=b"y" * 16)
        self.assertRaises(ValueError, LegacyKey, key=b"x" * 32, iv=b"y" * 15)

    def test_repr_hides_secret(self) -> None:
        """The repr does not show the key material."""
        self.assertNotIn(self.key.key.hex(), repr(self.key))
