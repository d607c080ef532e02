"""clusternode's keyring options: --cluster-key-file, --new-key, SIGHUP wiring."""

from __future__ import annotations

import base64
import io
import sys

from twisted.application.service import IServiceCollection
from twisted.trial.unittest import SynchronousTestCase

from tests.harness.fakes import MemoryUDPReactor
from tests.test_tap import node_of, parse, usage_error
from twistednode.tap import makeService
from twistednode.trust.keyring import parse_keyring
from twistednode.trust.reload import SighupReload

KEY = base64.b64encode(bytes(range(32))).decode()


def reactor() -> MemoryUDPReactor:
    """A memory reactor past the epoch (the default weight needs a positive time)."""
    memory = MemoryUDPReactor()
    memory.advance(1_764_800_000)
    return memory


class KeyringOptionTests(SynchronousTestCase):
    """A bad keyring file is one usage line naming the option."""

    def key_file(self, text: str) -> str:
        path: str = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_good_file_is_passed_to_the_node(self) -> None:
        """The node gets the file; it seals with its first key; SIGHUP reloads."""
        path = self.key_file(KEY + "\n")
        options = parse(
            "--no-etcd", "--peer", "127.0.0.1:1", "--cluster-key-file", path
        )
        node = node_of(makeService(options, reactor=reactor()))
        assert node.keyring is not None
        self.assertEqual(node.keyring.send_key, bytes(range(32)))
        self.assertEqual(node.cluster_key_file, path)
        kinds = [type(s) for s in IServiceCollection(node)]
        self.assertIn(SighupReload, kinds)

    def test_without_a_key_file_there_is_no_keyring(self) -> None:
        """No option: node-discover's unsealed wire, and no SIGHUP handler."""
        options = parse("--no-etcd", "--peer", "127.0.0.1:1")
        node = node_of(makeService(options, reactor=reactor()))
        self.assertIsNone(node.keyring)
        kinds = [type(s) for s in IServiceCollection(node)]
        self.assertNotIn(SighupReload, kinds)

    def test_bad_line_is_a_usage_error_naming_the_option(self) -> None:
        """A line that is not a key: the option, the file and the line."""
        path = self.key_file("not-a-key\n")
        message = usage_error("--cluster-key-file", path)
        self.assertEqual(message, f"--cluster-key-file: {path}: line 1 is not base64")

    def test_missing_file_is_a_usage_error(self) -> None:
        """A file that is not there is named."""
        path = self.mktemp()
        message: str = usage_error("--cluster-key-file", path)
        self.assertTrue(message.startswith(f"--cluster-key-file: cannot read {path}"))

    def test_empty_file_is_a_usage_error(self) -> None:
        """An empty file holds no key."""
        message = usage_error("--cluster-key-file", self.key_file(""))
        self.assertIn("no key in it", message)

    def test_legacy_key_and_keyring_are_refused_together(self) -> None:
        """The legacy cipher is not stacked under the seal."""
        path = self.key_file(KEY)
        message = usage_error("--cluster-key-file", path, "--legacy-key", "x")
        self.assertIn("cannot be used together", message)

    def test_new_key_prints_one_keyring_line(self) -> None:
        """--new-key writes a fresh key and exits 0."""
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        e = self.assertRaises(SystemExit, parse, "--new-key")
        self.assertEqual(e.code, 0)
        self.assertEqual(len(parse_keyring(out.getvalue()).send_key), 32)
