"""The node agent: one per node (a DaemonSet in production, a local process per simulated
node in the tests). No helper pods: it prepares volume directories itself, reports its
disks, measures usage, and wipes what is released.

All volume work happens on one thread (the watch), so the orphan sweep can never race
with a directory being created.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mmerep.errors import KubeError
from mmerep.kube import Kube
from provisioner import DEFAULT_NAME, disks
from provisioner import objects as o
from provisioner.controller import watch_forever
from provisioner.ledger import Disk
from provisioner.metrics import AgentMetrics
from provisioner.store import Report, Store, now_iso

log = logging.getLogger(__name__)
Obj = dict[str, Any]
COMPONENT = "local-ssd-agent"


@dataclass
class AgentSettings:
    node: str
    root: Path
    namespace: str = "mmerep-provisioner"
    name: str = DEFAULT_NAME
    require_mount: bool = True
    resync: float = 10.0


class Agent:
    def __init__(self, kube: Kube, settings: AgentSettings,
                 metrics: AgentMetrics | None = None) -> None:
        self.kube = kube
        self.s = settings
        self.metrics = metrics or AgentMetrics()
        self.store = Store(kube, settings.namespace, settings.name)
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._disks: dict[str, Disk] = {}
        self._quota: dict[str, bool] = {}
        self._volumes: dict[str, Obj] = {}  # our PVs on this node, by name
        self._over: set[str] = set()
        self._allocatable: dict[str, int] = {}

    # -- disks ----------------------------------------------------------------------------

    def scan(self) -> list[Disk]:
        found = []
        for path in disks.discover(self.s.root, require_mount=self.s.require_mount):
            if path.name not in self._quota:
                self._quota[path.name] = disks.quota_supported(path)
                log.info("disk %s at %s: %s", path.name, path,
                         "XFS project quotas enforce volume sizes" if self._quota[path.name]
                         else "no project quotas: usage is measured instead")
            found.append(self._steady(disks.describe(path, self._quota[path.name])))
        with self._lock:
            self._disks = {d.name: d for d in found}
        return found

    def _steady(self, raw: Disk) -> Disk:
        """What volumes may take, kept steady: a margin stays free for the file system's
        own growth (each directory costs metadata blocks), and drifts smaller than half
        the margin do not change the figure, so reservations made against it stay within
        it. Foreign files that appear or vanish move it at once."""
        margin = disks.metadata_margin(raw.size)
        fresh = max(0, raw.allocatable - margin)
        before = self._allocatable.get(raw.name)
        if before is not None and abs(fresh - before) <= margin // 2:
            fresh = before
        self._allocatable[raw.name] = fresh
        return replace(raw, allocatable=fresh)

    def report(self) -> Report:
        """Measure and publish: disks, each volume's usage, over-size volumes."""
        found = self.scan()
        volumes: dict[str, dict[str, Any]] = {}
        with self._lock:
            pvs = dict(self._volumes)
        for d in found:
            self.metrics.capacity.labels(self.s.node, d.name).set(d.allocatable)
            self.metrics.free.labels(self.s.node, d.name).set(d.free)
            self.metrics.quota.labels(self.s.node, d.name).set(int(d.quota))
            used_total, count = 0, 0
            for vdir in disks.volume_dirs(Path(d.path)):
                used = disks.usage(vdir)
                used_total += used
                count += 1
                pv = pvs.get(vdir.name)
                size = o.storage_bytes(pv["spec"]["capacity"]["storage"]) if pv else None
                volumes[vdir.name] = {"disk": d.name, "used": used, "size": size}
                if size is not None and used > size and not d.quota:
                    self._over_size(pv or {}, used, size)
                elif vdir.name in self._over:
                    self._over.discard(vdir.name)
                    self.metrics.over_size.labels(self.s.node, vdir.name).set(0)
            self.metrics.used.labels(self.s.node, d.name).set(used_total)
            self.metrics.volumes.labels(self.s.node, d.name).set(count)
        rep = Report(self.s.node, found, volumes, time.time(),
                     bool(found) and all(d.quota for d in found))
        self.store.write_report(rep)
        return rep

    def _over_size(self, pv: Obj, used: int, size: int) -> None:
        name = pv["metadata"]["name"]
        self.metrics.over_size.labels(self.s.node, name).set(1)
        if name in self._over:
            return
        self._over.add(name)
        ref = pv["spec"].get("claimRef") or {}
        log.warning("volume %s uses %d bytes, more than its %d", name, used, size)
        claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                 "metadata": {"name": ref.get("name"), "namespace": ref.get("namespace"),
                              "uid": ref.get("uid")}}
        self._send_event(claim, "VolumeOverSize",
                         f"volume {name} on {self.s.node} uses {used} bytes, more than its "
                         f"{size}; this disk has no quotas, so other volumes may run out")

    def _send_event(self, obj: Obj, reason: str, message: str) -> None:
        try:
            self.kube.create(o.event(obj, reason, message, warning=True, component=COMPONENT,
                                     now=now_iso()))
        except KubeError as exc:
            log.warning("event not recorded: %s", exc)

    # -- volumes ----------------------------------------------------------------------------

    def _disk_of(self, pv: Obj) -> Path | None:
        path = Path(pv["spec"].get("local", {}).get("path", ""))
        if path.name != pv["metadata"]["name"]:
            return None
        with self._lock:
            known = {Path(d.path) for d in self._disks.values()}
        return path.parent if path.parent in known else None

    def on_pv(self, kind: str, pv: Obj) -> None:
        name = pv["metadata"]["name"]
        if o.pv_node(pv) != self.s.node:
            return
        disk = self._disk_of(pv)
        phase = (pv.get("status") or {}).get("phase")
        if kind == "DELETED":
            with self._lock:
                self._volumes.pop(name, None)
            if disk and disks.wipe(disk, name):
                log.info("wiped %s: its PersistentVolume was deleted", name)
                self.metrics.wiped.labels("deleted").inc()
                self._dirty.set()
            return
        with self._lock:
            self._volumes[name] = pv
        if disk is None:
            log.error("PV %s points at %s, which is no disk of this agent", name,
                      pv["spec"].get("local", {}).get("path"))
            return
        if phase == "Released":
            if pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
                self._release(pv, disk)
            return  # Retain: the data stays until an admin deletes the PV
        if pv["metadata"].get("deletionTimestamp"):
            return
        uid, gid, mode = o.pv_owner(pv)
        if disks.create_volume_dir(disk / name, uid, gid, mode):
            size = o.storage_bytes(pv["spec"]["capacity"]["storage"]) or 0
            if self._quota.get(disk.name):
                try:
                    disks.set_quota(disk, disk / name, size)
                except Exception as exc:  # quota failure must not block the volume
                    log.warning("quota on %s failed: %s", name, exc)
            log.info("created %s on %s (owner %d:%d, mode %o)", name, disk.name, uid, gid, mode)
            self._dirty.set()

    def _release(self, pv: Obj, disk: Path) -> None:
        name = pv["metadata"]["name"]
        disks.wipe(disk, name)
        self.metrics.wiped.labels("released").inc()
        log.info("wiped %s (released, reclaim policy Delete); deleting its PV", name)
        self.kube.delete("v1", "PersistentVolume", name, propagation="Background")
        self._dirty.set()

    def sweep(self) -> list[str]:
        """Wipe volume directories that no PersistentVolume names any more (a volume
        deleted while this agent was down, or released when its node was lost)."""
        pvs = {pv["metadata"]["name"] for pv in self.kube.list_objects(
            "v1", "PersistentVolume",
            label_selector=f"{o.LABEL_PROVISIONER}={self.s.name},{o.LABEL_NODE}={self.s.node}")}
        wiped = []
        with self._lock:
            paths = [Path(d.path) for d in self._disks.values()]
        for disk in paths:
            for vdir in disks.volume_dirs(disk):
                if vdir.name not in pvs:
                    log.warning("wiping orphan %s on %s: no PersistentVolume names it",
                                vdir.name, disk.name)
                    disks.wipe(disk, vdir.name)
                    self.metrics.wiped.labels("orphan").inc()
                    wiped.append(vdir.name)
        return wiped

    # -- running ---------------------------------------------------------------------------

    def _reporter(self) -> None:
        next_full = 0.0
        while not self.stop.is_set():
            self._dirty.wait(0.5)
            if self.stop.is_set():
                return
            if self._dirty.is_set() or time.monotonic() >= next_full:
                self._dirty.clear()
                try:
                    self.report()
                except (KubeError, OSError) as exc:
                    log.warning("report failed: %s", exc)
                next_full = time.monotonic() + self.s.resync
                # At most one report a second or so: a burst of volumes is one report
                # (the controller does not wait for them; status and metrics do).
                self.stop.wait(min(2.0, self.s.resync))

    def run(self) -> None:
        previous = self.store.reports().get(self.s.node)
        for d in previous.disks if previous else []:  # steady across restarts too
            self._allocatable[d.name] = d.allocatable
        found = self.scan()
        if not found:
            log.warning("no disks under %s (each disk must be a mount point there)",
                        self.s.root)
        self.report()
        self.sweep()
        threading.Thread(target=self._reporter, daemon=True, name="reporter").start()
        # The watch blocks in a read; it runs beside the main thread, which only waits
        # for the stop signal.
        threading.Thread(target=watch_forever, daemon=True, name="watch", args=(
            self.kube, "v1", "PersistentVolume", self.on_pv, self.stop), kwargs={
            "label_selector": f"{o.LABEL_PROVISIONER}={self.s.name},"
                              f"{o.LABEL_NODE}={self.s.node}"}).start()
        self.stop.wait()
