"""Skip a test only when an external component is missing, never in CI.

A test that needs a program (etcd, etcdctl, chromium, node) asks L{require_binary}; when
the program is not on C{PATH} the test skips and says which Debian package provides it.
The test command installs those packages itself when it can
(C{tests/harness/setup_machine.py}); where it cannot, the skips say why.

CI (C{.ci/run}) sets C{TWISTEDNODE_REQUIRE_ALL=1}: there a missing component fails the
test instead of skipping it, so a broken install step cannot hide behind a skip.

C{TWISTEDNODE_WITHOUT=etcd,chromium} (names as L{require_binary} gets them) makes the
tests, and the set-up script, act as if those programs were not installed: a way to see
the skips on a machine that has everything.
"""

from __future__ import annotations

import os
import shutil

from twisted.trial.unittest import SkipTest


def require_all() -> bool:
    """Whether missing components are failures rather than skips (set by CI)."""
    return os.environ.get("TWISTEDNODE_REQUIRE_ALL", "") not in ("", "0")


def pretended_missing() -> frozenset[str]:
    """The programs C{TWISTEDNODE_WITHOUT} names, to be treated as not installed."""
    names = os.environ.get("TWISTEDNODE_WITHOUT", "").replace(",", " ").split()
    return frozenset(names)


def find_binary(name: str) -> str | None:
    """The path of program C{name} on C{PATH}, or None (also when pretended missing)."""
    if name in pretended_missing():
        return None
    return shutil.which(name)


def missing(reason: str) -> None:
    """Skip with C{reason}, or fail with it when every component is required."""
    if require_all():
        raise AssertionError("required component missing in CI: " + reason)
    raise SkipTest(reason)


def require_binary(name: str, package: str) -> str:
    """Return the path of C{name}, or skip/fail saying which package provides it."""
    path = find_binary(name)
    if path is None:
        how = (
            "TWISTEDNODE_WITHOUT names it"
            if name in pretended_missing()
            else "not found on PATH"
        )
        missing(f"{name}: {how} (install the Debian package {package})")
        raise AssertionError("unreachable")
    return path
