"""The live parts of an environment: finding them, pruning what a revision dropped,
deleting them all."""

from __future__ import annotations

from mmerep import envlock
from mmerep.environments.model import (
    CLUSTER_KINDS,
    MANAGED_KINDS,
    RECORD_LABEL,
    Obj,
    Rendered,
    kind_and_name,
    selector,
)
from mmerep.errors import UsageError
from mmerep.kube import Kube
from mmerep.sshkeys import KEPT_LABEL


def live_parts(kube: Kube, namespace: str, env_name: str,
               kinds: tuple[tuple[str, str], ...] | None = None) -> list[Obj]:
    """Every object of the environment now in the cluster (records included), or only
    those of ``kinds`` (apiVersion, kind)."""
    namespaced = selector(env_name)
    cluster_wide = f"{namespaced},mme-rep/namespace={namespace}"

    def parts_of(kind: tuple[str, str]) -> list[Obj]:
        if kind in CLUSTER_KINDS:
            return kube.list_objects(kind[0], kind[1], label_selector=cluster_wide)
        return kube.list_objects(kind[0], kind[1], namespace, label_selector=namespaced)

    found: list[list[Obj]] = kube.map(parts_of, list(kinds or (*MANAGED_KINDS, *CLUSTER_KINDS)),
                                      workers=16)
    return [obj for objs in found for obj in objs]


def prunable(rendered: Rendered, parts: list[Obj]) -> list[Obj]:
    """The parts ``prune`` would delete: not in ``rendered``, not a record, secret or PVC."""
    keep = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects}
    return [obj for obj in parts
            if (obj["kind"], obj["metadata"]["name"]) not in keep
            and not obj["metadata"].get("labels", {}).get(RECORD_LABEL)
            and not obj["metadata"].get("labels", {}).get(KEPT_LABEL)
            and obj["kind"] not in ("Secret", "PersistentVolumeClaim")]


def prune(kube: Kube, rendered: Rendered, parts: list[Obj] | None = None) -> None:
    """Delete parts a previous revision had and this one has not (records and secret stay).

    ``parts``: the environment's objects as listed before this revision was applied.
    """
    if parts is None:
        parts = live_parts(kube, rendered.namespace, rendered.env_name)
    for obj in prunable(rendered, parts):
        kube.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"],
                    obj["metadata"].get("namespace"), propagation="Background")


def delete_environment(kube: Kube, namespace: str, env_name: str, *, purge: bool = False,
                       wait: bool = True, timeout: float = 120.0, lock_wait: float = 0.0
                       ) -> list[str]:
    """Delete every part; data volumes (PVCs) stay unless ``purge``. Returns what went."""
    if kube.get("v1", "Namespace", namespace) is None:  # durability: no namespace, no lock
        raise UsageError(f"environment {env_name} not found in namespace {namespace}",
                         hint="mme-rep env list shows what is deployed")
    with envlock.hold(kube, namespace, env_name, "delete", wait=lock_wait):  # durability
        return _delete_locked(kube, namespace, env_name, purge=purge, wait=wait,
                              timeout=timeout)


def _delete_locked(kube: Kube, namespace: str, env_name: str, *, purge: bool, wait: bool,
                   timeout: float) -> list[str]:
    parts = [o for o in live_parts(kube, namespace, env_name)
             if purge or o["kind"] != "PersistentVolumeClaim"]
    if not parts:
        raise UsageError(f"environment {env_name} not found in namespace {namespace}",
                         hint="mme-rep env list shows what is deployed")
    kube.delete_all(parts)
    if wait:
        kube.wait_gone(parts, timeout=timeout)
    return [kind_and_name(o) for o in parts]
