"""Install node-discover for the wire-compatibility tests if npm can, else say why not.

tox runs this before the tests. It never fails: without npm the node-discover tests
skip (or fail in CI, which installs the package itself), and the reason is printed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTALLED = HERE / "node_modules" / "node-discover" / "package.json"


def main() -> int:
    """Run C{npm ci} in this directory when node-discover is missing; return 0."""
    if INSTALLED.exists():
        return 0
    npm = shutil.which("npm")
    if npm is None:
        print(
            "tests/harness/nodejs/ensure.py: npm not found, "
            "node-discover not installed; "
            "the node-discover tests will skip (install the Debian packages "
            "nodejs and npm, then run: npm ci --prefix tests/harness/nodejs)"
        )
        return 0
    command = [npm, "ci", "--prefix", str(HERE), "--no-audit", "--no-fund"]
    print("tests/harness/nodejs/ensure.py: running " + " ".join(command))
    try:
        result = subprocess.run(command, check=False, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"tests/harness/nodejs/ensure.py: npm ci did not complete: {e}")
        return 0
    if result.returncode != 0:
        print(
            f"tests/harness/nodejs/ensure.py: npm ci exited with {result.returncode}; "
            "the node-discover tests will skip"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
