"""One workload changed outside a deploy (``vscale``), recorded as a revision of its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NoReturn

from mmerep import envlock
from mmerep.environments.deploy_flow import with_revision
from mmerep.environments.events import latest_warning
from mmerep.environments.model import Obj, OnWorkloadStatuses, Rendered
from mmerep.environments.records import (
    build_record,
    live_record,
    read_records,
    rendered_from_record,
)
from mmerep.environments.replicas import settle_replicas
from mmerep.errors import KubeError, KubeTimeout, UsageError
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
    live = live_record(records) or records[-1]
    current = rendered_from_record(live)
    found = [o for o in current.objects if (o["kind"], o["metadata"]["name"]) == (kind, name)]
    if not found:
        raise UsageError(f"{kind}/{name} is not part of environment {env_name}")
    changed = change(found[0])
    revision = int(records[-1]["data"]["revision"]) + 1
    updated = dataclasses.replace(  # the parameters are vscale's now (see vscaled.py)
        current, params={**current.params, **params},
        objects=[changed if o is found[0] else o for o in current.objects],
        owned={**current.owned, f"{kind}/{name}": tuple(sorted(params))})
    settled, _ = settle_replicas(kube, dataclasses.replace(updated, objects=[changed]))
    kube.apply(with_revision(settled, revision)[0], compare=False)
    try:
        kube.wait_for([changed], timeout=timeout, on_progress=on_progress)
    except KubeTimeout as exc:
        _undo(kube, current, found[0], updated, (revision, int(live["data"]["revision"])),
              note, exc, timeout)
    kube.create(build_record(updated, revision, "deployed", note))
    return revision


def _undo(kube: Kube, current: Rendered, before: Obj, updated: Rendered,
          revisions: tuple[int, int], note: str, exc: KubeTimeout, timeout: float
          ) -> NoReturn:
    """A change that did not become ready: record it as failed, put the workload back as
    the live revision has it (still that revision), and say so."""
    try:
        reason = exc.message + latest_warning(kube, updated)
    except KubeError:  # the in-pod scaler may not read events
        reason = exc.message
    revision, live = revisions
    kube.create(build_record(updated, revision, "failed", f"{note}: {reason}"))
    settled, _ = settle_replicas(kube, dataclasses.replace(current, objects=[before]))
    kube.apply(with_revision(settled, live)[0], compare=False)
    kube.wait_for([before], timeout=timeout)
    raise KubeTimeout(f"{note} failed: {reason}; undone, revision {live} is live again",
                      hint="choose a size the nodes can hold (mme-rep env status shows "
                      "them)") from exc
