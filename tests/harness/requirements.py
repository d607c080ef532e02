"""Skip a test only when an external binary is missing, never in CI.

CI (``.ci/run``) sets ``TWISTEDNODE_REQUIRE_ALL=1``: there a missing binary fails the
test instead of skipping it, so a broken install step cannot hide behind a skip.
"""

from __future__ import annotations

import os
import shutil

from twisted.trial.unittest import SkipTest


def require_all() -> bool:
    """Whether missing components are failures rather than skips (set by CI)."""
    return os.environ.get("TWISTEDNODE_REQUIRE_ALL", "") not in ("", "0")


def missing(reason: str) -> None:
    """Skip with C{reason}, or fail with it when every component is required."""
    if require_all():
        raise AssertionError("required component missing in CI: " + reason)
    raise SkipTest(reason)


def require_binary(name: str, package: str) -> str:
    """Return the path of C{name}, or skip/fail saying which package provides it."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} not found on PATH (install the Debian package {package})")
        raise AssertionError("unreachable")
    return path
