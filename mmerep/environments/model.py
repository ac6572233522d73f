"""What an environment is made of: the rendered objects, the labels that find them, results."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmerep.kube import WorkloadStatus

Obj = dict[str, Any]
RECORD_LABEL = "mme-rep/record"
PSA_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
}
# What an environment can consist of; listed so delete and prune find every part.
MANAGED_KINDS = (
    ("apps/v1", "Deployment"), ("apps/v1", "DaemonSet"), ("apps/v1", "StatefulSet"),
    ("v1", "Service"), ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("networking.k8s.io/v1", "NetworkPolicy"), ("networking.k8s.io/v1", "Ingress"),
    ("v1", "PersistentVolumeClaim"), ("policy/v1", "PodDisruptionBudget"),
)
CLUSTER_KINDS = (
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("scheduling.k8s.io/v1", "PriorityClass"),
)
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet")

# Called with every workload's status each time a rollout is polled.
OnWorkloadStatuses = Callable[[list[WorkloadStatus]], None]
# Called once with the (action, object) pairs a deploy is about to change.
OnPlan = Callable[[list[tuple[str, str]]], None]


@dataclass
class Rendered:
    """A fully rendered environment: objects ready to apply, plus what produced them."""

    env_name: str
    namespace: str
    template: str
    image: str
    params: dict[str, Any]
    objects: list[Obj]
    workloads: tuple[str, ...] = ()
    secrets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    web: dict[str, Any] = field(default_factory=dict)
    explicit: tuple[str, ...] = ()  # parameters the operator set (not defaults)
    # workload (Kind/name) -> the parameters vscale set on it and still owns (vscaled.py)
    owned: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def workload_objects(self) -> list[Obj]:
        return [o for o in self.objects if o["kind"] in WORKLOAD_KINDS]


@dataclass
class DeployResult:
    action: str  # "installed", "upgraded", "unchanged", "rolled-back", "removed"
    revision: int
    changes: list[tuple[str, str]] = field(default_factory=list)  # (action, object)
    kept: list[str] = field(default_factory=list)  # what a vscale set, kept (one line each)


def kind_and_name(obj: Obj) -> str:
    """``Kind/name``, as the plan and the delete summary show an object (no namespace:
    an environment lives in one)."""
    return f"{obj['kind']}/{obj['metadata']['name']}"


def selector(env_name: str) -> str:
    """The label selector of every part of an environment."""
    return f"app.kubernetes.io/instance={env_name},app.kubernetes.io/managed-by=mme-rep"


SUMMARY_ANNOTATION = "mme-rep/summary"
STATUS_ANNOTATION = "mme-rep/status"  # mmerep.revisions.STATUS_ANNOTATION: it writes it


def record_summary(record: Obj) -> dict[str, Any] | None:
    """Revision, template, status, image and time of a record from its metadata alone;
    None for a record written before they were kept there (read its data instead)."""
    meta = record["metadata"]
    notes, labels = meta.get("annotations") or {}, meta.get("labels") or {}
    try:
        summary = json.loads(notes[SUMMARY_ANNOTATION])
        return {"revision": int(labels["mme-rep/revision"]),
                "template": labels["mme-rep/template"],
                "status": notes[STATUS_ANNOTATION],
                "image": summary["image"], "time": summary["time"]}
    except (KeyError, ValueError, TypeError):
        return None
