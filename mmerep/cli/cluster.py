"""`mme-rep cluster ...`: the embedded local cluster."""

from __future__ import annotations

import typer

from mmerep.cli.options import OutputFormat, OutputOption

app = typer.Typer(
    help="A local Kubernetes cluster (KWOK-simulated nodes, real control plane, local "
    "registry) to try and test everything without a real cluster.\n\n"
    "Examples:\n\n  mme-rep cluster up --nodes 8\n\n  mme-rep cluster status -o json\n\n"
    "  export KUBECONFIG=$(mme-rep cluster kubeconfig)",
    no_args_is_help=True,
)

NameOption = typer.Option(None, "--name", help="A named local cluster beside the default "
                          "one (own ports and state), e.g. --name b.")


@app.command("build")
def build_binaries() -> None:
    """Build the cluster's binaries from pinned Go modules (cached; `up` does this too)."""
    import time

    from mmerep.cli.output import Spinner, console
    from mmerep.cluster import build

    started = time.monotonic()
    with Spinner("checking the cached binaries") as progress:
        paths = build.ensure_binaries(progress=progress)
    console.print(f"{len(paths)} binaries ready in {build.cache_dir() / 'bin'} "
                  f"({time.monotonic() - started:.1f}s)")


@app.command("up")
def up(
    nodes: int = typer.Option(4, "--nodes", "-n", min=1, max=500,
                              help="Number of simulated nodes."),
    node_cpu: str = typer.Option("16", help="CPU capacity of each node."),
    node_memory: str = typer.Option("64Gi", help="Memory capacity of each node."),
    node_pods: int = typer.Option(110, min=1, help="Pod capacity of each node."),
    recreate: bool = typer.Option(False, "--recreate", help="Delete the cluster and every "
                                  "object in it first, then start afresh."),
    etcd_fsync: bool = typer.Option(False, "--etcd-fsync", help="etcd syncs every commit to "
                                    "disk (a new cluster only): its objects then survive a "
                                    "crash of the machine, not only of the processes."),
    name: str | None = NameOption,
) -> None:
    """Build (first time only) and start the local cluster; a no-op when it is running.

    Stopped components (a crash, a reboot) are started again on the existing data: every
    object stays. Only `cluster down` or `--recreate` delete it. By default etcd does not
    wait on the disk for each commit (a killed process loses nothing; a crash of the
    machine could): this cluster is for trying things and tests.
    """
    from mmerep.cli.output import Spinner, console
    from mmerep.cluster import local

    local.select(name)
    spec = local.ClusterSpec(nodes=nodes, node_cpu=node_cpu, node_memory=node_memory,
                             node_pods=node_pods, etcd_fsync=etcd_fsync)
    with Spinner("starting the local cluster") as progress:
        info = local.up(spec, progress=progress, recreate=recreate)
    verb = "already running" if info.already_running else f"up in {info.seconds:.1f}s"
    if info.restarted:
        verb += f" (restarted {', '.join(info.restarted)} on the existing data)"
    console.print(f"[green]cluster {info.name} {verb}[/]: {info.server}, "
                  f"{info.nodes} nodes, registry {info.registry}", soft_wrap=True)
    console.print(f"kubeconfig: {info.kubeconfig} (context {info.context})")


@app.command("down")
def down(name: str | None = NameOption) -> None:
    """Stop the local cluster and remove its state (binaries stay cached)."""
    from mmerep.cli.output import console, err_console
    from mmerep.cluster import local

    local.select(name)
    with err_console.status("stopping the local cluster"):
        stopped = local.down()
    console.print("cluster stopped" if stopped else "cluster was not running")


@app.command("status")
def status(
    output: OutputFormat = OutputOption,
    name: str | None = NameOption,
) -> None:
    """Components and nodes of the local cluster."""
    from mmerep.cli.output import render, table
    from mmerep.cluster import local

    local.select(name)
    data = local.status()

    def as_table(d: dict) -> object:
        from rich.console import Group

        comps = table("components", ["component", "state", "detail"],
                      [(c["name"], c["state"], c.get("detail", "")) for c in d["components"]])
        nodes = table("nodes", ["name", "ready", "cpu", "memory", "pods"],
                      [(n["name"], n["ready"], n["cpu"], n["memory"], n["pods"])
                       for n in d["nodes"]])
        return Group(comps, nodes) if d["nodes"] else comps

    render(data, output, as_table)
    if not data["running"]:
        from mmerep.cli.output import err_console

        down_now = [c["name"] for c in data["components"] if c["state"] != "running"]
        named = f" --name {name}" if name else ""
        err_console.print(f"[red]down: {', '.join(down_now)}[/] (mme-rep cluster up{named} "
                          "starts it again, keeping every object)", soft_wrap=True)
        raise typer.Exit(1)


@app.command("kubeconfig")
def kubeconfig(
    merge: bool = typer.Option(False, "--merge",
                               help="Also merge the context into ~/.kube/config."),
    name: str | None = NameOption,
) -> None:
    """Print the path of the local cluster's kubeconfig (for KUBECONFIG=...)."""
    from mmerep.cli.output import err_console
    from mmerep.cluster import local

    local.select(name)
    path = local.kubeconfig_path()
    if merge:
        target = local.merge_kubeconfig()
        err_console.print(f"merged context {local.CONTEXT} into {target}")
    print(path)


snapshot_app = typer.Typer(
    help="Save the local cluster's state (an etcd snapshot) and go back to it.\n\n"
    "Examples:\n\n  mme-rep cluster snapshot save before-upgrade.db\n\n"
    "  mme-rep cluster snapshot restore before-upgrade.db",
    no_args_is_help=True,
)
app.add_typer(snapshot_app, name="snapshot")


@snapshot_app.command("save")
def snapshot_save(file: str = typer.Argument(..., help="File to write the snapshot to.")) -> None:
    """Write every object of the running cluster to FILE (an etcd snapshot)."""
    from pathlib import Path

    from mmerep.cli.output import console, err_console
    from mmerep.cluster import snapshot

    with err_console.status("saving a snapshot"):
        size = snapshot.save(Path(file))
    console.print(f"[green]snapshot saved[/]: {file} ({size / 1e6:.1f} MB)")


@snapshot_app.command("restore")
def snapshot_restore(file: str = typer.Argument(..., help="A file made by snapshot save.")
                     ) -> None:
    """Bring the cluster back to FILE: objects made since are gone, deleted ones are back.

    Registry images are not in snapshots; they stay as they are.
    """
    from pathlib import Path

    from mmerep.cli.output import Spinner, console
    from mmerep.cluster import snapshot

    with Spinner("restoring a snapshot") as progress:
        snapshot.restore(Path(file), progress=progress)
    console.print(f"[green]cluster restored[/] from {file}")
