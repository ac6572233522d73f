"""Entry points behind ``mme-rep provisioner ...``: connecting, running the controller or
an agent until a signal, and checking the inputs first (bad input changes nothing)."""

from __future__ import annotations

import faulthandler
import logging
import os
import re
import signal
import threading
from pathlib import Path
from typing import Any

from mmerep.errors import UsageError
from mmerep.kube import DEFAULT_SA_DIR, Kube
from provisioner.objects import valid_name

log = logging.getLogger(__name__)
_DNS_LABEL_MAX = 63
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def connect(kubeconfig: str | None, context: str | None, namespace: str) -> Kube:
    """The kubeconfig when one is named (or $KUBECONFIG), else the pod's service account."""
    sa_dir = Path(os.environ.get("MMEREP_SA_DIR") or DEFAULT_SA_DIR)
    if kubeconfig or context or not (sa_dir / "token").exists():
        return Kube.from_kubeconfig(kubeconfig, context, namespace=namespace)
    return Kube.in_cluster(namespace=namespace)


def check_common(name: str, namespace: str) -> None:
    problem = valid_name(name)
    if problem:
        raise UsageError(problem, hint="pass --name with a DNS subdomain")
    if len(namespace) > _DNS_LABEL_MAX or not _DNS_LABEL.fullmatch(namespace):
        raise UsageError(f"namespace '{namespace}' is not a DNS label",
                         hint="lower-case letters, digits and '-', e.g. mmerep-provisioner")


def check_root(root: str) -> None:
    if not root.startswith("/"):
        raise UsageError(f"--root '{root}' is not an absolute path",
                         hint="e.g. --root /mnt/local-ssd")


def check_disk_root(root: Path) -> None:
    if not root.is_dir():
        raise UsageError(f"disk root {root} is not a directory",
                         hint="mount each local disk under one directory, e.g. "
                         "/mnt/local-ssd/disk0, and pass --root /mnt/local-ssd")


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    # SIGUSR1 prints every thread's stack (a stuck controller explains itself).
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def run_controller(kube: Kube, *, namespace: str, name: str, lease_duration: float,
                   node_grace: float, resync: float, workers: int,
                   metrics_port: int | None, reserve_ahead: float = 0.2) -> None:
    from provisioner.controller import Controller, Settings

    controller = Controller(kube, Settings(namespace=namespace, name=name,
                                           lease_duration=lease_duration,
                                           node_grace=node_grace, resync=resync,
                                           workers=workers, reserve_ahead=reserve_ahead))
    if metrics_port:
        controller.metrics.serve(metrics_port)
    _stop_on_signals(controller.stop)
    controller.run()


def run_agent(kube: Kube, *, node: str, root: Path, namespace: str, name: str,
              require_mount: bool, resync: float, metrics_port: int | None) -> None:
    from provisioner.agent import Agent, AgentSettings

    check_disk_root(root)
    agent = Agent(kube, AgentSettings(node=node, root=root, namespace=namespace, name=name,
                                      require_mount=require_mount, resync=resync))
    if metrics_port:
        agent.metrics.serve(metrics_port)
    _stop_on_signals(agent.stop)
    agent.run()


def install(kube: Kube, *, namespace: str, name: str, image: str, root: str,
            node_grace: int, dry_run: bool = False) -> list[tuple[str, str]]:
    """Apply every object (server-side, in dependency order); (object, action) pairs."""
    from mmerep.kube import kind_name_ns as describe
    from provisioner.manifests import install_objects

    check_common(name, namespace)
    check_root(root)
    objs = install_objects(namespace, image, name=name, root=root, node_grace=node_grace)
    if not dry_run:
        kube.apply_all(objs, dry_run=True)  # everything is checked before anything changes
    return [(describe(r.obj), r.action) for r in kube.apply_all(objs, dry_run=dry_run)]


def uninstall(kube: Kube, *, namespace: str, name: str, force: bool) -> list[str]:
    """Remove what install made; refuses while volumes exist, unless ``force``."""
    from mmerep.errors import MmerepError
    from mmerep.kube import kind_name_ns as describe
    from provisioner import objects as o
    from provisioner.manifests import install_objects

    check_common(name, namespace)
    pvs = kube.list_objects("v1", "PersistentVolume",
                            label_selector=f"{o.LABEL_PROVISIONER}={name}")
    if pvs and not force:
        raise MmerepError(f"{len(pvs)} local-ssd volume(s) still exist "
                          f"(e.g. {pvs[0]['metadata']['name']}); nothing was removed",
                          hint="delete their claims first, or pass --force to leave them "
                          "as they are (their data stays on the nodes)")
    objs = install_objects(namespace, "unused", name=name)
    gone = kube.delete_all(objs)
    # Foreground deletion: the workloads stay until their pods are gone; "removed"
    # means gone, so wait for them (the namespace may take longer and is not waited for).
    kube.wait_gone([obj for obj in gone if obj["kind"] != "Namespace"], timeout=120)
    return [describe(obj) for obj in gone]
