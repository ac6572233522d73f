"""`env deploy`/`env status` tables as a user sees them in a terminal of a given width."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from mmerep.cli.env import status_table

IMAGE = ("harbor.example.org/mme-rep/htcondor-batch/sentinel3:v0.1.0@sha256:"
         "5f3a0c1e9b7d4a2f8e6c0b1d3a5f7e9c2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a3")
SHORT = ".../mme-rep/htcondor-batch/sentinel3:v0.1.0@sha256:5f3a0c1e9b7d"


def component(role: str, kind: str = "Deployment", **kw: Any) -> dict[str, Any]:
    return {"name": f"barsenv-{role}", "kind": kind, "component": role, "state": "Active",
            "image": IMAGE, "desired": 2, "ready": 2, "pods": 2, "restarts": 0,
            "age_seconds": 75, "ports": [], "revision": "1", **kw}


DATA = {"namespace": "s3", "name": "barsenv", "warnings": [], "components": [
    component("collector"), component("scheduler", ports=["22/tcp", "9618/tcp"],
                                      state="Progressing"),
    component("executor", restarts=3), component("synclocal", kind="DaemonSet")]}


def shown(data: dict[str, Any], width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(status_table(data, width=width))
    return [line.rstrip() for line in out.getvalue().splitlines()]


def cells(lines: list[str]) -> list[list[str]]:
    """The table's header and rows, cell by cell (rich draws ┃ in the header, │ below)."""
    return [[c.strip() for c in line.replace("┃", "│").split("│")[1:-1]] for line in lines
            if line[:1] in ("│", "┃")]


def test_at_80_columns_one_line_per_component_with_name_and_image_said_once() -> None:
    lines = shown(DATA, 80)
    assert max(len(line) for line in lines) <= 80
    assert lines[:2] == ["environment barsenv in namespace s3", f"image {SHORT}"]
    assert cells(lines) == [
        ["role", "state", "ready", "age", "restarts", "ports"],
        ["collector", "Active", "2/2", "1m", "0", "-"],
        ["scheduler", "Progressing", "2/2", "1m", "0", "22/tcp, 9618/tcp"],
        ["executor", "Active", "2/2", "1m", "3", "-"],
        ["synclocal", "Active", "2/2, 1/node", "1m", "0", "-"],
    ]  # one line each: no cell wrapped


def test_with_room_the_full_names_and_kinds_show_too() -> None:
    lines = shown(DATA, 160)
    table = cells(lines)
    assert table[0] == ["role", "name", "kind", "state", "ready", "age", "restarts", "ports"]
    assert table[3] == ["executor", "barsenv-executor", "Deployment", "Active", "2/2",
                        "1m", "3", "-"]
    assert len(table) == 5


def test_components_with_different_images_are_named_by_image_above_the_table() -> None:
    other = {**DATA, "components": [*DATA["components"][:3],
                                    component("synclocal", kind="DaemonSet",
                                              image="harbor.example.org/mme-rep/tools:1")]}
    lines = shown(other, 80)
    assert max(len(line) for line in lines) <= 80
    assert lines[1:4] == [f"image {SHORT}", "(collector, scheduler, executor)",
                          "image .../mme-rep/tools:1 (synclocal)"]
    assert cells(lines)[0] == ["role", "state", "ready", "age", "restarts", "ports"]
