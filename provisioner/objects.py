"""Every Kubernetes object the provisioner writes, built by pure functions, and the checks
of claims and classes (no cluster needed to test any of it).

The provisioner's name is also its CSIDriver's name, so it must be a DNS subdomain
(``local-ssd.mme-rep.io``): the scheduler looks up the CSIDriver under the class's
provisioner to decide whether it should consult the published capacity, and CSIDriver
names cannot contain the ``/`` of ``mme-rep.io/local-ssd``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from provisioner import DEFAULT_NAME

Obj = dict[str, Any]

GROUP = "local-ssd.mme-rep.io"
LABEL_NODE = f"{GROUP}/node"
LABEL_PROVISIONER = f"{GROUP}/provisioner"
ANN_DISK = f"{GROUP}/disk"
ANN_OWNER = f"{GROUP}/owner"
ANN_RECREATED_FROM = f"{GROUP}/recreated-from"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
HOSTNAME_LABEL = "kubernetes.io/hostname"

# The class parameters we understand; anything else is reported on the claim.
CLASS_PARAMETERS = {"uid", "gid", "mode"}
ACCESS_MODES = {"ReadWriteOnce", "ReadWriteOncePod"}
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]?")
_QUANTITY = re.compile(r"(?P<num>[0-9]+(\.[0-9]+)?)(?P<unit>Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
          "E": 10**18, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
          "Pi": 1 << 50, "Ei": 1 << 60}


def valid_name(name: str) -> str | None:
    """Why ``name`` cannot name a provisioner (and its CSIDriver), or None."""
    if len(name) > 63 or not _DNS_SUBDOMAIN.fullmatch(name):
        return (f"provisioner name '{name}' must be a DNS subdomain of at most 63 characters "
                f"(lower case, digits, '-' and '.'), e.g. {DEFAULT_NAME}")
    return None


def storage_bytes(value: Any) -> int | None:
    """A storage quantity in bytes (rounded up), or None when it is none we take."""
    match = _QUANTITY.fullmatch(str(value).strip()) if value is not None else None
    if match is None:
        return None
    num = match["num"]
    whole, _, frac = num.partition(".")
    unit = _UNITS[match["unit"]]
    total = int(whole) * unit
    if frac:
        total += -(-int(frac) * unit // 10 ** len(frac))
    return total


def claim_key(claim: Obj) -> str:
    meta = claim["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def pv_name(claim_uid: str) -> str:
    return f"pvc-{claim_uid}"


def short_hash(text: str, size: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


@dataclass(frozen=True)
class ClassOptions:
    """What a StorageClass of ours asks for, once its parameters are checked."""

    name: str
    reclaim_policy: str
    uid: int
    gid: int
    mode: int
    wait_for_consumer: bool
    mount_options: tuple[str, ...] = ()


def class_options(storage_class: Obj) -> tuple[ClassOptions | None, str | None]:
    """The class's options, or the reason it cannot be used (for the claim's event)."""
    name = storage_class["metadata"]["name"]
    params = {str(k): str(v) for k, v in (storage_class.get("parameters") or {}).items()}
    unknown = sorted(set(params) - CLASS_PARAMETERS)
    if unknown:
        return None, (f"StorageClass {name} has unknown parameter(s) {', '.join(unknown)}; "
                      f"allowed: {', '.join(sorted(CLASS_PARAMETERS))}")
    try:
        uid = int(params.get("uid", "1000"))
        gid = int(params.get("gid", str(uid)))
        mode = int(params.get("mode", "2770"), 8)
    except ValueError:
        return None, (f"StorageClass {name}: uid and gid must be integers and mode an octal "
                      f"number like 2770 (got {params})")
    if uid < 0 or gid < 0 or not 0 <= mode <= 0o7777:
        return None, f"StorageClass {name}: uid/gid must be >= 0 and mode at most 7777"
    wffc = storage_class.get("volumeBindingMode", "Immediate") == "WaitForFirstConsumer"
    return ClassOptions(name, storage_class.get("reclaimPolicy") or "Delete", uid, gid, mode,
                        wffc, tuple(storage_class.get("mountOptions") or ())), None


def claim_problem(claim: Obj, largest_disk: int | None) -> str | None:
    """Why the claim can never be provisioned by us (bad input), or None.

    ``largest_disk`` is the biggest single disk any agent reports (None: none known yet).
    """
    spec = claim.get("spec", {})
    if spec.get("volumeMode", "Filesystem") == "Block":
        return "volumeMode Block is not offered: local-ssd volumes are directories; " \
               "use volumeMode: Filesystem"
    modes = set(spec.get("accessModes") or [])
    bad = sorted(modes - ACCESS_MODES)
    if bad or not modes:
        return (f"access mode(s) {', '.join(bad) or 'none'} cannot be given by a node-local "
                "volume; use ReadWriteOnce")
    if spec.get("dataSource") or spec.get("dataSourceRef"):
        return "claims from a data source (snapshot or clone) are not offered"
    if spec.get("selector"):
        return "a label selector on a dynamically provisioned claim is not offered; remove it"
    raw = (spec.get("resources") or {}).get("requests", {}).get("storage")
    size = storage_bytes(raw)
    if size is None:
        return f"requested storage '{raw}' is not a quantity; ask for e.g. 10Gi"
    if size <= 0:
        return "the claim requests 0 bytes; ask for the space the job needs, e.g. 10Gi"
    if largest_disk is not None and size > largest_disk:
        return (f"the claim asks for {size} bytes but the largest local disk has "
                f"{largest_disk}; ask for less or use the bulk tier")
    return None


def claim_size(claim: Obj) -> int:
    return storage_bytes(claim["spec"]["resources"]["requests"]["storage"]) or 0


def persistent_volume(claim: Obj, opts: ClassOptions, node: str, disk: str, disk_path: str,
                      provisioner: str = DEFAULT_NAME) -> Obj:
    """The ``local`` PV for ``claim`` on ``node``'s ``disk``, pre-bound to the claim."""
    meta = claim["metadata"]
    name = pv_name(meta["uid"])
    pv: Obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "labels": {LABEL_NODE: node, LABEL_PROVISIONER: provisioner},
            "annotations": {ANN_PROVISIONED_BY: provisioner, ANN_DISK: disk,
                            ANN_OWNER: f"{opts.uid}:{opts.gid}:{opts.mode:o}"},
        },
        "spec": {
            "capacity": {"storage": str(claim_size(claim))},
            "accessModes": list(claim["spec"]["accessModes"]),
            "persistentVolumeReclaimPolicy": opts.reclaim_policy,
            "storageClassName": opts.name,
            "volumeMode": "Filesystem",
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": meta["namespace"], "name": meta["name"],
                         "uid": meta["uid"]},
            "local": {"path": f"{disk_path.rstrip('/')}/{name}"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}},
        },
    }
    if opts.mount_options:
        pv["spec"]["mountOptions"] = list(opts.mount_options)
    return pv


def pv_node(pv: Obj) -> str | None:
    return (pv.get("metadata", {}).get("labels") or {}).get(LABEL_NODE)


def pv_owner(pv: Obj) -> tuple[int, int, int]:
    raw = (pv["metadata"].get("annotations") or {}).get(ANN_OWNER, "1000:1000:2770")
    uid, gid, mode = raw.split(":")
    return int(uid), int(gid), int(mode, 8)


def storage_class(name: str, reclaim_policy: str = "Delete",
                  provisioner: str = DEFAULT_NAME, *, uid: int = 1000, gid: int = 1000,
                  default: bool = False) -> Obj:
    """A local-SSD class: WaitForFirstConsumer, so the scheduler picks the node first."""
    if reclaim_policy not in ("Delete", "Retain"):
        raise ValueError(f"reclaim policy must be Delete or Retain, not {reclaim_policy}")
    sc: Obj = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "labels": {LABEL_PROVISIONER: provisioner}},
        "provisioner": provisioner,
        "reclaimPolicy": reclaim_policy,
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": False,
        "parameters": {"uid": str(uid), "gid": str(gid)},
    }
    if default:
        sc["metadata"]["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    return sc


def csi_driver(provisioner: str = DEFAULT_NAME) -> Obj:
    """Registers the provisioner's name so the scheduler honours its published capacity.

    No CSI node plugin exists: the PVs are ``local`` volumes; the object only switches
    on storage-capacity tracking for claims of our classes.
    """
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIDriver",
        "metadata": {"name": provisioner, "labels": {LABEL_PROVISIONER: provisioner}},
        "spec": {"attachRequired": False, "podInfoOnMount": False, "storageCapacity": True,
                 "volumeLifecycleModes": ["Persistent"], "fsGroupPolicy": "None"},
    }


def capacity_name(class_name: str, node: str) -> str:
    base = f"{class_name}-{node}"
    if len(base) <= 240:
        return base
    return f"{base[:230]}-{short_hash(base)}"


def storage_capacity(class_name: str, node: str, available: int, largest: int,
                     namespace: str, provisioner: str = DEFAULT_NAME) -> Obj:
    """What ``node`` can still give to claims of ``class_name``: the scheduler compares a
    claim's request with ``maximumVolumeSize`` (the largest free space on one disk)."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIStorageCapacity",
        "metadata": {"name": capacity_name(class_name, node), "namespace": namespace,
                     "labels": {LABEL_PROVISIONER: provisioner, LABEL_NODE: node}},
        "storageClassName": class_name,
        "nodeTopology": {"matchLabels": {HOSTNAME_LABEL: node}},
        "capacity": str(max(0, available)),
        "maximumVolumeSize": str(max(0, largest)),
    }


def event(claim: Obj, reason: str, message: str, *, warning: bool, component: str,
          now: str) -> Obj:
    """A core/v1 Event on ``claim`` (kubectl describe shows it)."""
    meta = claim["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": claim.get("apiVersion", "v1"),
                           "kind": claim.get("kind", "PersistentVolumeClaim"),
                           "name": meta["name"], "namespace": meta.get("namespace"),
                           "uid": meta.get("uid"),
                           "resourceVersion": meta.get("resourceVersion")},
        "reason": reason,
        "message": message[:1000],
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def without_selected_node(claim: Obj) -> Obj:
    """The merge patch that hands a claim back to the scheduler."""
    return {"metadata": {"annotations": {ANN_SELECTED_NODE: None},
                         "resourceVersion": claim["metadata"].get("resourceVersion")}}


def recreated_claim(claim: Obj) -> Obj:
    """A fresh copy of a claim whose volume was lost, to be scheduled anew."""
    meta = claim["metadata"]
    drop = {ANN_SELECTED_NODE, "pv.kubernetes.io/bind-completed",
            "pv.kubernetes.io/bound-by-controller", ANN_STORAGE_PROVISIONER,
            ANN_BETA_STORAGE_PROVISIONER}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in drop}
    annotations[ANN_RECREATED_FROM] = meta["uid"]
    spec = {k: v for k, v in claim["spec"].items() if k != "volumeName"}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                         "labels": dict(meta.get("labels") or {}),
                         "annotations": annotations},
            "spec": spec}


def label_value_ok(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.fullmatch(value))
