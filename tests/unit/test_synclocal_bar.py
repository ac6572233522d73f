"""`synclocal stage`'s progress line on a terminal: one line that fits, drawn without rich."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from mmerep.cli.stagecmd import Bar, progress_bar
from testkit.terminal import run_on_terminal

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def visible(text: str) -> str:
    return ANSI.sub("", text)


class Tty(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("columns", [80, 120, 40, 20])
@pytest.mark.parametrize("colour", [True, False])
def test_the_line_fits_the_terminal_and_keeps_its_shape(columns: int, colour: bool) -> None:
    bar = Bar(Tty(), columns, colour)
    lines = [visible(bar.line("sentinel3-olci-2019", done, 20_000, done * 65_536,
                              20_000 * 65_536, 100.0 + done / 5000))
             for done in (0, 1, 999, 10_000, 20_000)]
    assert all(len(line) <= columns - 1 for line in lines), lines
    assert len({len(line) for line in lines}) == 1, lines  # nothing jumps as numbers grow
    if columns >= 80:
        assert lines[-1].startswith("sentinel3-olci-2019 20000/20000")
    else:
        assert lines[-1].startswith("20000/20000 ")  # the counts before the name
    if columns >= 80:
        assert lines[-1].endswith(" 1.3/1.3 GB 327.7 MB/s 0:00:00"), lines[-1]
        assert lines[0].endswith(" 0.0/1.3 GB          ? -:--:--"), lines[0]
        assert re.search("[━#-]{10,}", lines[3])  # a bar is drawn
    if not colour and columns >= 80:
        half = lines[3].split(" ")[2]
        assert abs(half.count("#") - half.count("-")) <= 1  # half done: half the bar filled


def test_the_line_goes_when_the_run_ends() -> None:
    out = Tty()
    with progress_bar(out) as update:
        assert update is not None
    assert out.getvalue().endswith("\r\x1b[2K\x1b[?25h")  # cleared, cursor shown again


def test_redirected_nothing_is_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(var, raising=False)
    out = io.StringIO()
    with progress_bar(out) as update:
        assert update is None
    assert out.getvalue() == ""


def test_on_a_terminal_rich_is_not_loaded(tmp_path: Path) -> None:
    src = tmp_path / "olci"
    src.mkdir()
    for i in range(5):
        (src / f"{i}.nc").write_bytes(bytes(1000))
    code, screen = run_on_terminal(
        [sys.executable, "-X", "importtime", "-m", "mmerep", "synclocal", "stage", str(src),
         "--to", str(tmp_path / "ssd")], 80, timeout=60)
    text = screen.decode(errors="replace")
    assert code == 0, text
    assert "\x1b[32mcomplete\x1b[0m olci: 5 copied" in text  # in colour, as rich drew it
    imported = [line.rsplit("|", 1)[-1].strip() for line in text.splitlines()
                if line.startswith("import time:")]
    assert "mmerep.synclocal.index" in imported
    assert not [m for m in imported if m in ("rich", "typer") or m.startswith("rich.")]
