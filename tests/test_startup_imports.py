"""A node imports only what its options use (issue 14, start-up).

Each test builds the service of C{twistd clusternode} with some options in a fresh
interpreter (a module imported once stays in C{sys.modules}, so this process cannot
tell) and looks at which of the heavy optional modules it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

from twisted.trial.unittest import TestCase

#: Optional parts and what they cost to import, quiet 2-core machine: Klein with
#: werkzeug ~25 ms, prometheus_client ~8 ms, cryptography ~10 ms, pyOpenSSL ~20 ms,
#: treq with twisted.web.client ~20 ms.
HEAVY = (
    "klein",
    "werkzeug",
    "prometheus_client",
    "cryptography",
    "OpenSSL",
    "treq",
    "twistednode.etcd.base",
    "twistednode.web.status",
    "twistednode.metrics.exposition",
)

_PROBE = """
import json, sys
from twistednode import tap
options = tap.Options()
options.parseOptions(sys.argv[1:])
tap.makeService(options)
heavy = json.loads(sys.stdin.read())
print(json.dumps({m: sys.modules.get(m) is not None for m in heavy}))
"""

STATIC = ("--no-etcd", "--peer", "127.0.0.1:9", "--udp-port", "0")


def loaded(*args: str) -> set[str]:
    """The modules of L{HEAVY} that building a node with C{args} imported."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        input=json.dumps(HEAVY),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found: dict[str, bool] = json.loads(done.stdout.splitlines()[-1])
    return {name for name, present in found.items() if present}


class StartupImportTests(TestCase):
    def test_a_node_without_status_server_or_registry_loads_none_of_them(
        self,
    ) -> None:
        self.assertEqual(loaded(*STATIC), set())

    def test_a_status_server_loads_klein_but_prometheus_only_when_scraped(
        self,
    ) -> None:
        found = loaded(*STATIC, "--http", "tcp:0:interface=127.0.0.1")
        self.assertTrue({"klein", "twistednode.web.status"} <= found, found)
        self.assertFalse(
            {"prometheus_client", "twistednode.metrics.exposition"} & found, found
        )

    def test_a_plain_http_registry_loads_its_client_but_no_tls(self) -> None:
        found = loaded("--etcd", "http://127.0.0.1:9", "--udp-port", "0")
        self.assertTrue({"treq", "twistednode.etcd.base"} <= found, found)
        self.assertFalse({"OpenSSL", "cryptography", "klein"} & found, found)
