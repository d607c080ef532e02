"""The keyring file: one base64 key a line, the first seals, every one opens."""

from __future__ import annotations

import base64
import os

from twisted.trial.unittest import SynchronousTestCase

from twistednode.trust.keyring import (
    Keyring,
    KeyringError,
    key_id,
    new_key,
    parse_keyring,
    read_keyring,
)

A = bytes(range(32))
B = bytes(range(32, 64))


def line(key: bytes) -> str:
    return base64.b64encode(key).decode()


class ParseKeyringTests(SynchronousTestCase):
    """parse_keyring reads keys in order and names the line that is wrong."""

    def test_first_line_is_the_send_key(self) -> None:
        """The first key seals; all are kept in file order."""
        ring = parse_keyring(f"{line(A)}\n{line(B)}\n")
        self.assertEqual(ring.send_key, A)
        self.assertEqual(ring.keys, (A, B))

    def test_blank_lines_and_comments_are_ignored(self) -> None:
        """Blank lines, surrounding spaces and # comments are not keys."""
        ring = parse_keyring(f"# rotated 2026-12\n\n  {line(B)}  \n")
        self.assertEqual(ring.keys, (B,))

    def test_duplicates_are_kept_once(self) -> None:
        """A key listed twice is one key, at its first place."""
        self.assertEqual(parse_keyring(f"{line(A)}\n{line(B)}\n{line(A)}").keys, (A, B))

    def test_not_base64_names_the_line(self) -> None:
        """A line that is not base64 is refused with its number."""
        e = self.assertRaises(KeyringError, parse_keyring, f"{line(A)}\nnot a key!\n")
        self.assertEqual(str(e), "line 2 is not base64")

    def test_wrong_length_names_the_line_and_the_size(self) -> None:
        """A 16-byte key is refused: AES-256 needs 32."""
        e = self.assertRaises(KeyringError, parse_keyring, line(b"x" * 16))
        self.assertIn("line 1 is 16 bytes, a key is 32", str(e))

    def test_no_key_is_refused(self) -> None:
        """An empty file (or only comments) is not a keyring."""
        self.assertRaises(KeyringError, parse_keyring, "# nothing\n\n")

    def test_error_never_contains_key_material(self) -> None:
        """A wrong line is named by number, never quoted."""
        secret = line(os.urandom(31))
        e = self.assertRaises(KeyringError, parse_keyring, secret)
        self.assertNotIn(secret, str(e))


class KeyringValueTests(SynchronousTestCase):
    """The Keyring value: validated, and its ids are safe to show."""

    def test_keys_must_be_32_bytes(self) -> None:
        """A Keyring made in code is checked like a parsed one."""
        self.assertRaises(KeyringError, Keyring, (b"short",))
        self.assertRaises(KeyringError, Keyring, ())

    def test_candidates_are_the_keys_with_that_id(self) -> None:
        """A key id picks its key; an unknown id picks none."""
        ring = Keyring((A, B))
        self.assertEqual(ring.candidates(key_id(B)), [B])
        self.assertEqual(ring.candidates(b"\0\0\0\0"), [])

    def test_ids_are_hex_of_four_bytes(self) -> None:
        """ids() are 8 hex digits each, in key order."""
        ids = Keyring((A, B)).ids()
        self.assertEqual([len(i) for i in ids], [8, 8])
        self.assertEqual(ids[0], key_id(A).hex())

    def test_new_key_is_a_valid_random_line(self) -> None:
        """new_key() makes a line that parses, different every time."""
        one, two = new_key(), new_key()
        self.assertNotEqual(one, two)
        self.assertEqual(len(parse_keyring(one).send_key), 32)


class ReadKeyringTests(SynchronousTestCase):
    """read_keyring: the file's problems, with its path."""

    def test_reads_a_file(self) -> None:
        """A file of two keys is a keyring of two keys."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"{line(A)}\n{line(B)}\n")
        self.assertEqual(read_keyring(path).keys, (A, B))

    def test_missing_file_is_a_keyring_error(self) -> None:
        """A path that does not exist says so, with the path."""
        path = self.mktemp()
        e = self.assertRaises(KeyringError, read_keyring, path)
        self.assertIn(path, str(e))

    def test_bad_line_is_named_with_the_path(self) -> None:
        """The path prefixes the line's problem."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("abc\n")
        e = self.assertRaises(KeyringError, read_keyring, path)
        self.assertEqual(str(e), f"{path}: line 1 is not base64")

    def test_binary_file_is_refused(self) -> None:
        """A binary file is not read as a keyring."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\xff\xfe\x00")
        self.assertRaises(KeyringError, read_keyring, path)
