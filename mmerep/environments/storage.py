"""The StorageClasses an environment's volumes name must exist before it is deployed:
a claim of a missing class stays Pending for ever, and its pod with it (a rollout that
never ends, rolled back after the timeout), where one line up front says what to do."""

from __future__ import annotations

from mmerep.environments.model import Obj, Rendered
from mmerep.errors import UsageError
from mmerep.kube import Kube


def claimed_storage_classes(objects: list[Obj]) -> dict[str, list[str]]:
    """StorageClass name -> the objects (Kind/name) whose volumes claim it."""
    out: dict[str, list[str]] = {}
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        specs = []
        if obj["kind"] == "PersistentVolumeClaim":
            specs.append(obj.get("spec") or {})
        template = (obj.get("spec") or {}).get("template") or {}
        for vol in (template.get("spec") or {}).get("volumes") or []:
            claim = ((vol.get("ephemeral") or {}).get("volumeClaimTemplate") or {})
            if claim:
                specs.append(claim.get("spec") or {})
        for vct in (obj.get("spec") or {}).get("volumeClaimTemplates") or []:
            specs.append(vct.get("spec") or {})
        for spec in specs:
            cls = spec.get("storageClassName")
            if cls:
                out.setdefault(cls, []).append(where)
    return out


def check_storage_classes(kube: Kube, rendered: Rendered) -> None:
    """UsageError naming the first StorageClass the cluster lacks, and the way out."""
    for cls, users in sorted(claimed_storage_classes(rendered.objects).items()):
        if kube.get("storage.k8s.io/v1", "StorageClass", cls) is None:
            raise UsageError(
                f"{rendered.env_name}: {', '.join(sorted(set(users)))} claim(s) volumes of "
                f"StorageClass {cls}, which this cluster does not have",
                hint="install the local-SSD provisioner with: mme-rep provisioner install -F "
                "PROFILE; or set scratch_volume: false in the profile (scratch and "
                "synclocal's cache then stay emptyDirs)")
