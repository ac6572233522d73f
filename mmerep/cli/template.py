"""`mme-rep template ...`: the environment templates on the search path."""

from __future__ import annotations

from typing import Any

import typer

from mmerep.cli.options import OutputFormat, OutputOption

app = typer.Typer(
    help="Environment templates (built-in ones, and sites' own from $MMEREP_TEMPLATE_PATH)."
    "\n\nExamples:\n\n  mme-rep template list\n\n  mme-rep template show htcondor-batch",
    no_args_is_help=True,
)


def _as_data(t: Any) -> dict[str, Any]:
    return {"name": t.name, "description": " ".join(t.description.split()),
            "path": str(t.path), "workloads": list(t.workloads),
            "parameters": [{"name": p.name, "type": p.type, "default": p.default,
                            "help": p.help} for p in t.parameters.values()]}


@app.command("list")
def list_cmd(output: OutputFormat = OutputOption) -> None:
    """Every template, with where it comes from."""
    from mmerep import templates
    from mmerep.cli.output import render, table

    rows = [_as_data(t) for t in templates.list_templates()]
    render(rows, output, lambda r: table(None, ["name", "description", "path"],
                                         [(x["name"], x["description"], x["path"])
                                          for x in r]))


@app.command("show")
def show_cmd(name: str = typer.Argument(..., help="Template name."),
             output: OutputFormat = OutputOption) -> None:
    """A template's parameters (name, type, default, help) and workloads."""
    from mmerep import templates
    from mmerep.cli.output import render, table

    data = _as_data(templates.load_template(name))
    render(data, output, lambda d: table(
        f"{d['name']}: {d['description']}", ["parameter", "type", "default", "help"],
        [(p["name"], p["type"], "" if p["default"] is None else p["default"], p["help"])
         for p in d["parameters"]]))
