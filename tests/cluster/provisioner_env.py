"""A provisioner test bed on the local cluster: KWOK nodes of the test's own (tainted so
nobody else's pods land there), loop-mounted XFS images as their disks, the controller and
one agent per node as local processes, a StorageClass and provisioner name of its own.
Everything is removed at the end, mounts and loop devices included, even on failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmerep.kube import Kube
from provisioner import objects as o
from provisioner.store import Store

MKFS = shutil.which("mkfs.xfs") or "/usr/sbin/mkfs.xfs"
TAINT = "local-ssd-test"
MiB = 1 << 20


def mount_xfs(image: Path, mountpoint: Path, size: int) -> None:
    with image.open("wb") as f:
        f.truncate(size)
    subprocess.run([MKFS, "-q", str(image)], check=True, capture_output=True)
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True,
                   capture_output=True)


def unmount(mountpoint: Path) -> None:
    if os.path.ismount(mountpoint):
        out = subprocess.run(["umount", str(mountpoint)], capture_output=True, check=False)
        if out.returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=False)


def loops_of(images: list[Path]) -> list[str]:
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False)
    names = {str(i) for i in images}
    return [line.split(":")[0] for line in out.stdout.splitlines()
            if any(n in line for n in names)]


def kwok_node(name: str, tag: str, managed: bool = True) -> dict[str, Any]:
    """A node kwok keeps Ready, or (``managed=False``) one whose status the test writes."""
    # (ephemeral-storage: the environments' pods request some for logs and run files)
    resources = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": name, "annotations": {"kwok.x-k8s.io/node": "fake"} if managed else {},
        "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                   "type": "kwok", TAINT: tag}},
        "spec": {"taints": [{"key": TAINT, "value": tag, "effect": "NoSchedule"}]},
        "status": {"allocatable": resources, "capacity": resources}}


def node_ready(node: dict[str, Any] | None) -> bool:
    return bool(node) and any(c.get("type") == "Ready" and c.get("status") == "True"
                              for c in (node or {}).get("status", {}).get("conditions", []))


def wait_until(check: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Bed:
    kube: Kube
    namespace: str
    work: Path
    tag: str
    name: str  # the provisioner's name
    kubeconfig: Path
    context: str
    nodes: list[str] = field(default_factory=list)
    mounts: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)

    @property
    def store(self) -> Store:
        return Store(self.kube, self.namespace, self.name)

    def root(self, node: str) -> Path:
        return self.work / "nodes" / node

    # -- nodes and disks ------------------------------------------------------------------

    def add_node(self, disk_sizes: list[int], managed: bool = True) -> str:
        name = f"lssd-{self.tag}-{len(self.nodes) + 1}"
        self.nodes.append(name)
        for i, size in enumerate(disk_sizes):
            image = self.work / "images" / f"{name}-disk{i}.img"
            image.parent.mkdir(parents=True, exist_ok=True)
            mnt = self.root(name) / f"disk{i}"
            self.images.append(image)
            self.mounts.append(mnt)
            mount_xfs(image, mnt, size)
        self.kube.create(kwok_node(name, self.tag, managed))
        return name

    def wait_nodes_ready(self) -> None:
        wait_until(lambda: all(node_ready(self.kube.get("v1", "Node", n)) for n in self.nodes),
                   60, "the test's nodes to be Ready")

    # -- processes ------------------------------------------------------------------------

    def _spawn(self, key: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.work / "logs" / f"{key}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmerep", "provisioner", "run", *args, "--namespace",
             self.namespace, "--name", self.name, "--kubeconfig", str(self.kubeconfig),
             "--context", self.context],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[key] = proc
        return proc

    def start_controller(self, key: str = "controller", *extra: str) -> subprocess.Popen[bytes]:
        return self._spawn(key, ["controller", "--lease-duration", "3", "--resync", "5",
                                 *extra])

    def start_agent(self, node: str) -> subprocess.Popen[bytes]:
        return self._spawn(f"agent-{node}", ["agent", "--node", node, "--root",
                                             str(self.root(node)), "--resync", "1"])

    def kill(self, key: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(key, None)
        if proc and proc.poll() is None:
            os.kill(proc.pid, sig)
            proc.wait(20)

    def log(self, key: str) -> str:
        path = self.work / "logs" / f"{key}.log"
        return path.read_text() if path.exists() else ""

    def wait_reports(self, nodes: list[str] | None = None) -> None:
        want = set(nodes or self.nodes)
        wait_until(lambda: want <= set(self.store.reports()), 60, "agents' disk reports")

    def start(self, controller: str = "controller", **class_params: str) -> str:
        """The usual start of a test: its nodes Ready, a StorageClass (returned), an agent
        per node and a controller, and every agent's first disk report in."""
        self.wait_nodes_ready()
        cls = self.storage_class(**class_params)
        for node in self.nodes:
            self.start_agent(node)
        self.start_controller(controller)
        self.wait_reports()
        return cls

    # -- objects ---------------------------------------------------------------------------

    def storage_class(self, suffix: str = "ssd", reclaim: str = "Delete",
                      **params: str) -> str:
        name = f"{self.namespace}-{suffix}"[:63]
        sc = o.storage_class(name, reclaim, self.name)
        sc["parameters"].update(params)
        self.kube.apply(sc)
        self.classes.append(name)
        return name

    def claim(self, name: str, size: str, cls: str, **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                         "resources": {"requests": {"storage": size}}, **spec}}
        return self.kube.create(body)  # type: ignore[no-any-return]

    def pod(self, name: str, claim: str) -> dict[str, Any]:
        # A new namespace gets its default service account a moment later (longer on a
        # loaded machine); admission refuses pods until then.
        wait_until(lambda: self.kube.get("v1", "ServiceAccount", "default", self.namespace),
                   60, "the namespace's default service account")
        return self.kube.create({  # type: ignore[no-any-return]
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"tolerations": [{"key": TAINT, "operator": "Exists"}],
                     "nodeSelector": {TAINT: self.tag},
                     "securityContext": {"runAsUser": 1000, "runAsNonRoot": True},
                     "containers": [{"name": "job", "image": "busybox",
                                     "volumeMounts": [{"name": "scratch",
                                                       "mountPath": "/scratch"}]}],
                     "volumes": [{"name": "scratch",
                                  "persistentVolumeClaim": {"claimName": claim}}]}})

    def pvs(self) -> list[dict[str, Any]]:
        return self.kube.list_objects("v1", "PersistentVolume",
                                      label_selector=f"{o.LABEL_PROVISIONER}={self.name}")

    def claims(self) -> list[dict[str, Any]]:
        return self.kube.list_objects("v1", "PersistentVolumeClaim", self.namespace)

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        evs = self.kube.list_objects("v1", "Event", self.namespace)
        return [e for e in evs if reason is None or e.get("reason") == reason]

    # -- the end -------------------------------------------------------------------------

    def close(self) -> None:
        for key in list(self.procs):
            self.kill(key, signal.SIGTERM)
        for pod in self.kube.list_objects("v1", "Pod", self.namespace):
            self.kube.request("DELETE", f"/api/v1/namespaces/{self.namespace}/pods/"
                              f"{pod['metadata']['name']}", body={"gracePeriodSeconds": 0})
        for name in self.nodes:
            self.kube.delete("v1", "Node", name, propagation="Background")
        for pv in self.pvs():
            self.kube.delete("v1", "PersistentVolume", pv["metadata"]["name"],
                             propagation="Background")
        for cls in self.classes:
            self.kube.delete("storage.k8s.io/v1", "StorageClass", cls)
        self.kube.delete("storage.k8s.io/v1", "CSIDriver", self.name)


@contextlib.contextmanager
def provisioner_bed(kube: Kube, namespace: str, work: Path) -> Iterator[Bed]:
    from mmerep.cluster import local

    tag = uuid.uuid4().hex[:6]
    bed = Bed(kube, namespace, work, tag, f"t{tag}.local-ssd.mme-rep.io",
              local.kubeconfig_path(), local.CONTEXT)
    try:
        yield bed
    finally:
        # pytest keeps few tmp dirs and other runs rotate them: keep the controller's and
        # agents' logs where a failed run can still be read.
        keep = Path(tempfile.gettempdir()) / "mmerep-provisioner-test-logs" / namespace
        shutil.rmtree(keep, ignore_errors=True)
        if (work / "logs").is_dir():
            shutil.copytree(work / "logs", keep, dirs_exist_ok=True)
        try:
            bed.close()
        finally:
            for mnt in reversed(bed.mounts):
                unmount(mnt)
            for dev in loops_of(bed.images):
                subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)
            for image in bed.images:
                image.unlink(missing_ok=True)
