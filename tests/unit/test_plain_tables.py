"""Tables drawn without rich (read commands whose output is not a terminal) look exactly
as rich draws them; anything rich would draw differently is left to rich."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from mmerep.cli.plain import Line, Stack, Table, plain_text


def _rich(renderable: object, width: int) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, highlight=False).print(renderable)
    return out.getvalue()


def _plain(renderable: Table | Line | Stack, width: int) -> str | None:
    drawn = renderable.lines(width)
    return None if drawn is None else "".join(line + "\n" for line in drawn)


ENV_LIST = Table(None, ["namespace", "name", "template", "revision", "status", "image",
                        "updated"],
                 [("s3", "sentinel3", "htcondor-batch", 2, "deployed",
                   ".../mme-rep/htcondor-batch/sentinel3@sha256:0123456789ab",
                   "2026-12-02T01:00:00Z"), ("s3", "olci", "jupyter", 1, "failed", "x", None)])


def test_env_list_table_is_drawn_as_rich_draws_it() -> None:
    assert _plain(ENV_LIST, 150) == _rich(ENV_LIST, 150)
    assert "┃ namespace ┃ name      ┃" in _plain(ENV_LIST, 150)  # type: ignore[operator]


@pytest.mark.parametrize("width", [40, 60, 80, 100])
def test_a_table_wider_than_the_output_is_narrowed_as_rich_does(width: int) -> None:
    assert _plain(ENV_LIST, width) == _rich(ENV_LIST, width)  # wrapped, cut with "…"


@pytest.mark.parametrize("cell", ["[bold]x[/]", "naïve", ":smile:", ":100:", "a\tb",
                                  "two\nlines", ":Smile:", ":smile-emoji:"])
def test_cells_rich_would_interpret_are_left_to_rich(cell: str) -> None:
    assert _plain(Table(None, ["a"], [[cell]]), 100) is None


def test_times_and_digests_with_colons_are_drawn_plainly() -> None:
    t = Table(None, ["time"], [["01:00:00"], ["12:34:56Z"], ["x/s3:v0.1.0@sha256:03cc"]])
    assert t.lines(40) is not None
    assert _plain(t, 40) == _rich(t, 40)


def test_title_empty_table_and_lines_match_rich() -> None:
    stack = Stack([Line("environment sentinel3 in namespace s3", bold=True),
                   Line("image .../sentinel3:v0.1.0", fold=True),
                   Table("recent warnings", ["object", "reason", "message"], []),
                   Table("pods Kubernetes stopped", ["component", "pod"],
                         [("executor", "sentinel3-executor-abc")])])
    assert _plain(stack, 80) == _rich(stack, 80)
    # rich wraps a title wider than its table: left to rich
    assert _plain(Table("a long title over a narrow table", ["x"], []), 80) is None

@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200),
       width=st.integers(5, 100), bold=st.booleans(), fold=st.booleans())
def test_long_lines_wrap_as_rich_wraps_them(text: str, width: int, bold: bool,
                                            fold: bool) -> None:
    line = Line(text, bold=bold, fold=fold)
    assert _plain(line, width) == _rich(line, width)


cell_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


@settings(max_examples=400, deadline=None)
@given(columns=st.lists(cell_text.filter(bool), min_size=1, max_size=8),
       data=st.data(), title=st.none() | cell_text, width=st.integers(10, 120))
def test_any_plain_table_matches_rich(columns: list[str], data: st.DataObject,
                                      title: str | None, width: int) -> None:
    rows = data.draw(st.lists(st.lists(cell_text, min_size=len(columns),
                                       max_size=len(columns)), max_size=4))
    table = Table(title, columns, rows)
    drawn = _plain(table, width)
    if drawn is not None:
        assert drawn == _rich(table, width)


def test_redirected_command_output_skips_rich() -> None:
    code = ("import sys; from mmerep.cli.output import render, table; "
            "from mmerep.cli.formats import OutputFormat; "
            "render([1], OutputFormat.table, lambda r: table(None, ['n'], [r])); "
            "print('rich' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"})
    assert out.stdout == "┏━━━┓\n┃ n ┃\n┡━━━┩\n│ 1 │\n└───┘\nFalse\n"
    assert plain_text(object()) is None


@pytest.mark.parametrize("width", [50, 80, 100, 140])
def test_env_status_is_drawn_as_rich_draws_it(width: int) -> None:
    from mmerep.cli.reads import status_table
    from tests.unit.test_env_tables import DATA

    data = {**DATA, "scaler": "scaler: daemon off (min 0, max profile limit)",
            "warnings": [{"time": "2026-12-02T01:00:00Z", "object": "Pod/barsenv-executor-x",
                          "reason": "FailedScheduling", "message": "0/3 nodes are available: "
                          "3 Insufficient cpu. preemption: 0/3 nodes are available."}]}
    shown = status_table(data, width=width)
    assert _plain(shown, width) == _rich(shown, width)


def test_every_emoji_name_rich_knows_is_left_to_rich() -> None:
    from rich._emoji_codes import EMOJI

    assert all(_plain(Table(None, ["a"], [[f":{name}:"]]), 80) is None
               for name in EMOJI if name.isascii())
