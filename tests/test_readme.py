"""
The README tells the truth: the embedding example it shows is docs/embedded_node.py,
that program really runs (two copies against minietcd find each other, elect, talk,
and leave cleanly, on Ctrl-C too), every command-line option is documented, the
Markdown parses as intended (CommonMark), and the test command's set-up never fails.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from minietcd.tap import Options as MiniEtcdOptions
from tests.harness.childprocess import OutputProcess
from tests.harness.requirements import missing
from tests.harness.servers import MiniEtcdProcess
from twistednode.tap import Options as ClusterNodeOptions

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLE = ROOT / "docs" / "embedded_node.py"
WAIT = 60.0
"""Bound for one copy of the example to start and elect on a loaded machine."""


def example_body(example: Path = EXAMPLE) -> str:
    """An example program without its module docstring, as the README shows it."""
    source = example.read_text("utf-8")
    tree = ast.parse(source)
    first = tree.body[0]
    assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    assert first.end_lineno is not None
    return "\n".join(source.splitlines()[first.end_lineno :]).strip() + "\n"


def long_options(options: type[usage.Options]) -> set[str]:
    """Every --long option of a twistd plugin's Options class (but --help/--version)."""
    names = {entry[0] for entry in getattr(options, "optParameters", [])}
    names |= {entry[0] for entry in getattr(options, "optFlags", [])}
    names |= {
        name[4:].replace("_", "-") for name in dir(options) if name.startswith("opt_")
    }
    return names - {"help", "version"}


class Copy(OutputProcess):
    """One running copy of an example (the embedding one unless told), its output
    read line by line."""

    def __init__(self, *args: str, example: Path = EXAMPLE) -> None:
        super().__init__(
            [sys.executable, str(example), *args],
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            what=f"{example.name}'s output",
            timeout=WAIT,
        )

    @property
    def id(self) -> str:
        """The short id it prints its lines with."""
        match = re.match(r"([0-9a-f]{8}): ", self.wait_for(r"^[0-9a-f]{8}: "))
        assert match is not None
        return match.group(1)


class EmbeddingExampleTests(SynchronousTestCase):
    """docs/embedded_node.py is what the README shows, and it works."""

    def test_readme_shows_the_tested_file(self) -> None:
        """The README's Python example is docs/embedded_node.py, line for line."""
        blocks = re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), re.S)
        self.assertIn(example_body(), blocks)

    def test_two_copies_elect_talk_and_leave(self) -> None:
        """Two copies: one master, news reaches the other, clean leaves both ways."""
        minietcd = MiniEtcdProcess().start()
        self.addCleanup(minietcd.stop)
        first = Copy(minietcd.url)
        self.addCleanup(first.kill)
        first.wait_for(r"^[0-9a-f]{8}: I am the master now$")
        a = first.id

        second = Copy(minietcd.url, "4")
        self.addCleanup(second.kill)
        self.assertEqual(second.finish(), 0, second.output)
        b = second.id
        out = second.output
        self.assertIn(f"{b}: {a} joined from 127.0.0.1", out)
        self.assertIn(f"{b}: {a} is master of 2 nodes", out)
        self.assertNotIn("I am the master now", out)
        self.assertNotIn("Traceback", out)
        # The second copy ran out its time and left cleanly: seen as "left".
        first.wait_for(rf"^{a}: {b} is gone \(left\)$")
        self.assertIn(f"{a}: {b} joined from 127.0.0.1", first.output)

        # Ctrl-C: the first copy leaves cleanly too and deletes its record.
        first.process.send_signal(signal.SIGINT)
        self.assertEqual(first.finish(), 0, first.output)
        self.assertNotIn("Traceback", first.output)
        with urllib.request.urlopen(
            f"{minietcd.url}/v2/keys/twistednode/example/members", timeout=5
        ) as response:
            members = json.load(response)["node"].get("nodes", [])
        self.assertEqual(members, [])


class OptionsDocumentedTests(SynchronousTestCase):
    """Every option of both plugins appears in the README."""

    def test_clusternode_options(self) -> None:
        """Each --option of twistd clusternode is in the README."""
        readme = README.read_text("utf-8")
        names = long_options(ClusterNodeOptions)
        self.assertIn("etcd-api", names)
        missing = sorted(n for n in names if f"--{n}" not in readme)
        self.assertEqual(missing, [])

    def test_minietcd_options(self) -> None:
        """Each --option of twistd minietcd is in the README."""
        readme = README.read_text("utf-8")
        names = long_options(MiniEtcdOptions)
        self.assertIn("listen", names)
        missing = sorted(n for n in names if f"--{n}" not in readme)
        self.assertEqual(missing, [])


def quickstart_commands() -> list[str]:
    """The command lines of the README's quickstart block (comments dropped)."""
    readme = README.read_text("utf-8")
    section = readme.split("## Quickstart", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


class QuickstartTests(SynchronousTestCase):
    """The README's two commands are the ones CI and the demo tests run."""

    def test_ci_runs_the_readme_test_command(self) -> None:
        """.ci/run ends with the quickstart's test command, word for word."""
        run_demo, run_tests = quickstart_commands()
        self.assertIn("demo/cluster_demo.py", run_demo)
        self.assertIn("tox", run_tests)
        script = (ROOT / ".ci" / "run").read_text("utf-8")
        last = [line for line in script.splitlines() if line.strip()][-1]
        self.assertEqual(last, run_tests)


HEADINGS = (
    "twistednode",
    "Quickstart",
    "What the demo shows",
    "How it works",
    "Running nodes",
    "`twistd -n clusternode` options",
    "`twistd -n minietcd` options",
    "The status API",
    "Sealed membership traffic: a cluster key",
    "Who may join: the registry decides",
    "Logging",
    "Embedding a node in your application",
    "From an asyncio program",
    "Running against a real etcd",
    "Compared with node-discover",
    "The master: a leased, fenced election",
    "Sending work to any node: key ownership and calls",
    "Limits of the node-discover election",
    "Compared with etcd: what minietcd serves",
    "Operators: metrics and the command line",
    "Prometheus metrics",
    "The `twistednode` command",
    "Troubleshooting",
    "Development",
)
"""Every heading of the README, in order, as CommonMark must parse them."""


def parse_readme() -> list[Any]:
    """The README as markdown-it-py's CommonMark tokens (skip if it is missing)."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        missing(
            "markdown-it-py not installed (tox installs it: pip install markdown-it-py)"
        )
        raise
    return list(MarkdownIt("commonmark").parse(README.read_text("utf-8")))


class MarkdownTests(SynchronousTestCase):
    """The README renders as written: on GitHub, every section is there."""

    def test_headings(self) -> None:
        """Every expected heading is parsed as a heading, in order, and no other."""
        tokens = parse_readme()
        headings = [
            tokens[i + 1].content
            for i, token in enumerate(tokens)
            if token.type == "heading_open"
        ]
        self.assertEqual(headings, list(HEADINGS))

    def test_fences_closed(self) -> None:
        """Every fenced block ends with a closing fence line (no "``` It")."""
        lines = README.read_text("utf-8").splitlines()
        fences = [t for t in parse_readme() if t.type == "fence"]
        self.assertGreater(len(fences), 10)
        for fence in fences:
            assert fence.map is not None
            last = lines[fence.map[1] - 1].strip() if fence.map[1] <= len(lines) else ""
            self.assertTrue(
                last
                and set(last) == {fence.markup[0]}
                and len(last) >= len(fence.markup),
                f"the fence opened on line {fence.map[0] + 1} is not closed: {last!r}",
            )

    def test_links_and_license(self) -> None:
        """node-discover and etcd are linked; LICENSE is pyproject's MIT license."""
        readme = README.read_text("utf-8")
        self.assertIn("(https://github.com/wankdanker/node-discover)", readme)
        self.assertIn("(https://etcd.io)", readme)
        self.assertIn("(LICENSE)", readme)
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
        self.assertEqual(pyproject["project"]["license"], "MIT")
        license_text = (ROOT / "LICENSE").read_text("utf-8")
        self.assertTrue(license_text.startswith("MIT License\n"))
        self.assertIn("Permission is hereby granted, free of charge", license_text)


class SetupTests(SynchronousTestCase):
    """The test command's set-up never fails for a missing component."""

    def test_missing_components_reported_not_failed(self) -> None:
        """With nothing installable, set-up exits 0 with one line per component."""
        everything = "etcd etcdctl chromium node npm"
        result = subprocess.run(
            [sys.executable, "-m", "tests.harness.setup_machine"],
            cwd=ROOT,
            env=dict(
                os.environ,
                TWISTEDNODE_WITHOUT=everything,
                TWISTEDNODE_NO_INSTALL="1",
            ),
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        self.assertEqual(
            [line.split()[1] for line in lines], everything.split(), result.stdout
        )
        for line in lines:
            self.assertRegex(line, r"^setup: \S+ missing, .* will skip$")
