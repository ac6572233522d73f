"""The typer application: the root group, which loads a command group's module when the
group is used, and the entry point's error handling."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from mmerep import __version__
from mmerep.cli import GROUPS, PLANNED
from mmerep.errors import MmerepError, Terminated, UsageError, exit_interrupted


def group_app(name: str) -> typer.Typer:
    app_: typer.Typer = importlib.import_module(GROUPS[name][0]).app
    return app_


def _plain_help(cmd: Any) -> None:
    """One help style everywhere: the root's plain one (rich help costs ~100 ms to load)."""
    cmd.rich_markup_mode = None
    for sub in getattr(cmd, "commands", {}).values():
        _plain_help(sub)


class LazyGroup(TyperGroup):
    """The root group: loads a command group's module when the group is looked up."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *GROUPS, *PLANNED]

    def get_command(self, ctx: Any, name: str) -> Any:
        cmd = super().get_command(ctx, name)
        if cmd is None and name in GROUPS:
            cmd = typer.main.get_command(group_app(name))
            cmd.name = name
            _plain_help(cmd)
            self.commands[name] = cmd
        elif cmd is None and name in PLANNED:
            cmd = NotAvailable(name, PLANNED[name])
        return cmd

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in GROUPS.items()])
        if PLANNED:
            with formatter.section("Not available in this version"):
                formatter.write_dl(list(PLANNED.items()))


class NotAvailable(TyperCommand):
    """A planned feature's name: any use (``--help`` too) exits 2 saying it is not there."""

    def __init__(self, name: str, what: str) -> None:
        super().__init__(name, help=f"{what} Not available in this version.",
                         add_help_option=False, callback=self.refuse,
                         context_settings={"ignore_unknown_options": True,
                                           "allow_extra_args": True,
                                           "help_option_names": []},
                         rich_markup_mode=None)
        self.what = what

    def refuse(self) -> None:
        raise UsageError(f"mme-rep {self.name} is not available in this version "
                         f"({self.what.rstrip('.')}); nothing was done")


app = typer.Typer(
    name="mme-rep",
    help="Orchestrate the multi-mission reprocessing platform on Kubernetes.\n\n"
    "Examples:\n\n"
    "  mme-rep cluster up              # a local cluster to try everything on\n\n"
    "  mme-rep env deploy -F local htcondor-batch sentinel3:v0.1.0\n\n"
    "  mme-rep env status sentinel3 -o json",
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"mme-rep {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logging."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    _state["debug"] = debug
    if debug:  # logging costs ~10 ms to import: only when asked for
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")


@app.command("demo", hidden=True)
def _demo(nodes: int = typer.Option(48, "--nodes", "-n", min=1, help="Simulated nodes.")) -> None:
    """Bring the local cluster up, publish a sample image, deploy and scale an environment."""
    from mmerep.cli.demo import demo

    demo(nodes)


def main() -> None:
    try:
        app(prog_name="mme-rep")
    except SystemExit:
        if Terminated.raised:  # typer made it exit code 130
            exit_interrupted(Terminated())
        raise
    except MmerepError as exc:
        if _state["debug"]:
            raise
        from mmerep.cli.output import fail

        fail(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as stop:
        exit_interrupted(stop)
