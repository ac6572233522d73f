"""The read commands without typer: ``env list``, ``env status``, the scaler's status (as
``scaler.sh`` runs it) and ``provisioner status``, when their arguments are plain; and
``synclocal stage``, whose fixed cost counts against every staging run's throughput.

Importing typer costs ~70 ms of CPU, as much as a ``kubectl get`` takes in all; these
commands are typed all day and run by scripts, so they parse their few options here and
call the same bodies as the typer commands (``mmerep.cli.reads``). Anything else (help,
an unknown or malformed option, a value typer would refuse, another verb) is left to
typer, which parses it and reports errors as always. tests/unit/test_fast_reads.py checks
these option tables against the typer commands' own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmerep.cli.formats import OutputFormat

FLAG = "flag"
OFF = "off"  # the second spelling of a boolean flag (--no-verify): sets it False


@dataclass(frozen=True)
class Spec:
    """One command: its options (every spelling -> (parameter, FLAG, OFF or a converter that
    raises ValueError for what typer would refuse)), their
    defaults (an environment variable is read as typer reads it), and its body."""

    path: tuple[str, ...]
    options: dict[str, tuple[str, Any]]
    defaults: dict[str, Any]
    run: Callable[[dict[str, Any], list[str]], bool]
    envvars: dict[str, str] = field(default_factory=dict)


_PROFILE = {"-F": ("profile_name", str), "--profile": ("profile_name", str),
            "--profiles": ("profiles_file", str), "-o": ("output", OutputFormat),
            "--output": ("output", OutputFormat)}
_PROFILE_DEFAULTS = {"profile_name": "local", "profiles_file": None,
                     "output": OutputFormat.table}


def _env_list(v: dict[str, Any], args: list[str]) -> bool:
    if args:
        return False
    from mmerep.cli.reads import env_list

    env_list(v["profile_name"], v["profiles_file"], v["all_namespaces"], v["everywhere"],
             v["output"])
    return True


def _env_status(v: dict[str, Any], args: list[str]) -> bool:
    if len(args) != 1:
        return False
    from mmerep.cli.reads import env_status

    env_status(args[0], v["profile_name"], v["profiles_file"], v["on"], v["output"])
    return True


def _scaler_status(v: dict[str, Any], args: list[str]) -> bool:
    env = v["env"]
    rest = list(args)
    if env is None:
        if not rest or rest[0] in ("status", "scale", "vscale", "daemon"):
            return False
        env = rest.pop(0)
    if rest not in ([], ["status"]) or v["pool_timeout"] < 0.5:
        return False
    from mmerep.cli import reads
    from mmerep.errors import KubeForbidden

    asking, asked_in = (reads.scaler_pool_ahead(env, v["collector"], v["pool_timeout"])
                        if v["in_cluster"] else (None, None))
    try:
        kube, _, namespace = reads.scaler_connect(v["in_cluster"], v["profile_name"],
                                                  v["profiles_file"], env)
        if asking is not None and asked_in != namespace:
            asking.close()
            asking = None
        pool = None if asking else reads.scaler_pool(env, namespace, v["collector"],
                                                     v["pool_timeout"])
        reads.scaler_status(kube, namespace, env, pool, v["output"], asking)
    except KubeForbidden as exc:
        raise reads.scaler_forbidden(exc) from None
    finally:
        if asking is not None:
            asking.close()
    return True


def _provisioner_status(v: dict[str, Any], args: list[str]) -> bool:
    if args:
        return False
    from mmerep.cli.reads import provisioner_status

    provisioner_status(v["profile_name"], v["profiles_file"], v["namespace"], v["name"],
                       v["output"])
    return True


def _stage(v: dict[str, Any], args: list[str]) -> bool:
    if not args or v["to"] is None:
        return False  # typer says what is missing
    from mmerep.cli.stagecmd import stage

    stage(args, v["to"], v["dataset"], v["jobs"], v["verify"], v["recheck"], v["bwlimit"])
    return True


JOBS_RANGE = (1, 256)


def _jobs(value: str) -> int:
    n = int(value)
    if not JOBS_RANGE[0] <= n <= JOBS_RANGE[1]:
        raise ValueError(value)
    return n


def _path(value: str) -> Any:
    from pathlib import Path

    return Path(value)


SPECS = [
    Spec(("env", "list"), {**_PROFILE, "-A": ("all_namespaces", FLAG),
                           "--all-namespaces": ("all_namespaces", FLAG),
                           "--all": ("everywhere", FLAG)},
         {**_PROFILE_DEFAULTS, "all_namespaces": False, "everywhere": False}, _env_list),
    Spec(("env", "status"), {**_PROFILE, "--on": ("on", str)},
         {**_PROFILE_DEFAULTS, "on": None}, _env_status),
    Spec(("scaler",), {**_PROFILE, "--in-cluster": ("in_cluster", FLAG), "--env": ("env", str),
                       "--collector": ("collector", str),
                       "--pool-timeout": ("pool_timeout", float)},
         {**_PROFILE_DEFAULTS, "in_cluster": False, "env": None, "collector": None,
          "pool_timeout": 5.0}, _scaler_status),
    Spec(("provisioner", "status"), {**_PROFILE, "-n": ("namespace", str),
                                     "--namespace": ("namespace", str),
                                     "--name": ("name", str)},
         {**_PROFILE_DEFAULTS, "namespace": "mmerep-provisioner",
          "name": "local-ssd.mme-rep.io"}, _provisioner_status,
         {"namespace": "MMEREP_PROVISIONER_NAMESPACE", "name": "MMEREP_PROVISIONER_NAME"}),
    Spec(("synclocal", "stage"), {"--to": ("to", _path), "--dataset": ("dataset", str),
                                  "-d": ("dataset", str), "--jobs": ("jobs", _jobs),
                                  "-j": ("jobs", _jobs), "--verify": ("verify", FLAG),
                                  "--no-verify": ("verify", OFF),
                                  "--recheck": ("recheck", FLAG), "--bwlimit": ("bwlimit", str)},
         {"to": None, "dataset": None, "jobs": 8, "verify": True, "recheck": False,
          "bwlimit": None}, _stage),
]


def parse(spec: Spec, argv: list[str]) -> tuple[dict[str, Any], list[str]] | None:
    """The parameters and positional arguments, or None when typer should parse them."""
    values = dict(spec.defaults)
    for param, var in spec.envvars.items():
        if os.environ.get(var):
            values[param] = os.environ[var]
    args: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            args.append(arg)
            continue
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            attached = bool(eq)
        else:
            name, value = arg[:2], arg[2:]
            attached = bool(value)
        if name not in spec.options:
            return None  # --help, --, an unknown option: typer's
        param, kind = spec.options[name]
        if kind in (FLAG, OFF):
            if attached:
                return None
            values[param] = kind == FLAG
            continue
        if not attached:
            if i >= len(argv):
                return None
            value = argv[i]
            i += 1
        try:
            values[param] = kind(value)
        except ValueError:
            return None
    return values, args


def run_fast(argv: list[str]) -> bool:
    """Run ``argv`` here if it is one of the read commands with plain arguments; False
    when typer should run it (nothing was done then)."""
    for spec in SPECS:
        n = len(spec.path)
        if tuple(argv[:n]) != spec.path:
            continue
        parsed = parse(spec, argv[n:])
        if parsed is None:
            return False
        import gc

        from mmerep.errors import MmerepError

        # A read command lives a fraction of a second and makes few reference cycles:
        # the cyclic collector, which ran through every module's objects again and again
        # while they were imported, was ~12% of scaler.sh's CPU.
        gc.disable()
        try:
            return spec.run(*parsed)
        except MmerepError as exc:
            from mmerep.cli.output import fail

            fail(exc.message, exc.hint)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt as stop:
            from mmerep.errors import exit_interrupted

            exit_interrupted(stop)
        finally:
            gc.enable()
    return False


def leave() -> None:
    """After a read command: end the process without the interpreter's teardown (freeing
    every module's objects one by one was ~9% of scaler.sh's CPU), when nothing asked
    to run at exit and no other thread runs. Output is flushed first; if that fails
    (a closed pipe), the usual exit reports it."""
    import atexit
    import threading

    if atexit._ncallbacks() or threading.active_count() > 1 \
            or sys.getprofile() is not None or sys.gettrace() is not None:
        return  # someone wants the end (a profiler writes its file, coverage its data)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(0)
