"""The command line: it only registers commands; each calls the core and renders.

Heavy modules (the Kubernetes client, the cluster code) are imported inside the
commands, so ``mme-rep --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from mmerep import __version__
from mmerep.errors import MmerepError

app = typer.Typer(
    name="mme-rep",
    help="Orchestrate the multi-mission reprocessing platform on Kubernetes.\n\n"
    "Examples:\n\n"
    "  mme-rep cluster up              # a local cluster to try everything on\n\n"
    "  mme-rep cluster status -o json",
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


def _register() -> None:
    from mmerep.cli import ci, cluster, demo, env, images, profile, synclocal, template

    app.add_typer(env.app, name="env")
    app.add_typer(template.app, name="template")
    app.add_typer(profile.app, name="profile")
    app.add_typer(images.app, name="images")
    app.add_typer(ci.app, name="ci")
    app.add_typer(cluster.app, name="cluster")
    app.add_typer(synclocal.app, name="synclocal")
    app.command("demo", hidden=True)(demo.demo)
    for name, text in _PLANNED.items():
        app.add_typer(typer.Typer(help=text, no_args_is_help=True), name=name)


# Groups whose commands arrive with later work; listed so the command tree is visible now.
_PLANNED = {
    "scaler": "Scale an environment's executors and drive the autoscaler (coming).",
    "ssh": "Reach an environment's scheduler over SSH through a port-forward (coming).",
    "provisioner": "The node-local SSD volume provisioner (coming).",
}

_register()


def main() -> None:
    try:
        app(prog_name="mme-rep")
    except MmerepError as exc:
        if _state["debug"]:
            raise
        from mmerep.cli.output import fail

        fail(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
