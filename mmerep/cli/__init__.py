"""The command line: it only registers commands; each calls the core and renders.

Heavy modules (the Kubernetes client, the cluster code) are imported inside the
commands, and each command group's module only when that group is used, so
``mme-rep --help`` stays fast.
"""

from __future__ import annotations

import importlib
import signal
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from mmerep import __version__
from mmerep.errors import MmerepError, UsageError

# name: (module holding the group's `app`, the start of its help for the root listing).
# tests/unit/test_cli.py checks that each group's own help starts with this text.
GROUPS = {
    "env": ("mmerep.cli.env", "Deploy, inspect, upgrade, roll back and delete environments."),
    "template": ("mmerep.cli.template", "Environment templates (built-in ones, and sites' "
                 "own from $MMEREP_TEMPLATE_PATH)."),
    "profile": ("mmerep.cli.profile", "Deployment-target profiles, used as `-F NAME`"),
    "images": ("mmerep.cli.images", "List the environment images in the profile's registry "
               "project."),
    "ci": ("mmerep.cli.ci", "Follow the GitLab CI pipelines that build processor and "
           "environment images."),
    "cluster": ("mmerep.cli.cluster", "A local Kubernetes cluster (KWOK-simulated nodes, "
                "real control plane, local registry)"),
    "synclocal": ("mmerep.cli.synclocal", "Stage input data onto a node's local SSD"),
    "provisioner": ("mmerep.cli.provisioner", "The node-local SSD volume provisioner"),
    "ssh": ("mmerep.cli.ssh", "Reach an environment's scheduler over SSH through a "
            "port-forward."),
    "scaler": ("mmerep.cli.scaler", "Scale an environment's executors and drive the "
               "autoscaler."),
    "campaign": ("mmerep.cli.campaign", "Plan a reprocessing campaign across a profile "
                 "group's clusters"),
    "monitor": ("mmerep.cli.monitor", "Watch an environment's jobs and executors, and react."),
    "console": ("mmerep.cli.console", "A web console in your browser: environments live, "
                "scale, roll back, delete."),
}
# Features not in this version: help lists them apart, and using one exits 2 saying so.
# A feature's work moves its name from here to GROUPS.
PLANNED: dict[str, str] = {}


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


def _terminate(signum: int, frame: object) -> None:
    from mmerep.errors import Terminated

    _state["terminated"] = True  # typer turns any KeyboardInterrupt into exit code 130
    raise Terminated()


def main() -> None:
    # SIGTERM stops a command the way Ctrl-C does: locks released, records marked.
    # (Long-running loops such as the autoscaler install their own graceful handler.)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app(prog_name="mme-rep")
    except SystemExit:
        if _state.get("terminated"):
            print("interrupted by SIGTERM", file=sys.stderr)
            sys.exit(143)
        raise
    except MmerepError as exc:
        if _state["debug"]:
            raise
        from mmerep.cli.output import fail

        fail(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as stop:
        how = getattr(stop, "how", None)
        print(f"interrupted by {how}" if how else "interrupted", file=sys.stderr)
        sys.exit(143 if how else 130)
