"""What the benchmarks share to hand their raw numbers over."""

from __future__ import annotations

import json
import sys
from typing import Any


def write_json(document: Any, where: str) -> None:
    """C{document} as indented JSON to the file C{where}, or to stdout for C{-}."""
    if where == "-":
        json.dump(document, sys.stdout, indent=1)
        print()
        return
    with open(where, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1)
