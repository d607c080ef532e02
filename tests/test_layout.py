"""The package layout: each part imports only the parts below it, and one public face.

docs/architecture.md draws these parts; this test is what keeps the drawing true. It
reads every module's imports (top-level and deferred ones alike) with C{ast}, so an
import that would run only on some path still counts.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import twistednode

ROOT = Path(__file__).resolve().parent.parent

#: What each part may import of ours, besides itself (and its own lower modules).
ALLOWED: dict[str, frozenset[str]] = {
    "tapkit": frozenset(),
    "minietcd": frozenset({"tapkit"}),
    "twistednode.etcd": frozenset({"tapkit"}),
    "twistednode.trust": frozenset({"tapkit"}),
    "twistednode.discovery": frozenset({"tapkit", "twistednode.trust"}),
    "twistednode.web": frozenset({"tapkit"}),
    "twistednode.registry": frozenset({"tapkit", "twistednode.etcd"}),
    "twistednode.election": frozenset({"tapkit", "twistednode.registry"}),
    "twistednode.metrics": frozenset({"tapkit"}),
    "twistednode.routing": frozenset(),
    "twistednode.transport": frozenset(
        {"tapkit", "twistednode.etcd", "twistednode.routing", "twistednode.trust"}
    ),
    "twistednode.cli": frozenset(
        {
            "tapkit",
            "twistednode.etcd",
            "twistednode.registry",
            "twistednode.election",
            "twistednode.trust",
        }
    ),
}

#: Inside a part, the order its modules stack in: a module imports only earlier ones.
STACKS: dict[str, tuple[str, ...]] = {
    "twistednode.discovery": (
        "legacykey",
        "wire",
        "settings",
        "events",
        "authority",
        "membership",
        "protocol",
    ),
    "twistednode.trust": ("keyring", "seal", "reload"),
    "twistednode.etcd": ("tls", "httpclient", "base", "v2", "v3", "credentials"),
    "twistednode.election": ("lease", "fencing", "campaign"),
    "twistednode.metrics": ("collector", "exposition"),
    "twistednode.routing": ("errors", "ownership", "request", "router"),
    "twistednode.transport": ("proof", "client", "server"),
    "twistednode.cli": ("snapshot", "follow", "render", "options", "commands", "main"),
    "twistednode.registry": (
        "backoff",
        "timing",
        "record",
        "backend",
        "stream",
        "v3codec",
        "view",
        "v2",
        "v3",
        "backends",
        "service",
    ),
}

INTERNAL = "Internal: not part of the public API (that is what C{twistednode} exports)."


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_imports(path: Path) -> set[str]:
    """Every module of ours that C{path} imports, anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(
            name
            for name in names
            if name.split(".")[0] in {"twistednode", "minietcd", "tapkit"}
        )
    return found


def part_of(module: str) -> str:
    for part in sorted(ALLOWED, key=len, reverse=True):
        if module == part or module.startswith(part + "."):
            return part
    return module


def loaded_after(statement: str, prefix: str) -> list[str]:
    """The modules named C{prefix...} a fresh interpreter holds after C{statement}."""
    code = (
        f"import sys; {statement}; "
        f"print('\\n'.join(m for m in sys.modules if m.startswith({prefix!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return sorted(out.stdout.split())


def sources(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


class LayeringTests(SynchronousTestCase):
    """Imports run one way: down the parts, and down each part's stack."""

    def test_parts_import_only_lower_parts(self) -> None:
        """No module of a part imports a part that is not below it."""
        wrong = []
        for path in sources("tapkit", "minietcd", "twistednode"):
            module = module_name(path)
            part = part_of(module)
            if part not in ALLOWED:
                continue  # the node on top (node, tap, localaddress, __init__)
            for imported in our_imports(path):
                target = part_of(imported)
                if target != part and target not in ALLOWED[part]:
                    wrong.append(f"{module} imports {imported}")
        self.assertEqual(wrong, [])

    def test_modules_in_a_part_import_only_earlier_ones(self) -> None:
        """Inside a part, the wire codec is below membership, membership below UDP."""
        wrong = []
        for part, stack in STACKS.items():
            for path in sources(part.replace(".", "/")):
                module = module_name(path)
                if module == part:
                    continue
                mine = stack.index(module.removeprefix(part + "."))
                for imported in our_imports(path):
                    if part_of(imported) != part and not imported.startswith(part):
                        continue
                    name = imported.removeprefix(part + ".").split(".")[0]
                    if name in stack and stack.index(name) >= mine:
                        wrong.append(f"{module} imports {imported}")
        self.assertEqual(wrong, [])

    def test_every_module_is_in_its_stack(self) -> None:
        """A new module is placed in the stack of its part, so the check sees it."""
        for part, stack in STACKS.items():
            names = {
                module_name(p).removeprefix(part + ".")
                for p in sources(part.replace(".", "/"))
                if module_name(p) != part
            }
            self.assertEqual(names, set(stack), part)

    def test_minietcd_runs_without_twistednode(self) -> None:
        """Importing minietcd's plugin module loads no twistednode module."""
        self.assertEqual(
            loaded_after("import minietcd.tap, minietcd.api", "twistednode"), []
        )


class PublicFaceTests(SynchronousTestCase):
    """C{twistednode} exports the API; every submodule says that it is internal."""

    def test_all_names_resolve(self) -> None:
        """Every name in C{__all__} is importable from C{twistednode}."""
        for name in twistednode.__all__:
            self.assertIsNotNone(getattr(twistednode, name), name)

    def test_unknown_name_is_an_attribute_error(self) -> None:
        """Asking for a name that is not exported fails as a missing attribute."""
        self.assertRaises(AttributeError, getattr, twistednode, "Membership")

    def test_version_is_the_distribution_version(self) -> None:
        """C{__version__} is the version pip installed."""
        from importlib.metadata import version

        self.assertEqual(twistednode.__version__, version("twistednode"))

    def test_submodules_say_they_are_internal(self) -> None:
        """Each module under twistednode/ but the package itself carries the line."""
        unmarked = [
            module_name(path)
            for path in sources("twistednode")
            if module_name(path) != "twistednode"
            and INTERNAL not in (ast.get_docstring(ast.parse(path.read_text())) or "")
        ]
        self.assertEqual(unmarked, [])

    def test_import_is_cheap(self) -> None:
        """C{import twistednode} loads none of its parts until a name is used."""
        self.assertEqual(loaded_after("import twistednode", "twistednode."), [])
