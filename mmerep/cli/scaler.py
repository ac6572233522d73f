"""`mme-rep scaler ...`: scale an environment's executors, in the pod or from a shell."""

from __future__ import annotations

from typing import Any

import typer

from mmerep.cli.options import CollectorOption, OutputFormat, OutputOption
from mmerep.cli.reads import scaler_connect as _connect
from mmerep.cli.reads import scaler_forbidden as _forbidden
from mmerep.cli.reads import scaler_pool as _pool
from mmerep.cli.reads import scaler_status as _status

HELP = """Scale an environment's executors and drive the autoscaler.

The same verbs from the operator's shell (a profile) and from /configs/scaler.sh in the
scheduler pod (its service account, --in-cluster --env NAME):

  status (or nothing)                     daemon, pool and executor sizes, requests
  vscale CPU MEM [LIMIT_CPU LIMIT_MEM]    new requests/limits, rolled without killing jobs
  scale N                                 N executors; waits until Running or stuck
  daemon on|off [--min A --max B]         the queue-driven autoscaler
  daemon run                              the autoscaler loop (the scheduler pod's sidecar)

Examples:

  mme-rep scaler -F dev-s3 sentinel3

  mme-rep scaler -F dev-s3 sentinel3 vscale 2 8G

  mme-rep scaler -F dev-s3 sentinel3 scale 310

  mme-rep scaler -F dev-s3 sentinel3 daemon on --min 2 --max 300

  /configs/scaler.sh scale 310            # in the scheduler pod
"""

app = typer.Typer(help=HELP, no_args_is_help=False)

VERBS = ("status", "scale", "vscale", "daemon")


def _split(args: list[str], env: str | None) -> tuple[str, str, list[str]]:
    from mmerep.errors import UsageError

    rest = list(args)
    if env is None:
        if not rest or rest[0] in VERBS:
            raise UsageError("which environment?", hint="mme-rep scaler -F PROFILE ENV "
                             "[status|scale N|vscale CPU MEM|daemon on|off]")
        env = rest.pop(0)
    verb = rest.pop(0) if rest else "status"
    if verb not in VERBS:
        raise UsageError(f"unknown verb '{verb}'", hint=f"use one of: {', '.join(VERBS)}")
    return env, verb, rest


@app.command(help=HELP, context_settings={"ignore_unknown_options": True})
def scaler(
    args: list[str] = typer.Argument(None, metavar="[ENV] [VERB] [ARGS]...",
                                     help="Environment (unless --env), verb and its arguments."),
    profile_name: str = typer.Option("local", "--profile", "-F", help="Deployment profile."),
    profiles_file: str | None = typer.Option(None, "--profiles", help="Profiles file."),
    in_cluster: bool = typer.Option(False, "--in-cluster",
                                    help="Use the pod's service account (scaler.sh does)."),
    env: str | None = typer.Option(None, "--env", help="The environment (in the pod)."),
    minimum: int | None = typer.Option(None, "--min", min=0, help="daemon on: fewest executors."),
    maximum: int | None = typer.Option(None, "--max", min=0, help="daemon on: most executors."),
    stall: float = typer.Option(30.0, "--stall", min=0.5,
                                help="scale: stop following after this many seconds "
                                "without progress."),
    interval: float = typer.Option(15.0, "--interval", min=0.1,
                                   help="daemon run: seconds between decisions."),
    cooldown: float = typer.Option(300.0, "--cooldown", min=0,
                                   help="daemon run: seconds of low demand before shrinking."),
    step: int = typer.Option(20, "--step", min=1,
                             help="daemon run: most executors added/removed per interval."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", min=1, max=65535,
                                            help="daemon run: serve Prometheus metrics."),
    collector: str | None = CollectorOption,
    pool_timeout: float = typer.Option(5.0, "--pool-timeout", min=0.5,
                                       help="Seconds to wait for the pool."),
    output: OutputFormat = OutputOption,
) -> None:
    """Scale an environment's executors and drive the autoscaler."""
    from mmerep.errors import KubeForbidden, UsageError
    from mmerep.scaler import executors as ex

    name, verb, rest = _split(args or [], env)
    if verb == "status" and rest:
        raise UsageError(f"status takes no arguments, not {' '.join(rest)}")
    # Shape of the arguments first: bad input never reaches the cluster.
    if verb == "scale" and len(rest) != 1:
        raise UsageError("scale needs one number", hint="e.g. scale 310")
    if verb == "vscale" and len(rest) not in (2, 4):
        raise UsageError("vscale needs CPU and MEM, optionally LIMIT_CPU and LIMIT_MEM",
                         hint="e.g. vscale 2 8G, or vscale 2 8G 4 16G")
    if verb == "vscale":
        _resources(rest, ex.Limits())
    if verb == "scale":
        ex.parse_count(rest[0], ex.Limits())
    if verb == "daemon" and (len(rest) != 1 or rest[0] not in ("on", "off", "run")):
        raise UsageError("daemon needs on, off or run", hint="e.g. daemon on --min 2 --max 300")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise UsageError(f"--min {minimum} is above --max {maximum}")
    kube, profile, namespace = _connect(in_cluster, profile_name, profiles_file, name)
    try:
        if verb == "status":
            _status(kube, namespace, name, _pool(name, namespace, collector, pool_timeout),
                    output)
        elif verb == "scale":
            _scale(kube, profile, namespace, name, rest[0], stall, output)
        elif verb == "vscale":
            _vscale(kube, profile, namespace, name, rest, output)
        elif rest[0] == "run":
            _run_daemon(kube, namespace, name, _pool(name, namespace, collector, pool_timeout),
                        interval, cooldown, step, metrics_port)
        else:
            _daemon(kube, profile, namespace, name, rest[0] == "on", minimum, maximum, output)
    except KubeForbidden as exc:
        raise _forbidden(exc) from None


def _resources(rest: list[str], limits: Any) -> Any:
    from mmerep.scaler import executors as ex

    cpu, memory, *top = rest
    return ex.parse_resources(cpu, memory, *(top or ["", ""]), limits=limits)


def _scale(kube: Any, profile: Any, namespace: str, name: str, count_text: str, stall: float,
           output: OutputFormat) -> None:
    import dataclasses

    from mmerep.cli.output import err_console, render
    from mmerep.scaler import executors as ex
    from mmerep.scaler.state import read_state

    before = int(ex.executor_deployment(kube, namespace, name)["spec"].get("replicas", 0))
    count = ex.parse_count(count_text, ex.limits_for(kube, namespace, name, profile))
    table = output is OutputFormat.table
    if table:
        if count == before:
            print(f"Deployment is already at {count}; checking its executors...", flush=True)
        else:
            print(f"Scaling deployment {'up' if count > before else 'down'} from {before} to "
                  f"{count}...", flush=True)
        if read_state(kube, namespace, name).daemon:
            print("(the daemon is on: it may change this within one interval)", flush=True)
    last = {"line": ""}

    def progress(p: ex.ScaleProgress) -> None:
        line = f"  {p.ready}/{p.desired} executors Running ({p.current} pods)"
        if table and line != last["line"]:
            last["line"] = line
            if err_console.is_terminal:
                err_console.print(line, end="\r", soft_wrap=True)
            else:
                err_console.print(line, soft_wrap=True)

    result = ex.scale(kube, namespace, name, count, on_progress=progress, stall=stall)
    if table:
        if err_console.is_terminal:
            err_console.print()
        why = result.reason or "not scheduled yet: the scheduler is still working"
        print(f"Running {result.running}, Pending {result.pending}"
              + (f" ({why})" if result.pending else "")
              + f" after {result.seconds:.1f}s")
    else:
        render({**dataclasses.asdict(result), "complete": result.complete}, output,
               lambda d: d)
    if not result.complete:
        raise typer.Exit(ex.EXIT_PENDING)


def _vscale(kube: Any, profile: Any, namespace: str, name: str, rest: list[str],
            output: OutputFormat) -> None:
    from mmerep.cli.output import LiveWorkloads, render
    from mmerep.scaler import executors as ex

    ex.executor_deployment(kube, namespace, name)
    res = _resources(rest, ex.limits_for(kube, namespace, name, profile))
    if output is OutputFormat.table:
        print(f"Scaling deployment vertically to CPU/RAM requests {res.cpu}/{res.memory} and "
              f"limits {res.cpu_limit}/{res.memory_limit} ...", flush=True)
    with LiveWorkloads("rolling the executors (new ones first, old ones drain)") as live:
        revision = ex.vscale(kube, namespace, name, res, on_progress=live.update)
    if output is OutputFormat.table:
        print(f"Done: revision {revision} (mme-rep env rollback {name} undoes it)")
    else:
        render({"revision": revision, "requests": {"cpu": res.cpu, "memory": res.memory},
                "limits": {"cpu": res.cpu_limit, "memory": res.memory_limit}}, output,
               lambda d: d)


def _daemon(kube: Any, profile: Any, namespace: str, name: str, on: bool, minimum: int | None,
            maximum: int | None, output: OutputFormat) -> None:
    from mmerep.cli.output import render
    from mmerep.scaler import executors as ex

    limits = ex.limits_for(kube, namespace, name, profile)
    state = ex.set_daemon(kube, namespace, name, on, minimum, maximum, limits)
    top = limits.max_executors
    data = {"daemon": "on" if on else "off", "min": state.minimum, "max": state.maximum}
    if output is OutputFormat.table:
        bounds = f" (min {state.minimum or 0}, max {state.maximum or top or 'profile'})"
        print(f"Daemon is: {'on' if on else 'off'}" + (bounds if on else ""))
    else:
        render(data, output, lambda d: d)


def _run_daemon(kube: Any, namespace: str, name: str, pool: Any, interval: float,
                cooldown: float, step: int, metrics_port: int | None) -> None:
    import logging
    import signal

    from prometheus_client import start_http_server

    from mmerep.scaler.autoscaler import Autoscaler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    scaler_ = Autoscaler(kube, namespace, name, pool, interval=interval, step=step,
                         cooldown=cooldown)
    if metrics_port:
        start_http_server(metrics_port, registry=scaler_.metrics.registry)
    signal.signal(signal.SIGTERM, lambda *_: scaler_.stop.set())
    logging.getLogger(__name__).info("autoscaler for %s/%s: every %.0fs", namespace, name,
                                     interval)
    scaler_.run()
