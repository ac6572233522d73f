"""The provisioner's records in the API: each node's ledger (reservations, written with its
resourceVersion so a stale writer loses), each agent's disk report, and the Lease.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mmerep.errors import KubeConflict, KubeNotFound
from mmerep.kube import Kube
from provisioner.ledger import (
    Disk,
    NodeLedger,
    disks_data,
    disks_from_data,
    ledger_data,
    ledger_from_data,
)
from provisioner.objects import LABEL_NODE, LABEL_PROVISIONER, short_hash

Obj = dict[str, Any]
LEDGER_PREFIX = "local-ssd-ledger-"
REPORT_PREFIX = "local-ssd-disks-"


def now_iso(micro: bool = False) -> str:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.now(UTC).strftime(fmt)


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def cm_name(prefix: str, node: str) -> str:
    name = f"{prefix}{node}"
    return name if len(name) <= 253 else f"{name[:240]}-{short_hash(node)}"


@dataclass
class Report:
    """What one node's agent last said: its disks and its volumes' usage."""

    node: str
    disks: list[Disk]
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    heartbeat: float = 0.0
    quota: bool = False


def report_from_configmap(cm: Obj) -> Report | None:
    data = cm.get("data") or {}
    node = data.get("node")
    if not node:
        return None
    return Report(node, disks_from_data(data.get("disks")),
                  json.loads(data.get("volumes") or "{}"),
                  float(data.get("heartbeat") or 0), data.get("quota") == "true")


class Store:
    def __init__(self, kube: Kube, namespace: str, provisioner: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.provisioner = provisioner

    def _path(self, name: str | None = None) -> str:
        base = f"/api/v1/namespaces/{self.namespace}/configmaps"
        return f"{base}/{name}" if name else base

    # -- ledgers -----------------------------------------------------------------------

    def read_ledger(self, node: str) -> tuple[NodeLedger, str | None]:
        try:
            cm = self.kube.request("GET", self._path(cm_name(LEDGER_PREFIX, node)),
                                   what=f"read the ledger of {node}")
        except KubeNotFound:
            return NodeLedger(node), None
        return ledger_from_data(node, cm.get("data")), cm["metadata"]["resourceVersion"]

    def write_ledger(self, ledger: NodeLedger, version: str | None) -> str:
        """Write the ledger if nobody else did since ``version``; KubeConflict otherwise.

        Returns the new resourceVersion.
        """
        body: Obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": cm_name(LEDGER_PREFIX, ledger.node), "namespace": self.namespace,
            "labels": {LABEL_PROVISIONER: self.provisioner, "app.kubernetes.io/component":
                       "ledger"}, "annotations": {LABEL_NODE: ledger.node}},
            "data": ledger_data(ledger)}
        if version is None:
            # Creating fails with 409 AlreadyExists when another writer was first.
            out = self.kube.request("POST", self._path(), body=body,
                                    what=f"create the ledger of {ledger.node}")
        else:
            body["metadata"]["resourceVersion"] = version
            out = self.kube.request("PUT", self._path(body["metadata"]["name"]), body=body,
                                    what=f"update the ledger of {ledger.node}")
        return str(out["metadata"]["resourceVersion"])

    def delete_ledger(self, node: str, version: str | None) -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1",
                "preconditions": {"resourceVersion": version}}
        with contextlib.suppress(KubeNotFound):
            self.kube.request("DELETE", self._path(cm_name(LEDGER_PREFIX, node)), body=body,
                              what=f"delete the ledger of {node}")

    def ledgers(self) -> dict[str, tuple[NodeLedger, str]]:
        out = {}
        for cm in self.kube.list_objects("v1", "ConfigMap", self.namespace,
                                         label_selector="app.kubernetes.io/component=ledger,"
                                         f"{LABEL_PROVISIONER}={self.provisioner}"):
            node = cm["data"].get("node") if cm.get("data") else None
            if node:
                out[node] = (ledger_from_data(node, cm["data"]),
                             cm["metadata"]["resourceVersion"])
        return out

    # -- agent reports -------------------------------------------------------------------

    def report_selector(self) -> str:
        return f"app.kubernetes.io/component=disk-report,{LABEL_PROVISIONER}={self.provisioner}"

    def write_report(self, report: Report) -> None:
        self.kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": cm_name(REPORT_PREFIX, report.node), "namespace": self.namespace,
            "labels": {LABEL_PROVISIONER: self.provisioner,
                       "app.kubernetes.io/component": "disk-report"}},
            "data": {"node": report.node, "disks": disks_data(report.disks),
                     "volumes": json.dumps(report.volumes, sort_keys=True),
                     "heartbeat": f"{report.heartbeat:.3f}",
                     "quota": "true" if report.quota else "false"}},
            force=True, compare=False)

    def reports(self) -> dict[str, Report]:
        out = {}
        for cm in self.kube.list_objects("v1", "ConfigMap", self.namespace,
                                         label_selector=self.report_selector()):
            rep = report_from_configmap(cm)
            if rep:
                out[rep.node] = rep
        return out

    def delete_report(self, node: str) -> None:
        self.kube.delete("v1", "ConfigMap", cm_name(REPORT_PREFIX, node), self.namespace,
                         propagation="Background")


class Lease:
    """Leader election with a coordination.k8s.io Lease: take it when free or expired,
    renew it while leading; every write carries the resourceVersion it read."""

    def __init__(self, kube: Kube, namespace: str, name: str, identity: str,
                 duration: float = 15.0) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

    def try_acquire(self) -> bool:
        """Take or renew the lease; True while we hold it."""
        now = now_iso(micro=True)
        try:
            lease = self.kube.request("GET", f"{self.path}/{self.name}",
                                      what=f"read lease {self.name}")
        except KubeNotFound:
            lease = None
        spec_new = {"holderIdentity": self.identity,
                    "leaseDurationSeconds": max(1, round(self.duration)),
                    "acquireTime": now, "renewTime": now, "leaseTransitions": 0}
        try:
            if lease is None:
                self.kube.request("POST", self.path, body={
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": spec_new}, what=f"create lease {self.name}")
                return True
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity")
            renewed = parse_time(spec.get("renewTime")) or 0.0
            expired = time.time() > renewed + float(spec.get("leaseDurationSeconds") or 0)
            if holder and holder != self.identity and not expired:
                return False
            if holder == self.identity:
                spec_new["acquireTime"] = spec.get("acquireTime") or now
                spec_new["leaseTransitions"] = spec.get("leaseTransitions") or 0
            else:
                spec_new["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + 1
            lease["spec"] = spec_new
            self.kube.request("PUT", f"{self.path}/{self.name}", body=lease,
                              what=f"take lease {self.name}")
            return True
        except KubeConflict:
            return False  # someone else wrote it in between

    def holder(self) -> str | None:
        try:
            lease = self.kube.request("GET", f"{self.path}/{self.name}")
        except KubeNotFound:
            return None
        return (lease.get("spec") or {}).get("holderIdentity")

    def release(self) -> None:
        try:
            lease = self.kube.request("GET", f"{self.path}/{self.name}")
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["leaseDurationSeconds"] = 1
                self.kube.request("PUT", f"{self.path}/{self.name}", body=lease)
        except (KubeNotFound, KubeConflict):
            pass
