# -*- test-case-name: tests.tapkit.test_notls -*-
"""Start a twistd process that serves and speaks no TLS without loading pyOpenSSL."""

from __future__ import annotations

import sys


def without_tls() -> None:
    """Keep pyOpenSSL out of a process that serves no TLS (about 12 MB of RSS).

    Twisted's reactor imports pyOpenSSL, if installed, for C{startTLS} support.
    Options are parsed before twistd or twist import the reactor, so marking the
    module as absent here makes that import fail harmlessly; a process that has
    already loaded the reactor (a test run, an embedding app) is left as it is.
    """
    if "twisted.internet.reactor" not in sys.modules:
        sys.modules.setdefault("OpenSSL", None)  # type: ignore[arg-type]
