"""Output formats of the read commands (no typer here: the fast read path uses it)."""

from __future__ import annotations

from enum import StrEnum


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"
