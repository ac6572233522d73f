"""Tables and text lines drawn without rich, as rich would draw them when the output is
not a terminal (piped, redirected): the read commands' common case in scripts and in
``scaler.sh``, where rich's import (~70 ms) cost more than the command's own work.

``Table`` and ``Stack`` are rich renderables too (``__rich_console__``): on a terminal,
when a table does not fit the width, or when a cell holds anything rich would interpret
(markup, emoji codes, non-ASCII), rich draws them as before. ``plain_text`` answers
None in those cases. tests/unit/test_plain_tables.py compares both drawings.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

# rich's HEAVY_HEAD box: heavy lines around the header, light ones below.
_TOP = ("┏", "━", "┳", "┓")
_HEAD = ("┃", "┃", "┃")
_HEAD_RULE = ("┡", "━", "╇", "┩")
_ROW = ("│", "│", "│")
_BOTTOM = ("└", "─", "┴", "┘")
# rich replaces :name: with an emoji; the only names without a letter are these.
_EMOJI = re.compile(r":(\S*?):")
_DIGIT_EMOJI = {"100", "1234"}


def _safe(text: str) -> bool:
    """Drawn by rich exactly as written: printable ASCII, no markup, no emoji code."""
    if not all(" " <= ch <= "~" for ch in text) or "[" in text:
        return False
    return all(not m.group(1) or (m.group(1).isdigit() and m.group(1) not in _DIGIT_EMOJI)
               for m in _EMOJI.finditer(text))


class Table:
    """A titled table of strings (rich's default look: heavy header, left-justified title)."""

    def __init__(self, title: str | None, columns: Sequence[str],
                 rows: Sequence[Sequence[Any]]) -> None:
        self.title = title
        self.columns = [str(c) for c in columns]
        self.rows = [["" if v is None else str(v) for v in row] for row in rows]

    def rich(self) -> Any:
        from rich.table import Table as RichTable

        t = RichTable(title=self.title, title_justify="left", header_style="bold")
        for col in self.columns:
            t.add_column(col)
        for row in self.rows:
            t.add_row(*row)
        return t

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        yield self.rich()

    def lines(self, width: int) -> list[str] | None:
        """The drawing, or None when rich would draw it differently (too wide, or a cell
        rich would interpret)."""
        cells = [self.columns, *self.rows]
        if any(len(r) != len(self.columns) for r in self.rows) or not self.columns:
            return None
        if not all(_safe(c) for r in cells for c in r):
            return None
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        total = sum(widths) + 3 * len(widths) + 1
        if total > width:
            return None

        def rule(parts: tuple[str, str, str, str]) -> str:
            left, line, cross, right = parts
            return left + cross.join(line * (w + 2) for w in widths) + right

        def row(values: list[str], parts: tuple[str, str, str]) -> str:
            left, mid, right = parts
            return left + mid.join(f" {v.ljust(w)} " for v, w in zip(values, widths,
                                                                        strict=True)) + right

        out = []
        if self.title:
            if not _safe(self.title) or len(self.title) > total:
                return None
            out.append(self.title.ljust(total))
        out += [rule(_TOP), row(self.columns, _HEAD), rule(_HEAD_RULE)]
        out += [row(r, _ROW) for r in self.rows]
        out.append(rule(_BOTTOM))
        return out


class Line:
    """One line of plain text (rich's ``Text``: not markup-parsed; ``bold`` on a terminal)."""

    def __init__(self, text: str, bold: bool = False, fold: bool = False) -> None:
        self.text = text
        self.bold = bold
        self.fold = fold

    def rich(self) -> Any:
        from rich.text import Text

        return Text(self.text, style="bold" if self.bold else "",
                    overflow="fold" if self.fold else None)

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        yield self.rich()

    def lines(self, width: int) -> list[str] | None:
        ok = len(self.text) <= width and all(" " <= ch <= "~" for ch in self.text)
        return [self.text] if ok else None


class Stack:
    """Parts one under the other (rich's ``Group``)."""

    def __init__(self, parts: Sequence[Table | Line]) -> None:
        self.parts = list(parts)

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        for part in self.parts:
            yield part.rich()

    def lines(self, width: int) -> list[str] | None:
        out: list[str] = []
        for part in self.parts:
            drawn = part.lines(width)
            if drawn is None:
                return None
            out += drawn
        return out


def plain_width() -> int | None:
    """The width rich would use for standard output when it is not a terminal; None when
    it is one (or rich is told to treat it as one): then rich draws."""
    env = os.environ
    if env.get("TTY_COMPATIBLE") == "1" or (env.get("FORCE_COLOR") is not None and \
            env.get("TTY_COMPATIBLE") != "0") or "JPY_PARENT_PID" in env:
        return None
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    if encoding != "utf8":
        return None
    try:
        if sys.stdout.isatty() and env.get("TTY_COMPATIBLE") != "0":
            return None
    except ValueError:
        pass
    return console_width()


def console_width() -> int:
    """The width rich's console takes: $COLUMNS, else the first terminal among standard
    input, output and error, else 80."""
    env = os.environ
    width = None
    for fd in (0, 1, 2):
        try:
            width = os.get_terminal_size(fd).columns
            break
        except (AttributeError, ValueError, OSError):
            pass
    columns = env.get("COLUMNS")
    if columns is not None and columns.isdigit():
        width = int(columns)
    return width or 80


def plain_text(renderable: Any) -> str | None:
    """What rich would print for ``renderable`` on standard output, drawn without rich;
    None when only rich can (a terminal, a table too wide, another renderable)."""
    if not isinstance(renderable, Table | Line | Stack):
        return None
    width = plain_width()
    if width is None:
        return None
    drawn = renderable.lines(width)
    return None if drawn is None else "".join(line + "\n" for line in drawn)
