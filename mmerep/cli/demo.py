"""`mme-rep demo` (run by ./mme-rep.sh demo): the main job on the embedded cluster."""

from __future__ import annotations

import typer


def demo(
    nodes: int = typer.Option(4, "--nodes", "-n", min=1, help="Simulated nodes."),
) -> None:
    """Bring the local cluster up, publish a sample image, and show the cluster."""
    from mmerep.cli.options import OutputFormat
    from mmerep.cli.output import Progress, console, render, table
    from mmerep.cluster import local, sample

    with Progress("starting the local cluster (the first run builds it: 20-40 min)") as progress:
        info = local.up(local.ClusterSpec(nodes=nodes), progress=progress)
    console.print(f"[green]1. cluster {info.name}[/] at {info.server} "
                  f"({'already running' if info.already_running else f'{info.seconds:.1f}s'})")
    digest = sample.push_sample_image(info.registry)
    console.print(f"[green]2. sample image[/] {info.registry}/{sample.SAMPLE_REPO}:"
                  f"{sample.SAMPLE_TAG} -> {digest}")
    console.print("[green]3. cluster status[/]")
    data = local.status()
    render(data, OutputFormat.table, lambda d: table(
        None, ["node", "ready", "cpu", "memory", "pods"],
        [(n["name"], n["ready"], n["cpu"], n["memory"], n["pods"]) for n in d["nodes"]]))
    console.print(f"\nUse it: export KUBECONFIG={info.kubeconfig}\n"
                  "Stop it: ./mme-rep.sh cluster down")
