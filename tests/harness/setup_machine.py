"""Install what the tests need when this machine lets us, else say what is missing.

The test command runs this first (tox's C{commands_pre}: C{python -m
tests.harness.setup_machine}). It always exits 0: a missing component is the tests'
business, a skip that says why (or, with C{TWISTEDNODE_REQUIRE_ALL=1}, a failure).

- As root with C{apt-get} (a fresh Debian), it installs the missing Debian packages
  (C{etcd-server}, C{etcd-client}, C{chromium}, and C{nodejs}/C{npm} if even those are
  missing) with C{--no-install-recommends}, running C{apt-get update} first only when
  apt does not know one of them yet, or when the install fails with old lists.
- It then installs node-discover with npm (C{tests/harness/nodejs/ensure.py}).
- Not root, no C{apt-get}, offline, or C{TWISTEDNODE_NO_INSTALL=1}: it installs no
  Debian package and prints one line per missing component instead.

C{TWISTEDNODE_WITHOUT} (see L{tests.harness.requirements}) names programs to treat as
missing: they are neither installed nor looked for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.harness.requirements import find_binary, pretended_missing

ROOT = Path(__file__).resolve().parent.parent.parent
NODEJS = ROOT / "tests" / "harness" / "nodejs"
ENSURE = NODEJS / "ensure.py"
NODE_DISCOVER = NODEJS / "node_modules" / "node-discover" / "package.json"
NAME = "setup"
APT_TIMEOUT = 1800

COMPONENTS: tuple[tuple[str, str, str], ...] = (
    ("etcd", "etcd-server", "the tests against a real etcd"),
    ("etcdctl", "etcd-client", "the etcdctl-against-minietcd tests"),
    ("chromium", "chromium", "the live page tests in a browser"),
    ("node", "nodejs", "the node-discover wire-compatibility tests"),
    ("npm", "npm", "the node-discover tests (npm installs node-discover)"),
    ("iptables", "iptables", "the fault tests' partitions (as root)"),
)
"""(program, Debian package, which tests need it)."""


def say(line: str) -> None:
    """One line of the set-up's report, at once (tox interleaves its own output)."""
    print(f"{NAME}: {line}", flush=True)


def run(command: Sequence[str], quiet: bool = False) -> bool:
    """Run C{command}; True if it exited 0. Never raises."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        result = subprocess.run(
            list(command),
            check=False,
            env=env,
            timeout=APT_TIMEOUT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if quiet else None,
            stderr=subprocess.DEVNULL if quiet else None,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        say(f"{' '.join(command)} did not complete: {e}")
        return False
    return result.returncode == 0


def missing_programs() -> list[tuple[str, str, str]]:
    """The components not on PATH (or named by TWISTEDNODE_WITHOUT)."""
    return [c for c in COMPONENTS if find_binary(c[0]) is None]


def why_not_install() -> str | None:
    """Why this run installs no Debian package, or None if it may."""
    if os.environ.get("TWISTEDNODE_NO_INSTALL", "") not in ("", "0"):
        return "TWISTEDNODE_NO_INSTALL is set"
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("apt-get") is None or shutil.which("apt-cache") is None:
        return "no apt-get"
    return None


def apt_knows(packages: Sequence[str]) -> bool:
    """Whether apt's package lists have a candidate for every one of C{packages}."""
    return all(
        run(["apt-cache", "show", "--no-all-versions", p], quiet=True) for p in packages
    )


def apt_install(packages: Sequence[str]) -> bool:
    """apt-get install C{packages} without recommends; update the lists if needed."""
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    updated = False
    if not apt_knows(packages):
        say("apt-get update (the package lists do not have them yet)")
        if not run(["apt-get", "update"]):
            say("apt-get update failed (offline?)")
            return False
        updated = True
    say(" ".join(install))
    if run(install):
        return True
    if updated:
        return False
    say("apt-get install failed; trying once more after apt-get update")
    return run(["apt-get", "update"]) and run(install)


def install_debian_packages() -> None:
    """Install the Debian packages of the missing components, if this run may."""
    wanted = [c for c in missing_programs() if c[0] not in pretended_missing()]
    if not wanted:
        return
    reason = why_not_install()
    if reason is not None:
        say(f"{reason}: installing no Debian package")
        return
    packages = sorted({package for _, package, _ in wanted})
    if not apt_install(packages):
        say("installing " + " ".join(packages) + " failed")


def install_node_discover() -> None:
    """Install node-discover with npm (ensure.py), unless node is to be missing."""
    if {"node", "npm"} & pretended_missing():
        return
    run([sys.executable, str(ENSURE)])


def report() -> None:
    """One line per component still missing, saying which tests will skip."""
    gone = missing_programs()
    for program, package, tests in gone:
        if program in pretended_missing():
            how = "TWISTEDNODE_WITHOUT names it"
        else:
            how = f"not on PATH (Debian package {package})"
        say(f"{program} missing, {how}: {tests} will skip")
    node_missing = any(program in ("node", "npm") for program, _, _ in gone)
    if not node_missing and not NODE_DISCOVER.exists():
        say(
            "node-discover missing (npm could not install it): "
            "the node-discover wire-compatibility tests will skip"
        )
    if not gone and NODE_DISCOVER.exists():
        names = ", ".join(c[0] for c in COMPONENTS)
        say(f"every component is installed: {names}, node-discover")


def main() -> int:
    """Install what this machine lets us, report what is still missing; return 0."""
    install_debian_packages()
    install_node_discover()
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
