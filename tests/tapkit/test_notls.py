"""Processes that serve and speak no TLS start without pyOpenSSL; others keep it."""

from __future__ import annotations

import subprocess
import sys

import twisted.test
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

PROBE = """
import sys
from {module} import Options
Options().parseOptions(sys.argv[1:])
import twisted.internet.reactor
import twisted.web.client, treq, klein  # what the node and minietcd load still loads
print("loaded" if sys.modules.get("OpenSSL") is not None else "absent")
try:
    from twisted.internet import ssl
except ImportError:
    print("no-tls")
else:
    print("tls" if ssl.supported else "no-tls")
"""


def probe(module: str, *args: str) -> list[str]:
    """Parse C{args} with C{module}'s Options in a new interpreter, then load the
    reactor as twistd does; report whether pyOpenSSL came with it."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.split()


#: A key and certificate Twisted's own tests ship (an ssl: endpoint reads its files).
SERVER_PEM = FilePath(twisted.test.__file__).sibling("server.pem").path


class WithoutTLSTests(TestCase):
    def test_plain_node_does_not_load_openssl(self) -> None:
        """A node with an http:// registry never loads pyOpenSSL."""
        self.assertEqual(
            probe("twistednode.tap", "--etcd", "http://127.0.0.1:2379"),
            ["absent", "no-tls"],
        )

    def test_https_registry_keeps_tls(self) -> None:
        """A node with an https:// registry keeps TLS available."""
        self.assertEqual(
            probe("twistednode.tap", "--etcd", "https://127.0.0.1:2379"),
            ["loaded", "tls"],
        )

    def test_plain_minietcd_does_not_load_openssl(self) -> None:
        """minietcd on a tcp: listener never loads pyOpenSSL."""
        self.assertEqual(
            probe("minietcd.tap", "--listen", "tcp:2379"), ["absent", "no-tls"]
        )

    def test_ssl_listener_keeps_tls(self) -> None:
        """minietcd with an ssl: listener keeps TLS available."""
        self.assertEqual(
            probe("minietcd.tap", "--listen", f"ssl:2379:privateKey={SERVER_PEM}"),
            ["loaded", "tls"],
        )
