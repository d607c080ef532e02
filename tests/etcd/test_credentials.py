"""etcdctl's rules for a user and its password, as both command lines read them."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twistednode.etcd.credentials import credentials_from, read_password
from twistednode.etcd.v3 import Credentials


class CredentialsFromTests(SynchronousTestCase):
    def test_no_user_no_credentials(self) -> None:
        """Without --etcd-user there are none; a password file alone is a mistake."""
        self.assertIsNone(credentials_from(None, None, "auto", {}))
        e = self.assertRaises(ValueError, credentials_from, None, "/f", "auto", {})
        self.assertIn("--etcd-password-file needs --etcd-user", str(e))

    def test_password_sources_in_etcdctls_order(self) -> None:
        """USER:PASSWORD, else the file's first line, else $ETCDCTL_PASSWORD."""
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write("from-file\nignored\n")
        env = {"ETCDCTL_PASSWORD": "from-env"}
        self.assertEqual(
            credentials_from("root:inline", None, "v3", env),
            Credentials("root", "inline"),
        )
        self.assertEqual(
            credentials_from("root", path, "auto", env),
            Credentials("root", "from-file"),
        )
        self.assertEqual(
            credentials_from("root", None, "auto", env), Credentials("root", "from-env")
        )

    def test_mistakes_name_the_option(self) -> None:
        """v2 with a user, two passwords, none, no user: each names the option."""
        cases: list[tuple[tuple[Any, ...], str]] = [
            (("root:x", None, "v2", {}), "--etcd-user needs the v3 API"),
            (("root:x", "/f", "v3", {}), "both give a password"),
            (("root", None, "v3", {}), "--etcd-user root: no password"),
            ((":x", None, "v3", {}), "--etcd-user must be USER or USER:PASSWORD"),
        ]
        for args, said in cases:
            e = self.assertRaises(ValueError, credentials_from, *args)
            self.assertIn(said, str(e))

    def test_password_file_problems(self) -> None:
        """A missing file or an empty first line is one message naming the file."""
        missing = self.mktemp()
        e = self.assertRaises(ValueError, read_password, missing)
        self.assertIn(f"--etcd-password-file {missing}: No such file", str(e))
        empty = self.mktemp()
        with open(empty, "w", encoding="utf-8") as f:
            f.write("\nsecond\n")
        e = self.assertRaises(ValueError, read_password, empty)
        self.assertIn("the first line is empty", str(e))
