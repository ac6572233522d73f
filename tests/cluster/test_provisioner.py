"""The provisioner on the real control plane: the real scheduler picks nodes, the real PV
controller binds claims to the PVs ours creates, and each node's disks are real XFS file
systems (loop-mounted images), so sizes and free space are real."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmerep.kube import Kube
from provisioner import objects as o
from tests.cluster.provisioner_env import Bed, MiB, provisioner_bed, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture()
def bed(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[Bed]:
    with provisioner_bed(kube, namespace, tmp_path) as b:
        yield b


def bound(bed: Bed, name: str) -> dict | None:
    claim = bed.kube.get("v1", "PersistentVolumeClaim", name, bed.namespace)
    return claim if claim and claim.get("status", {}).get("phase") == "Bound" else None


def test_one_claim_and_its_pod(bed: Bed) -> None:
    node = bed.add_node([300 * MiB])
    bed.wait_nodes_ready()
    cls = bed.storage_class(uid="1000", gid="2000")
    bed.start_agent(node)
    bed.start_controller()
    bed.wait_reports()
    bed.claim("scratch", "50Mi", cls)
    bed.pod("job", "scratch")
    claim = wait_until(lambda: bound(bed, "scratch"), 60, "the claim to be bound")
    pv = bed.kube.get("v1", "PersistentVolume", claim["spec"]["volumeName"])
    assert pv is not None and pv["metadata"]["name"] == f"pvc-{claim['metadata']['uid']}"
    assert pv["spec"]["capacity"]["storage"] == str(50 * MiB)
    pod = wait_until(lambda: (p := bed.kube.get("v1", "Pod", "job", bed.namespace))
                     and p["spec"].get("nodeName") and p, 60, "the pod to be scheduled")
    assert pod["spec"]["nodeName"] == node == o.pv_node(pv)
    path = Path(pv["spec"]["local"]["path"])
    assert path.parent == bed.root(node) / "disk0"
    st = wait_until(lambda: path.exists() and path.stat(), 20, "the volume directory")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 2000, 0o2770)
    succeeded = wait_until(lambda: bed.events("ProvisioningSucceeded"), 20, "the event")
    assert node in succeeded[0]["message"]
    # The published capacity shrank by the claim.
    cap = wait_until(lambda: (c := bed.kube.get("storage.k8s.io/v1", "CSIStorageCapacity",
                                                o.capacity_name(cls, node), bed.namespace))
                     and c, 20, "published capacity")
    report = bed.store.reports()[node]
    assert int(cap["capacity"]) == report.disks[0].allocatable - 50 * MiB
    assert os.path.ismount(bed.root(node) / "disk0")
