"""Who owns a workload's replica count: the HorizontalPodAutoscaler pattern.

The deploy applies ``spec.replicas`` from the template only until anything else (the
scaler, ``kubectl scale``, an HPA) has set it; from then on it leaves the field out, so a
new image neither resets the count nor hits a field conflict, and a rollback never undoes
a scale. A parameter the operator sets explicitly (``--set executors=N``) still wins,
written through the scale subresource.
"""

from __future__ import annotations

from mmerep.environments.model import Obj, Rendered
from mmerep.kube import FIELD_MANAGER, Kube

# On a workload: the template parameter that sets its replicas (e.g. "executors").
REPLICAS_PARAM = "mme-rep/replicas-param"


def replicas_owned_elsewhere(live: Obj) -> bool:
    """True once anything but our own apply has set ``spec.replicas``."""
    for entry in live.get("metadata", {}).get("managedFields") or []:
        fields = entry.get("fieldsV1", {}).get("f:spec", {})
        if "f:replicas" in fields and not (entry.get("manager") == FIELD_MANAGER
                                           and entry.get("operation") == "Apply"):
            return True
    return False


def settle_replicas(kube: Kube, rendered: Rendered, *,
                    live: dict[tuple[str, str], Obj] | None = None,
                    ) -> tuple[list[Obj], list[tuple[str, int]]]:
    """The objects to apply, without ``spec.replicas`` where someone else owns it, and the
    workloads to scale because the operator set their parameter explicitly. ``live``: the
    environment's objects as just read, by (kind, name), to save a request."""
    objects, rescale = [], []
    for obj in rendered.objects:
        param = obj["metadata"].get("annotations", {}).get(REPLICAS_PARAM)
        if not param or "replicas" not in obj.get("spec", {}):
            objects.append(obj)
            continue
        key = (obj["kind"], obj["metadata"]["name"])
        current = live.get(key) if live is not None else kube.get(
            obj["apiVersion"], key[0], key[1], rendered.namespace)
        if current is None or not replicas_owned_elsewhere(current):
            objects.append(obj)
            continue
        objects.append({**obj, "spec": {k: v for k, v in obj["spec"].items()
                                        if k != "replicas"}})
        wanted = rendered.params.get(param)
        if param in rendered.explicit and isinstance(wanted, int) \
                and current["spec"].get("replicas") != wanted:
            rescale.append((obj["metadata"]["name"], wanted))
    return objects, rescale
