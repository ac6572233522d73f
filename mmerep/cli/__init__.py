"""The command line: it only registers commands; each calls the core and renders.

Heavy modules (the Kubernetes client, the cluster code) are imported inside the
commands, and each command group's module only when that group is used, so
``mme-rep --help`` stays fast. The read commands operators and ``scaler.sh`` run all day
(``env list``, ``env status``, the scaler's status, ``provisioner status``) skip typer
altogether when their arguments are plain (``mmerep.cli.fast``); the typer application
(``mmerep.cli.root``) is imported for everything else.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing for `--help`
if TYPE_CHECKING:
    from typing import Any

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


def __getattr__(name: str) -> Any:  # the typer side, imported on first use
    if name in ("app", "group_app", "LazyGroup", "NotAvailable"):
        import importlib

        return getattr(importlib.import_module("mmerep.cli.root"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    from mmerep.errors import stop_on_sigterm

    # SIGTERM stops a command the way Ctrl-C does: locks released, records marked.
    # (Long-running loops such as the autoscaler install their own graceful handler.)
    stop_on_sigterm()
    from mmerep.cli.roothelp import print_root_help

    if print_root_help(sys.argv[1:]):
        return
    from mmerep.cli.fast import leave, run_fast

    if run_fast(sys.argv[1:]):
        leave()
        return
    from mmerep.cli.root import main as typer_main

    typer_main()
