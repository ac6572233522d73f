"""What ``mme-rep provisioner status`` shows: per node and disk, size, what volumes may
take, reserved, used and volumes; and who leads. Built from the API's records."""

from __future__ import annotations

import time
from typing import Any

from mmerep.kube import Kube
from provisioner import objects as o
from provisioner.ledger import NodeLedger
from provisioner.store import Lease, Report, Store


def disk_rows(reports: dict[str, Report], ledgers: dict[str, NodeLedger],
              now: float) -> list[dict[str, Any]]:
    rows = []
    for node in sorted(set(reports) | set(ledgers)):
        rep = reports.get(node)
        ledger = (ledgers.get(node) or NodeLedger(node)).with_disks(rep.disks if rep else [])
        disk_names = sorted(set(ledger.disks) | {r.disk for r in ledger.reservations.values()})
        for disk in disk_names:
            d = ledger.disks.get(disk)
            vols = {n: v for n, v in (rep.volumes if rep else {}).items()
                    if v.get("disk") == disk}
            rows.append({
                "node": node, "disk": disk, "path": d.path if d else None,
                "size": d.size if d else None,
                "allocatable": d.allocatable if d else None,
                "reserved": ledger.reserved(disk),
                # Set-aside bytes are the leader's, for claims to come: still available.
                "available": d.allocatable - ledger.reserved(disk) if d else None,
                "set_aside": ledger.ahead.get(disk, 0),
                "used": sum(v.get("used", 0) for v in vols.values()),
                "volumes": sum(1 for r in ledger.reservations.values() if r.disk == disk),
                "quota": d.quota if d else None,
                "agent_age": round(now - rep.heartbeat, 1) if rep else None,
            })
    return rows


def status(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    store = Store(kube, namespace, name)
    # Five independent reads, over at most three connections (each one a TLS handshake).
    reports, ledgers_read, pvs, all_classes, leader = kube.map(lambda read: read(), [
        store.reports, store.ledgers,
        lambda: kube.list_objects("v1", "PersistentVolume",
                                  label_selector=f"{o.LABEL_PROVISIONER}={name}"),
        lambda: kube.list_objects("storage.k8s.io/v1", "StorageClass"),
        Lease(kube, namespace, f"{name}-controller", "").holder], workers=3)
    ledgers = {n: led for n, (led, _) in ledgers_read.items()}
    phases: dict[str, int] = {}
    for pv in pvs:
        phase = (pv.get("status") or {}).get("phase", "Pending")
        phases[phase] = phases.get(phase, 0) + 1
    classes = [sc["metadata"]["name"] for sc in all_classes if sc.get("provisioner") == name]
    return {
        "provisioner": name, "namespace": namespace,
        "leader": leader,
        "storage_classes": sorted(classes),
        "volumes": phases,
        "disks": disk_rows(reports, ledgers, time.time()),
    }
