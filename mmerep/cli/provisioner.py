"""`mme-rep provisioner ...`: install, inspect and run the local-SSD volume provisioner."""

from __future__ import annotations

from pathlib import Path

import typer

from mmerep.cli.options import OutputFormat, OutputOption
from mmerep.cli.reads import provisioner_target as _target

app = typer.Typer(
    help="The node-local SSD volume provisioner: capacity-aware local volumes for claims "
    "of the local-ssd StorageClasses.\n\n"
    "Examples:\n\n"
    "  mme-rep provisioner install -F local\n\n"
    "  mme-rep provisioner status -F local -o json\n\n"
    "  mme-rep provisioner run controller --namespace mmerep-provisioner\n\n"
    "  mme-rep provisioner run agent --node $NODE_NAME --root /mnt/local-ssd",
    no_args_is_help=True,
)
run_app = typer.Typer(help="Run the controller or a node agent in the foreground (the "
                      "entry points of the images; also how the tests run them).",
                      no_args_is_help=True)
app.add_typer(run_app, name="run")

NamespaceOption = typer.Option("mmerep-provisioner", "--namespace", "-n",
                               envvar="MMEREP_PROVISIONER_NAMESPACE",
                               help="Where the Lease, ledgers, reports and capacity live.")
NameOption = typer.Option("local-ssd.mme-rep.io", "--name", envvar="MMEREP_PROVISIONER_NAME",
                          help="The provisioner (and CSIDriver) name classes refer to.")
KubeconfigOption = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG",
                                help="Kubeconfig file; without one (and no --context), the "
                                "pod's service account is used.")
ContextOption = typer.Option(None, "--context", help="Kubeconfig context.")
MetricsOption = typer.Option(None, "--metrics-port", min=1, max=65535,
                             help="Serve Prometheus metrics on this port.")
ProfileOption = typer.Option("local", "--profile", "-F", help="Deployment profile (target).")
ProfilesFileOption = typer.Option(None, "--profiles", help="Profiles file.")


def _logging(debug: bool) -> None:
    import logging

    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@run_app.command("controller")
def run_controller(
    namespace: str = NamespaceOption,
    name: str = NameOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    lease_duration: float = typer.Option(15.0, "--lease-duration", min=1.0,
                                         help="Seconds a leader's Lease lasts unrenewed."),
    node_grace: float = typer.Option(300.0, "--node-grace", min=0.0,
                                     help="Seconds a node may be NotReady before its "
                                     "volumes are released and claims re-created."),
    resync: float = typer.Option(30.0, "--resync", min=1.0,
                                 help="Seconds between full reconciliations."),
    workers: int = typer.Option(16, "--workers", min=1, max=64,
                                help="Nodes provisioned at once."),
    reserve_ahead: float = typer.Option(
        0.2, "--reserve-ahead", min=0.0, max=0.9,
        help="Share of each disk the leader sets aside in the ledger for claims to come, "
        "so their PVs are created with no ledger write first (0: a ledger write before "
        "every PV)."),
    metrics_port: int | None = MetricsOption,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run the controller (one leads; others wait on the Lease)."""
    from provisioner import service

    service.check_common(name, namespace)
    _logging(verbose)
    service.run_controller(service.connect(kubeconfig, context, namespace),
                           namespace=namespace, name=name, lease_duration=lease_duration,
                           node_grace=node_grace, resync=resync, workers=workers,
                           metrics_port=metrics_port, reserve_ahead=reserve_ahead)


@run_app.command("agent")
def run_agent(
    node: str = typer.Option(..., "--node", envvar="NODE_NAME",
                             help="This node's name (the downward API gives it)."),
    root: Path = typer.Option(Path("/mnt/local-ssd"), "--root",
                              help="Directory holding one mount point per local disk."),
    namespace: str = NamespaceOption,
    name: str = NameOption,
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    any_dir: bool = typer.Option(False, "--any-dir",
                                 help="Take every sub-directory of --root as a disk, mount "
                                 "point or not (for trying it out)."),
    resync: float = typer.Option(10.0, "--resync", min=0.5,
                                 help="Seconds between usage measurements and reports."),
    metrics_port: int | None = MetricsOption,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run a node agent: report disks, prepare, measure and wipe volume directories."""
    from provisioner import service

    service.check_common(name, namespace)
    service.check_disk_root(root)
    _logging(verbose)
    service.run_agent(service.connect(kubeconfig, context, namespace), node=node, root=root,
                      namespace=namespace, name=name, require_mount=not any_dir,
                      resync=resync, metrics_port=metrics_port)



@app.command("install")
def install(
    profile: str = ProfileOption,
    profiles_file: str | None = ProfilesFileOption,
    namespace: str = NamespaceOption,
    name: str = NameOption,
    image: str | None = typer.Option(None, "--image", help="The mme-rep image (default: "
                                     "<profile registry>/<project>/provisioner:<version>)."),
    root: str = typer.Option("/mnt/local-ssd", "--root",
                             help="Where each node mounts its local disks."),
    node_grace: int = typer.Option(300, "--node-grace", min=0,
                                   help="Seconds NotReady before a node counts as lost."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check with the API server only."),
) -> None:
    """Install (or upgrade) the provisioner: RBAC, controller, agents, CSIDriver, classes
    mmerep-local-ssd (Delete) and mmerep-local-ssd-retain (Retain)."""
    from mmerep import __version__
    from mmerep.cli.output import console
    from mmerep.profiles import resolved_registry
    from provisioner import service

    service.check_common(name, namespace)
    service.check_root(root)
    prof, kube = _target(profile, profiles_file, namespace)
    image = image or f"{resolved_registry(prof)}/{prof.project}/provisioner:{__version__}"
    results = service.install(kube, namespace=namespace, name=name, image=image, root=root,
                              node_grace=node_grace, dry_run=dry_run)
    for what, action in results:
        console.print(f"{what}: {action}")
    changed = sum(1 for _, a in results if a != "unchanged")
    console.print(f"{'checked' if dry_run else 'installed'}: {len(results)} objects, "
                  f"{changed} changed")


@app.command("status")
def status(
    profile: str = ProfileOption,
    profiles_file: str | None = ProfilesFileOption,
    namespace: str = NamespaceOption,
    name: str = NameOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Per node and disk: size, allocatable, reserved, used, volumes; and who leads."""
    from mmerep.cli.reads import provisioner_status

    provisioner_status(profile, profiles_file, namespace, name, output)


@app.command("uninstall")
def uninstall(
    profile: str = ProfileOption,
    profiles_file: str | None = ProfilesFileOption,
    namespace: str = NamespaceOption,
    name: str = NameOption,
    force: bool = typer.Option(False, "--force", help="Uninstall even while volumes exist."),
) -> None:
    """Remove the provisioner (refused while its volumes exist, unless --force)."""
    from mmerep.cli.output import console
    from provisioner import service

    service.check_common(name, namespace)
    _, kube = _target(profile, profiles_file, namespace)
    gone = service.uninstall(kube, namespace=namespace, name=name, force=force)
    console.print(f"removed {len(gone)} objects" + (f": {', '.join(gone)}" if gone else ""))
