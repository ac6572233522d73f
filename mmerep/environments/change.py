"""One workload changed outside a deploy (``vscale``), recorded as a revision of its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mmerep import envlock
from mmerep.environments.deploy_flow import with_revision
from mmerep.environments.model import Obj, OnWorkloadStatuses
from mmerep.environments.records import build_record, read_records, rendered_from_record
from mmerep.environments.replicas import settle_replicas
from mmerep.errors import UsageError
from mmerep.kube import Kube


def record_workload_change(kube: Kube, namespace: str, env_name: str, kind: str, name: str,
                           change: Callable[[Obj], Obj], params: dict[str, Any], note: str, *,
                           timeout: float = 600.0,
                           on_progress: OnWorkloadStatuses | None = None,
                           lock_wait: float = 30.0) -> int:
    """Change one workload of the current revision (e.g. vscale) and record the result as a
    new revision, so history shows it and rollback restores the previous one.

    Needs only what the in-pod scaler may do: list and create ConfigMaps, get and patch
    the workload, and hold the environment's lease. The record is created once the roll
    is done, as "deployed" (it cannot relabel the older one; ``history`` shows that one
    superseded, and the next deploy marks it so).
    """
    # One change per environment at a time (a deploy may be running).
    with envlock.hold(kube, namespace, env_name, note, wait=lock_wait):
        return _change_locked(kube, namespace, env_name, kind, name, change, params, note,
                              timeout=timeout, on_progress=on_progress)


def _change_locked(kube: Kube, namespace: str, env_name: str, kind: str, name: str,
                   change: Callable[[Obj], Obj], params: dict[str, Any], note: str, *,
                   timeout: float, on_progress: OnWorkloadStatuses | None) -> int:
    records = read_records(kube, namespace, env_name)
    if not records:
        raise UsageError(f"environment {env_name} not found in namespace {namespace}",
                         hint="mme-rep env list shows what is deployed")
    current = rendered_from_record(records[-1])
    found = [o for o in current.objects if (o["kind"], o["metadata"]["name"]) == (kind, name)]
    if not found:
        raise UsageError(f"{kind}/{name} is not part of environment {env_name}")
    changed = change(found[0])
    revision = int(records[-1]["data"]["revision"]) + 1
    updated = dataclasses.replace(
        current, params={**current.params, **params},
        objects=[changed if o is found[0] else o for o in current.objects])
    settled, _ = settle_replicas(kube, dataclasses.replace(updated, objects=[changed]))
    kube.apply(with_revision(settled, revision)[0], compare=False)
    kube.wait_for([changed], timeout=timeout, on_progress=on_progress)
    kube.create(build_record(updated, revision, "deployed", note))
    return revision
