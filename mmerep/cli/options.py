"""Options shared by many commands (kept free of rich so --help stays fast)."""

from __future__ import annotations

import typer

from mmerep.cli.formats import OutputFormat

__all__ = ["CollectorOption", "OutputFormat", "OutputOption"]


OutputOption = typer.Option(OutputFormat.table, "--output", "-o",
                            help="Output format: table, json or yaml.")
CollectorOption = typer.Option(None, "--collector", help="HTCondor collector host:port "
                               "(default: the environment's collector Service).")
