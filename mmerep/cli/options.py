"""Options shared by many commands (kept free of rich so --help stays fast)."""

from __future__ import annotations

from enum import StrEnum

import typer


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = typer.Option(OutputFormat.table, "--output", "-o",
                            help="Output format: table, json or yaml.")
