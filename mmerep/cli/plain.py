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
# rich replaces :name: by an emoji when it knows the name. Its names (ASCII ones) are
# made of these characters; the only ones without a letter are 100 and 1234.
_EMOJI = re.compile(r":(\S*?):")
_EMOJI_CHARS = re.compile(r"[a-z0-9!#&()*+\-._]+")
_DIGIT_EMOJI = {"100", "1234"}


def _maybe_emoji(name: str) -> bool:
    name = name.lower()
    if not _EMOJI_CHARS.fullmatch(name):
        return False  # e.g. ":v0.1.0@sha256:" in an image reference
    return not name.isdigit() or name in _DIGIT_EMOJI  # e.g. not ":00:" in a time


def _safe(text: str) -> bool:
    """Drawn by rich exactly as written: printable ASCII, no markup, no emoji code."""
    if not all(" " <= ch <= "~" for ch in text) or "[" in text:
        return False
    return not any(_maybe_emoji(m.group(1)) for m in _EMOJI.finditer(text))


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
        """The drawing at most ``width`` wide, or None when rich would draw it otherwise
        (a cell rich would interpret, a title wider than the table)."""
        cells = [self.columns, *self.rows]
        if any(len(r) != len(self.columns) for r in self.rows) or not self.columns:
            return None
        if not all(_safe(c) for r in cells for c in r):
            return None
        widths = _column_widths([max(len(r[i]) for r in cells)
                                 for i in range(len(self.columns))],
                                width - len(self.columns) - 1)
        if widths is None:
            return None
        total = sum(widths) + len(widths) + 1

        def rule(parts: tuple[str, str, str, str]) -> str:
            left, line, cross, right = parts
            return left + cross.join(line * w for w in widths) + right

        def row(values: list[str], parts: tuple[str, str, str], bottom: bool) -> list[str]:
            left, mid, right = parts
            wrapped = [_wrap(v, w - 2) for v, w in zip(values, widths, strict=True)]
            height = max(len(c) for c in wrapped)
            for c, w in zip(wrapped, widths, strict=True):
                blank = [" " * (w - 2)] * (height - len(c))
                if bottom:  # the header sits on its rule
                    c[:0] = blank
                else:
                    c.extend(blank)
            return [left + mid.join(f" {c[i]} " for c in wrapped) + right
                    for i in range(height)]

        out = []
        if self.title:
            if not _safe(self.title) or len(self.title) > total:
                return None
            out.append(self.title.ljust(total))
        out += [rule(_TOP), *row(self.columns, _HEAD, True), rule(_HEAD_RULE)]
        for r in self.rows:
            out += row(r, _ROW, False)
        out.append(rule(_BOTTOM))
        return out


def _ratio_reduce(total: int, ratios: list[int], maximums: list[int],
                  values: list[int]) -> list[int]:
    """rich's ``ratio_reduce``: take ``total`` off ``values`` in proportion to ``ratios``."""
    ratios = [ratio if top else 0 for ratio, top in zip(ratios, maximums, strict=True)]
    total_ratio = sum(ratios)
    if not total_ratio:
        return values[:]
    remaining = total
    result = []
    for ratio, top, value in zip(ratios, maximums, values, strict=True):
        if ratio and total_ratio > 0:
            taken = min(top, round(ratio * remaining / total_ratio))
            result.append(value - taken)
            remaining -= taken
            total_ratio -= ratio
        else:
            result.append(value)
    return result


def _column_widths(longest: list[int], room: int) -> list[int] | None:
    """Each column's width with its padding, as rich's table lays them out in ``room``
    cells: natural widths, the widest columns narrowed first when they do not fit, then
    all evenly; None when a column would be left without room for a character."""
    if room < 1:
        return None
    widths = [min(n + 2, room) for n in longest]
    if sum(widths) > room:
        excess = sum(widths) - room
        while sum(widths) and excess > 0:
            widest = max(widths)
            second = max((w for w in widths if w != widest), default=0)
            ratios = [1 if w == widest else 0 for w in widths]
            if not widest - second:
                break
            widths = _ratio_reduce(excess, ratios, [min(excess, widest - second)] * len(widths),
                                   widths)
            excess = sum(widths) - room
        if sum(widths) > room:
            widths = _ratio_reduce(sum(widths) - room, [1] * len(widths), widths, widths)
        widths = [min(n + 2, w) for n, w in zip(longest, widths, strict=True)]
    return None if any(w < 3 for w in widths) else widths


def _wrap(text: str, width: int, fold: bool = False) -> list[str]:
    """``text`` in lines of ``width``, as rich wraps it: at spaces; a word longer than the
    line cut with an ellipsis and each line padded to ``width`` (a table cell), or folded
    onto the next lines (``fold``: a line of text, not padded)."""
    breaks = []
    offset = 0
    for match in re.finditer(r"\s*\S+\s*", text):
        start, word = match.start(), match.group(0)
        length = len(word.rstrip())
        if width - offset >= length:
            offset += len(word)
        elif length > width and fold:
            pieces = [word[i:i + width] for i in range(0, len(word), width)]
            for i, piece in enumerate(pieces):
                if start:
                    breaks.append(start)
                if i == len(pieces) - 1:
                    offset = len(piece)
                else:
                    start += len(piece)
        elif length > width:
            if start:
                breaks.append(start)
            offset = len(word)
        elif offset and start:
            breaks.append(start)
            offset = len(word)
    lines = []
    for begin, end in zip([0, *breaks], [*breaks, len(text)], strict=True):
        line = text[begin:end]
        if len(line) > width:  # rich's rstrip_end: trailing spaces past the width go
            trailing = len(line) - len(line.rstrip())
            line = line[:len(line) - min(trailing, len(line) - width)]
        if len(line) > width:
            line = line[:width] if fold else line[:width - 1] + "…"
        lines.append(line if fold else line.ljust(width))
    return lines


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
        if not all(" " <= ch <= "~" for ch in self.text) or width < 1:
            return None
        return _wrap(self.text, width, fold=True) if len(self.text) > width else [self.text]


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
