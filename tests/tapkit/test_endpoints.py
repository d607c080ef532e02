"""Listener options: a bare port is local, anything else must be an endpoint."""

from __future__ import annotations

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tapkit.endpoints import local_port, stream_endpoint


class StreamEndpointTests(SynchronousTestCase):
    """stream_endpoint: what an option's value means, or one line about it."""

    def test_bare_port_binds_localhost(self) -> None:
        """A bare port listens on 127.0.0.1 only."""
        self.assertEqual(stream_endpoint("--x", "8085"), "tcp:8085:interface=127.0.0.1")
        self.assertEqual(stream_endpoint("--x", "0"), "tcp:0:interface=127.0.0.1")

    def test_endpoint_is_kept(self) -> None:
        """An endpoint string is taken as written."""
        for text in ("tcp:0:interface=0.0.0.0", "unix:/tmp/x.sock", "tcp6:0"):
            with self.subTest(text=text):
                self.assertEqual(stream_endpoint("--x", text), text)

    def test_not_digits_is_not_a_port(self) -> None:
        """Only ASCII digits make a bare port."""
        self.assertIsNone(local_port("８０"))
        self.assertIsNone(local_port("-1"))
        self.assertIsNone(local_port(""))

    def test_mistakes_name_the_option(self) -> None:
        """Each value that is no endpoint is one line starting with the option."""
        for text in ("localhost:80", "tcp:abc", "tcp:80:bogus=1", "", "70000"):
            with self.subTest(text=text):
                error = self.assertRaises(
                    usage.UsageError, stream_endpoint, "--opt", text
                )
                self.assertTrue(str(error).startswith("--opt "))
                self.assertNotIn("\n", str(error))

    def test_unreadable_key_file_is_one_line(self) -> None:
        """An ssl: endpoint whose key file cannot be read is one line naming the
        option and the file (the default, server.pem, included)."""
        for text, missing in (
            ("ssl:0:privateKey=/nope.pem", "/nope.pem"),
            ("ssl:0", "server.pem"),
        ):
            with self.subTest(text=text):
                error = str(
                    self.assertRaises(usage.UsageError, stream_endpoint, "--opt", text)
                )
                self.assertTrue(error.startswith(f"--opt {text!r}: cannot read "))
                self.assertIn(missing, error)
                self.assertIn("No such file", error)
                self.assertNotIn("\n", error)
