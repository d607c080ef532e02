"""Install node-discover for the wire-compatibility tests if npm can, else say why not.

The test command's set-up (tests/harness/setup_machine.py) runs this; it also runs on
its own: C{python3 tests/harness/nodejs/ensure.py}. It never fails: without npm, or
offline, the node-discover tests skip (or fail in CI, where every component is
required), and the reason is printed.

npm runs with this directory as its working directory, not with C{--prefix}: C{--prefix}
also moves npm's global config (C{globalconfig} is C{<prefix>/etc/npmrc}), so the
machine's registry, proxy and CA settings (Debian's C{/usr/etc/npmrc} names the system
CA file) would be lost behind a proxy. The user's C{~/.npmrc} and C{npm_config_*}
variables apply as usual.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTALLED = HERE / "node_modules" / "node-discover" / "package.json"
NAME = "tests/harness/nodejs/ensure.py"
NPM_TIMEOUT = 300


def npm_command(npm: str) -> list[str]:
    """The command that installs the locked node-discover, run in L{HERE}."""
    return [npm, "ci", "--no-audit", "--no-fund"]


def main() -> int:
    """Run C{npm ci} in this directory when node-discover is missing; return 0."""
    if INSTALLED.exists():
        return 0
    npm = shutil.which("npm")
    if npm is None:
        print(
            f"{NAME}: npm not found, node-discover not installed; "
            "the node-discover tests will skip (install the Debian packages "
            "nodejs and npm, then run: python3 tests/harness/nodejs/ensure.py)",
            flush=True,
        )
        return 0
    command = npm_command(npm)
    print(f"{NAME}: running {' '.join(command)} in {HERE}", flush=True)
    try:
        result = subprocess.run(command, cwd=HERE, check=False, timeout=NPM_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"{NAME}: npm ci did not complete ({e}); the node-discover tests skip")
        return 0
    if result.returncode != 0:
        print(
            f"{NAME}: npm ci exited with {result.returncode}; "
            "the node-discover tests will skip",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
