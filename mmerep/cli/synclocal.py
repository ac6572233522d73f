"""`mme-rep synclocal ...`: stage data onto a node's local disk, and the DaemonSet's loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mmerep.cli.options import OutputFormat, OutputOption

app = typer.Typer(
    help="Stage input data onto a node's local SSD: parallel, verified (XXH3-128), "
    "resumable, with an LRU cache between watermarks.\n\n"
    "Examples:\n\n  mme-rep synclocal stage /bulk/s3/olci/2019 --to /scratch\n\n"
    "  mme-rep synclocal stage '/bulk/s3/aux/*.nc' --dataset aux --to /scratch\n\n"
    "  mme-rep synclocal status --root /scratch -o json",
    no_args_is_help=True,
)

RootOption = typer.Option(..., "--root", envvar="MMEREP_SYNCLOCAL_ROOT",
                          help="The local directory that holds the staged datasets.")

SourcesArgument = typer.Argument(..., metavar="SOURCE...",
                                 help="Directories, files or quoted globs.")
ToOption = typer.Option(..., "--to", help="The root directory to stage into.")
ManifestOption = typer.Option(..., "--manifest", envvar="MMEREP_SYNCLOCAL_MANIFEST",
                              help="The dataset manifest (YAML, mounted from a ConfigMap).")


def _layout(root: Path) -> Any:
    from mmerep.synclocal.layout import Layout

    return Layout(root.absolute())


@app.command("stage")
def stage(
    sources: list[str] = SourcesArgument,
    to: Path = ToOption,
    dataset: str | None = typer.Option(
        None, "--dataset", "-d",
        help="Put all sources into this one dataset. Without it each SOURCE must be a "
        "directory and becomes the dataset TO/<its name>, like cp -r."),
    jobs: int = typer.Option(8, "--jobs", "-j", min=1, max=256,
                             help="Files or chunks copied at once."),
    verify: bool = typer.Option(True, "--verify/--no-verify",
                                help="Record an XXH3-128 checksum of every file."),
    recheck: bool = typer.Option(False, "--recheck",
                                 help="Re-hash already staged files and re-copy mismatches."),
    bwlimit: str | None = typer.Option(None, "--bwlimit",
                                       help="Limit the copy to this many bytes/s, e.g. 200M "
                                       "or 190Mi (M = 10^6 bytes, Mi = 2^20)."),
) -> None:
    """Copy SOURCE... into TO (a user command; the daemon does the same from a manifest)."""
    from mmerep.cli.stagecmd import stage as run_stage

    run_stage(sources, to, dataset, jobs, verify, recheck, bwlimit)


@app.command("daemon")
def daemon(
    manifest: Path = ManifestOption,
    root: Path = RootOption,
    once: bool = typer.Option(False, "--once", help="One pass, then exit (non-zero on errors)."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", min=1, max=65535,
                                            help="Serve Prometheus metrics on this port."),
    node: str | None = typer.Option(None, "--node", envvar="NODE_NAME",
                                    help="Label this node with the complete datasets "
                                    "(in-cluster service account)."),
) -> None:
    """The synclocal DaemonSet's entry point: stage the manifest's datasets, evict, report.

    Manifest format: `datasets: [{name: NAME, paths: [PATH or GLOB, ...]}]` and optional
    `settings: {interval, high_watermark, low_watermark, capacity, jobs, bwlimit, verify}`.
    """
    import logging
    import signal

    from mmerep.cli.output import console
    from mmerep.synclocal.daemon import Daemon
    from mmerep.synclocal.node import kube_node_reporter

    logging.getLogger("mmerep.synclocal").setLevel(logging.INFO)
    d = Daemon(_layout(root), manifest, reporter=kube_node_reporter(node) if node else None)
    if metrics_port:
        d.metrics.serve(metrics_port)
    signal.signal(signal.SIGTERM, lambda *_: d.stop.set())
    report = d.run(once=once)
    done = sum(1 for ds in report.datasets if ds.complete)
    console.print(f"synclocal: {done}/{len(report.datasets)} datasets complete in {root}",
                  soft_wrap=True)
    for name, message in report.errors.items():
        console.print(f"[red]{name}[/]: {message}", soft_wrap=True)
    if report.errors:
        raise typer.Exit(1)


@app.command("status")
def status(
    root: Path = RootOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Datasets under ROOT: complete or not, size, last use, who pins them."""
    from datetime import datetime

    from mmerep.cli.output import render, table
    from mmerep.synclocal.cache import list_datasets, usage
    from mmerep.synclocal.plan import human_size

    layout = _layout(root)
    datasets = list_datasets(layout) if layout.meta.is_dir() else []
    use = usage(layout) if root.is_dir() else None

    def when(ts: float | None) -> str | None:
        return datetime.fromtimestamp(ts).isoformat(timespec="seconds") if ts else None

    data = {
        "root": str(layout.root),
        "used_bytes": use.used if use else None,
        "total_bytes": use.total if use else None,
        "datasets": [{"name": d.name, "complete": d.complete, "bytes": d.bytes,
                      "files": d.files, "last_used": when(d.last_used),
                      "updated": when(d.updated), "pinned_by": d.pinned_by,
                      "errors": d.errors} for d in datasets],
    }

    def as_table(d: dict) -> object:
        title = f"{d['root']}" + (f" ({human_size(d['used_bytes'])} of "
                                  f"{human_size(d['total_bytes'])} used)" if use else "")
        return table(title, ["dataset", "complete", "size", "files", "last used", "pinned by"],
                     [(x["name"], "yes" if x["complete"] else "no", human_size(x["bytes"]),
                       x["files"], x["last_used"] or "never", ", ".join(x["pinned_by"]))
                      for x in d["datasets"]])

    render(data, output, as_table)


@app.command("pin")
def pin(
    dataset: str = typer.Argument(..., help="The dataset a job is about to read."),
    root: Path = RootOption,
    holder: str = typer.Option("manual", "--holder", help="Who pins it, e.g. the job id."),
) -> None:
    """Protect a dataset from eviction while a job reads it."""
    from mmerep.cli.output import console
    from mmerep.synclocal.cache import pin as do_pin

    do_pin(_layout(root), dataset, holder)
    console.print(f"pinned {dataset} for {holder}", soft_wrap=True)


@app.command("unpin")
def unpin(
    dataset: str = typer.Argument(..., help="The dataset the job no longer reads."),
    root: Path = RootOption,
    holder: str = typer.Option("manual", "--holder", help="Whose pin to drop."),
    all_holders: bool = typer.Option(False, "--all", help="Drop every holder's pin."),
) -> None:
    """Let a dataset be evicted again (it counts as just used)."""
    from mmerep.cli.output import console
    from mmerep.synclocal.cache import unpin as do_unpin

    left = do_unpin(_layout(root), dataset, None if all_holders else holder)
    console.print(f"unpinned {dataset}" + (f"; still pinned by {', '.join(left)}" if left
                                           else ""), soft_wrap=True)


@app.command("evict")
def evict(
    root: Path = RootOption,
    high: float = typer.Option(0.9, "--high", min=0.01, max=1.0,
                               help="Evict when usage is above this fraction."),
    low: float = typer.Option(0.8, "--low", min=0.01, max=1.0,
                              help="Evict least recently used datasets down to this."),
    capacity: str | None = typer.Option(None, "--capacity",
                                        help="Measure usage against this size (e.g. 500G "
                                        "= 500*10^9 bytes, or 465Gi) instead of the file "
                                        "system's."),
) -> None:
    """Run the watermark eviction now; pinned datasets stay."""
    from mmerep.cli.output import console
    from mmerep.quantity import parse_size
    from mmerep.synclocal import writer_lock
    from mmerep.synclocal.cache import evict as do_evict
    from mmerep.synclocal.plan import human_size

    layout = _layout(root)
    with writer_lock(layout):
        rep = do_evict(layout, high=high, low=low,
                       capacity=parse_size(capacity, "--capacity") if capacity else None)
    for name, size in rep.evicted:
        console.print(f"evicted {name} ({human_size(size)})", soft_wrap=True)
    console.print(f"usage {rep.before.fraction:.0%} -> {rep.after.fraction:.0%} "
                  f"(high {high:.0%}, low {low:.0%}); {len(rep.evicted)} evicted"
                  + (f", pinned: {', '.join(rep.kept_pinned)}" if rep.kept_pinned else ""),
                  soft_wrap=True)
