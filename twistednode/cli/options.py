# -*- test-case-name: tests.cli.test_options -*-
"""The C{twistednode} command line: C{members}, C{status} and C{watch}.

The registry options are those of C{twistd clusternode} (C{--etcd}, C{--etcd-api},
C{--cluster}, C{--etcd-cacert/--etcd-cert/--etcd-key}, C{--etcd-user} with
C{--etcd-password-file} or C{$ETCDCTL_PASSWORD}), checked the same way, so a
command that works for the node works here. Every mistake is a
C{usage.UsageError} whose message names the option.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from typing import Any

from twisted.python import usage

from tapkit.version import version_line
from twistednode.etcd.credentials import PASSWORD_VARIABLE, credentials_from
from twistednode.etcd.v3 import Credentials
from twistednode.registry.record import check_cluster_name

DEFAULT_ETCD = "http://127.0.0.1:2379"
#: Where an --etcd-user without a password finds it, as etcdctl does.
DEFAULT_TIMEOUT = 5.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise usage.UsageError(
            f"--timeout must be a number of seconds, not {text!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise usage.UsageError("--timeout must be a positive number of seconds")
    return value


class RegistryOptions(usage.Options):
    """Where the registry is and how to reach it (as for C{twistd clusternode})."""

    optParameters: list[list[Any]] = [
        ["etcd", None, DEFAULT_ETCD, "etcd URL(s), comma-separated; fails over."],
        ["etcd-api", None, "auto", "Registry API: auto, v2 or v3."],
        [
            "cluster",
            None,
            "default",
            "Cluster name (registry dir /twistednode/<name>).",
        ],
        ["etcd-cacert", None, None, "CA file to verify an https:// etcd."],
        ["etcd-cert", None, None, "Client certificate file for etcd."],
        ["etcd-key", None, None, "Client key file for etcd."],
        [
            "etcd-user",
            None,
            None,
            "etcd v3 user, as USER:PASSWORD, or USER with the password from "
            f"--etcd-password-file or ${PASSWORD_VARIABLE}.",
        ],
        [
            "etcd-password-file",
            None,
            None,
            "File whose first line is the --etcd-user password.",
        ],
        [
            "timeout",
            None,
            DEFAULT_TIMEOUT,
            "Seconds to wait for the registry to answer.",
            _seconds,
        ],
    ]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._environ = os.environ if environ is None else environ

    def postOptions(self) -> None:
        if self["etcd-api"] not in ("auto", "v2", "v3"):
            raise usage.UsageError("--etcd-api must be auto, v2 or v3")
        urls = [u.strip() for u in self["etcd"].split(",") if u.strip()]
        if not urls:
            raise usage.UsageError("--etcd needs at least one URL")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise usage.UsageError(f"--etcd {url!r}: expected http(s)://HOST:PORT")
        self["etcd-urls"] = urls
        try:
            check_cluster_name(self["cluster"])
        except ValueError as e:
            raise usage.UsageError(f"--cluster: {e}") from None
        files = (self["etcd-cacert"], self["etcd-cert"], self["etcd-key"])
        self["tls-files"] = files
        self["uses-tls"] = files != (None, None, None) or any(
            url.startswith("https://") for url in urls
        )
        self["auth"] = self._credentials()

    def _credentials(self) -> Credentials | None:
        try:
            return credentials_from(
                self["etcd-user"],
                self["etcd-password-file"],
                self["etcd-api"],
                self._environ,
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None


class _OwnSynopsis(usage.Options):
    """A command's usage line is its own, not appended to C{twistednode}'s."""

    synopsis: str

    def getSynopsis(self) -> str:
        return self.synopsis


class MembersOptions(_OwnSynopsis, RegistryOptions):
    """C{twistednode members}: the cluster from the registry alone."""

    synopsis = "Usage: twistednode members [--etcd URL] [--cluster NAME] [--json]"
    optFlags = [["json", None, "Print JSON instead of a table."]]


class WatchOptions(_OwnSynopsis, RegistryOptions):
    """C{twistednode watch}: one line per join, leave and master change."""

    synopsis = "Usage: twistednode watch [--etcd URL] [--cluster NAME]"


class StatusOptions(_OwnSynopsis):
    """C{twistednode status URL}: what one running node says (its C{/status})."""

    synopsis = "Usage: twistednode status [--json] URL"
    optFlags = [["json", None, "Print the status document as it is."]]
    optParameters: list[list[Any]] = [
        [
            "timeout",
            None,
            DEFAULT_TIMEOUT,
            "Seconds to wait for the node to answer.",
            _seconds,
        ],
    ]

    def parseArgs(self, url: str) -> None:  # type: ignore[override]
        self["url"] = status_url(url)

    def postOptions(self) -> None:
        self["uses-tls"] = self["url"].startswith("https://")


class NewKeyOptions(_OwnSynopsis):
    """C{twistednode new-key}: one new random key, a line for a keyring file."""

    synopsis = "Usage: twistednode new-key"

    def postOptions(self) -> None:
        self["uses-tls"] = False


def status_url(text: str) -> str:
    """The C{/status} URL of a node's C{--http} address: C{http://HOST:PORT},
    C{HOST:PORT}, or a bare port (127.0.0.1), with or without C{/status}."""
    url = text.strip()
    if url.isdigit():
        url = f"127.0.0.1:{url}"
    if "://" not in url:
        url = "http://" + url
    if not url.startswith(("http://", "https://")):
        raise usage.UsageError(f"status {text!r}: expected http(s)://HOST:PORT")
    url = url.rstrip("/")
    if not url.endswith("/status"):
        url += "/status"
    return url


class Options(usage.Options):
    """C{twistednode COMMAND}: look at a cluster from a terminal."""

    synopsis = "Usage: twistednode COMMAND [options]"
    longdesc = (
        "members: the cluster from the registry alone; status: one running node's "
        "view (its --http /status); watch: follow joins, leaves and master changes; "
        "new-key: a key for a --cluster-key-file keyring."
    )
    subCommands = [
        ["members", None, MembersOptions, "List the cluster's members and master."],
        ["status", None, StatusOptions, "Show a running node's status."],
        ["watch", None, WatchOptions, "Print joins, leaves and master changes."],
        ["new-key", None, NewKeyOptions, "Print a new key for a keyring file."],
    ]

    def opt_version(self) -> None:
        """Print the project's version and Twisted's, then exit."""
        sys.stdout.write(version_line("twistednode"))
        sys.exit(0)

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError(
                "a command is needed: members, status, watch or new-key"
            )
