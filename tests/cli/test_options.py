"""Tests for twistednode.cli.options: the command line, checked as clusternode's."""

from __future__ import annotations

from typing import Any

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from twistednode.cli.options import (
    MembersOptions,
    Options,
    StatusOptions,
    WatchOptions,
    status_url,
)
from twistednode.etcd.v3 import Credentials


def parse(argv: list[str]) -> Options:
    config = Options()
    config.parseOptions(argv)
    return config


class OptionsTests(SynchronousTestCase):
    def error(self, options: Any, argv: list[str]) -> str:
        e = self.assertRaises(usage.UsageError, options.parseOptions, argv)
        return str(e)

    def test_members_defaults(self) -> None:
        """members reads http://127.0.0.1:2379, cluster default, the API asked."""
        config = parse(["members"])
        sub = config.subOptions
        self.assertEqual(config.subCommand, "members")
        self.assertEqual(sub["etcd-urls"], ["http://127.0.0.1:2379"])
        self.assertEqual((sub["cluster"], sub["etcd-api"]), ("default", "auto"))
        self.assertFalse(sub["json"] or sub["uses-tls"])
        self.assertIsNone(sub["auth"])

    def test_several_urls_and_https(self) -> None:
        """--etcd takes a comma list; an https:// URL means TLS."""
        sub = parse(
            ["watch", "--etcd", "https://a:2379, http://b:2379", "--cluster", "x"]
        ).subOptions
        self.assertEqual(sub["etcd-urls"], ["https://a:2379", "http://b:2379"])
        self.assertTrue(sub["uses-tls"])

    def test_no_command(self) -> None:
        """Without a command the mistake says which there are."""
        self.assertIn("members, status, watch or new-key", self.error(Options(), []))

    def test_bad_values_name_the_option(self) -> None:
        """Each wrong value is a UsageError naming its option."""
        for argv, expected in (
            (["--etcd", "foo"], "--etcd 'foo'"),
            (["--etcd-api", "v4"], "--etcd-api"),
            (["--cluster", "a/b"], "--cluster"),
            (["--timeout", "0"], "--timeout"),
            (["--etcd-password-file", "/x"], "needs --etcd-user"),
            (["--etcd-user", "u:p", "--etcd-api", "v2"], "needs the v3 API"),
            (["--etcd-user", "u"], "no password"),
        ):
            self.assertIn(expected, self.error(MembersOptions(environ={}), argv))

    def test_user_and_password(self) -> None:
        """USER:PASSWORD, a password file, or $ETCDCTL_PASSWORD, as for the node."""
        config = MembersOptions(environ={})
        config.parseOptions(["--etcd-user", "root:secret"])
        self.assertEqual(config["auth"], Credentials("root", "secret"))
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("from-file\nignored\n")
        watching = WatchOptions(environ={})
        watching.parseOptions(["--etcd-user", "root", "--etcd-password-file", path])
        self.assertEqual(watching["auth"], Credentials("root", "from-file"))
        config = MembersOptions(environ={"ETCDCTL_PASSWORD": "env"})
        config.parseOptions(["--etcd-user", "root"])
        self.assertEqual(config["auth"], Credentials("root", "env"))

    def test_missing_password_file(self) -> None:
        """A password file that cannot be read names the file."""
        message = self.error(
            MembersOptions(environ={}),
            ["--etcd-user", "u", "--etcd-password-file", "/no/such/file"],
        )
        self.assertIn("/no/such/file", message)

    def test_status_url(self) -> None:
        """status takes a URL, HOST:PORT or a port, and asks its /status."""
        self.assertEqual(status_url("8080"), "http://127.0.0.1:8080/status")
        self.assertEqual(status_url("node:80/"), "http://node:80/status")
        self.assertEqual(status_url("https://n:1/status"), "https://n:1/status")
        self.assertRaises(usage.UsageError, status_url, "ftp://n:1")

    def test_command_usage_is_its_own(self) -> None:
        """A command's --help starts with its own usage line, said once."""
        for name in ("members", "watch", "status"):
            config = parse([name, "http://node"] if name == "status" else [name])
            usage_text = str(config.subOptions)
            first = usage_text.splitlines()[0]
            self.assertTrue(first.startswith(f"Usage: twistednode {name} ["), first)
            self.assertEqual(usage_text.count("Usage:"), 1, usage_text)

    def test_status_needs_one_url(self) -> None:
        """status without its URL is a mistake."""
        self.error(StatusOptions(), [])
