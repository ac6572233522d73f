"""`mme-rep monitor ...`: the job and executor monitor, and what it found."""

from __future__ import annotations

from typing import Any

import typer

from mmerep.cli.options import CollectorOption, OutputFormat, OutputOption

HELP = """Watch an environment's jobs and executors, and react.

Every interval the monitor samples the HTCondor queue and pool: a running job whose CPU
time has not grown for --window seconds while its wall clock has is vacated (HTCondor
restarts it from its last checkpoint), at most --restart-budget times, then held with a
reason; a Running executor pod whose startd stays missing from the pool longer than
--executor-grace is deleted (its Deployment replaces it), at most --deletions per
interval. Jobs in their first minutes, transferring input, or submitted with
+MmerepDoNotTouch = True are never touched. Metrics on --metrics-port.

Examples:

  mme-rep monitor run --in-cluster --env sentinel3 --metrics-port 9111   # the sidecar

  mme-rep monitor run -F dev-s3 sentinel3 --window 1800

  mme-rep monitor status -F dev-s3 sentinel3 -o json
"""

app = typer.Typer(help=HELP, no_args_is_help=True)


def _target(env_arg: str | None, env: str | None) -> str:
    from mmerep.errors import UsageError

    name = env or env_arg
    if not name:
        raise UsageError("which environment?", hint="mme-rep monitor run -F PROFILE ENV, or "
                         "--in-cluster --env ENV in the scheduler pod")
    if env and env_arg and env != env_arg:
        raise UsageError(f"two environments given: {env_arg} and --env {env}")
    return name


def _connect(in_cluster: bool, profile_name: str, profiles_file: str | None) -> tuple[Any, str]:
    from mmerep.kube import Kube

    if in_cluster:
        kube = Kube.in_cluster()
        return kube, kube.namespace
    from mmerep.profiles import get_profile

    profile = get_profile(profile_name, profiles_file)
    kube = Kube.from_kubeconfig(profile.kubeconfig, profile.context, namespace=profile.namespace)
    return kube, profile.namespace


@app.command("run", help=HELP)
def run(
    env_arg: str | None = typer.Argument(None, metavar="[ENV]", help="The environment."),
    profile_name: str = typer.Option("local", "--profile", "-F", help="Deployment profile."),
    profiles_file: str | None = typer.Option(None, "--profiles", help="Profiles file."),
    in_cluster: bool = typer.Option(False, "--in-cluster",
                                    help="Use the pod's service account (the sidecar does)."),
    env: str | None = typer.Option(None, "--env", help="The environment (in the pod)."),
    interval: float = typer.Option(60.0, "--interval", min=0.1,
                                   help="Seconds between samples."),
    window: float = typer.Option(1800.0, "--window", min=1.0,
                                 help="Seconds without CPU progress that make a job frozen."),
    startup_grace: float = typer.Option(300.0, "--startup-grace", min=0.0,
                                        help="Seconds of a job's run that are never judged."),
    restart_budget: int = typer.Option(3, "--restart-budget", min=0,
                                       help="Vacates per job before it is held."),
    executor_grace: float = typer.Option(600.0, "--executor-grace", min=1.0,
                                         help="Seconds a Running executor may be missing "
                                         "from the pool before its pod is deleted."),
    deletions: int = typer.Option(2, "--deletions", min=0,
                                  help="Most executor pods deleted per interval."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", min=1, max=65535,
                                            help="Serve Prometheus metrics on this port."),
    collector: str | None = CollectorOption,
    pool_timeout: float = typer.Option(10.0, "--pool-timeout", min=0.5,
                                       help="Seconds to wait for the pool."),
) -> None:
    import logging
    import signal

    from prometheus_client import start_http_server

    from mmerep.condor import BindingsPool
    from mmerep.monitor.detection import FrozenSettings
    from mmerep.monitor.loop import Monitor

    name = _target(env_arg, env)
    kube, namespace = _connect(in_cluster, profile_name, profiles_file)
    pool = BindingsPool(name, collector=collector or f"{name}-collector.{namespace}.svc:9618",
                        timeout=pool_timeout)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    monitor = Monitor(kube, namespace, name, pool, interval=interval,
                      frozen=FrozenSettings(window=window, startup_grace=startup_grace,
                                            restart_budget=restart_budget),
                      executor_grace=executor_grace, deletions_per_interval=deletions)
    if metrics_port:
        start_http_server(metrics_port, registry=monitor.metrics.registry)
    signal.signal(signal.SIGTERM, lambda *_: monitor.stop.set())
    logging.getLogger(__name__).info(
        "monitor for %s/%s: every %.0fs, frozen after %.0fs without CPU", namespace, name,
        interval, window)
    monitor.run()


@app.command("status")
def status(
    env_arg: str = typer.Argument(..., metavar="ENV", help="The environment."),
    profile_name: str = typer.Option("local", "--profile", "-F", help="Deployment profile."),
    profiles_file: str | None = typer.Option(None, "--profiles", help="Profiles file."),
    output: OutputFormat = OutputOption,
) -> None:
    """The monitor's last findings (frozen jobs, restarts, broken executors).

    Example: mme-rep monitor status -F dev-s3 sentinel3 -o json
    """
    from mmerep.cli.output import render, table
    from mmerep.monitor.state import read_state

    kube, namespace = _connect(False, profile_name, profiles_file)
    state = read_state(kube, namespace, env_arg)
    data = {"namespace": namespace, "name": env_arg, "observed": state.observed,
            "restarts": state.restarts, "findings": state.findings}

    def as_table(d: dict[str, Any]) -> Any:
        from datetime import UTC, datetime

        from rich.console import Group
        from rich.text import Text

        head = Text(f"monitor of {env_arg}: {_observed(d['observed'])}", overflow="fold")
        if not d["findings"]:
            return Group(head, Text("no findings (no frozen job, no broken executor)"))
        rows = [(datetime.fromtimestamp(float(f.get("time", 0)), UTC).strftime("%H:%M:%SZ"),
                 f.get("kind"), f.get("job") or f.get("pod"), f.get("action"),
                 f.get("message")) for f in d["findings"]]
        return Group(head, table(None, ["time", "kind", "what", "action", "message"], rows))

    render(data, output, as_table)


def _observed(observed: dict[str, Any]) -> str:
    if not observed:
        return "no interval recorded yet"
    if observed.get("error"):
        return f"pool not readable: {observed['error']}"
    return (f"{observed.get('jobs', 0)} jobs ({observed.get('running', 0)} running, "
            f"{observed.get('held', 0)} held), {observed.get('executors', 0)} executors "
            f"({observed.get('busy', 0)} busy, {observed.get('missing', 0)} missing)")
