"""Plain-ANSI output: lines that stay, and a live block redrawn in place below them.

On a terminal the live block (the table of nodes and a progress line) is redrawn
where it stands, and permanent lines are printed above it. Anywhere else (a pipe, a
file, CI logs) nothing is redrawn: only permanent lines are written, and no escape
codes at all.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from typing import TextIO

from attrs import astuple, frozen

_ESCAPE = re.compile(r"(\x1b\[[0-9;?]*[A-Za-z])")

BOLD = "1"
DIM = "2"
RED = "31"
GREEN = "32"
YELLOW = "33"
CYAN = "36"


@frozen
class Symbols:
    """The few non-ASCII characters the demo prints, or their ASCII stand-ins."""

    star: str
    ok: str
    failed: str
    spinner: str
    none: str


UNICODE = Symbols(star="★", ok="✔", failed="✘", spinner="⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏", none="—")
ASCII = Symbols(star="*", ok="ok", failed="FAIL", spinner="|/-\\", none="-")


def symbols_for(stream: TextIO) -> Symbols:
    """UNICODE if C{stream} can encode it, else ASCII."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "".join(astuple(UNICODE)).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return ASCII
    return UNICODE


def visible_width(text: str) -> int:
    """The width of C{text} on screen, escape codes excluded (one column a char)."""
    return len(_ESCAPE.sub("", text))


def fit(text: str, width: int) -> str:
    """Cut C{text} to C{width} visible columns, keeping its escape codes balanced."""
    if visible_width(text) <= width:
        return text
    out: list[str] = []
    room = width
    styled = False
    for part in _ESCAPE.split(text):
        if _ESCAPE.fullmatch(part):
            out.append(part)
            styled = True
        elif room > 0:
            out.append(part[:room])
            room -= len(part[:room])
    if styled:
        out.append("\x1b[0m")
    return "".join(out)


def pad(text: str, width: int) -> str:
    """Left-align C{text} in C{width} visible columns."""
    return text + " " * max(0, width - visible_width(text))


class Screen:
    """Where the demo writes: permanent lines, and (on a terminal) a live block."""

    def __init__(self, out: TextIO, live: bool, color: bool, symbols: Symbols) -> None:
        self.out = out
        self.live = live
        self.color = color
        self.symbols = symbols
        self._block: list[str] = []
        self._drawn = 0

    @classmethod
    def for_stream(cls, out: TextIO) -> Screen:
        """Live and in colour on a terminal (colour off with NO_COLOR), plain else."""
        tty = out.isatty() and os.environ.get("TERM") != "dumb"
        color = tty and not os.environ.get("NO_COLOR")
        return cls(out, live=tty, color=color, symbols=symbols_for(out))

    def style(self, text: str, *codes: str) -> str:
        """C{text} in the given SGR styles, when colour is on."""
        if not self.color or not codes or not text:
            return text
        return f"\x1b[{';'.join(codes)}m{text}\x1b[0m"

    def say(self, text: str = "") -> None:
        """Print permanent lines (above the live block, which is redrawn below)."""
        self._erase()
        self.out.write(text + "\n")
        self._paint()

    def show(self, block: Sequence[str]) -> None:
        """Replace the live block (ignored when not live)."""
        if not self.live:
            return
        self._block = list(block)
        self._erase()
        self._paint()

    def finish(self) -> None:
        """Leave the last live block on screen and end it with a newline."""
        if self.live and self._drawn:
            self.out.write("\n")
            self.out.flush()
        self._block = []
        self._drawn = 0

    def _erase(self) -> None:
        if self.live and self._drawn:
            up = f"\x1b[{self._drawn - 1}A" if self._drawn > 1 else ""
            self.out.write("\r" + up + "\x1b[J")
            self._drawn = 0

    def _paint(self) -> None:
        if self.live and self._block:
            width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
            self.out.write("\n".join(fit(line, width) for line in self._block))
            self._drawn = len(self._block)
        self.out.flush()
