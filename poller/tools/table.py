"""Aligned, optionally coloured terminal tables for ``poller status``, the demo and ``run --once``.

Widths count East Asian wide characters as two columns (account and task names are often Chinese),
and colour codes are added after padding so they never shift a column.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence
from typing import TextIO

__all__ = ["Cell", "Palette", "display_width", "render_table", "wants_colour"]

_CODES = {"green": "32", "red": "31", "yellow": "33", "dim": "2", "bold": "1", "cyan": "36"}


def wants_colour(stream: TextIO) -> bool:
    """Colour on a terminal only, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Palette:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, colour: str | None) -> str:
        if not self.enabled or colour is None or not text:
            return text
        return f"\x1b[{_CODES[colour]}m{text}\x1b[0m"


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


#: a cell: its text and an optional colour name
Cell = tuple[str, str | None]


def render_table(
    header: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    palette: Palette,
    right: frozenset[int] = frozenset(),
) -> list[str]:
    """Lines of the table: columns padded to the widest cell, ``right`` columns right-aligned."""
    widths = [display_width(h) for h in header]
    for row in rows:
        for i, (text, _) in enumerate(row):
            widths[i] = max(widths[i], display_width(text))

    def line(cells: Sequence[Cell]) -> str:
        out = []
        for i, (text, colour) in enumerate(cells):
            pad = " " * (widths[i] - display_width(text))
            shown = palette(text, colour)
            out.append(pad + shown if i in right else shown + pad)
        return "  ".join(out).rstrip()

    return [line([(h, "bold") for h in header]), *(line(row) for row in rows)]
