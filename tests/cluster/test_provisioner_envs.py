"""An htcondor-batch environment on the local-SSD tier: with a profile that names the
provisioner's class, each executor's scratch space and each node's synclocal cache are
volumes the provisioner creates on the pod's node; a class the cluster lacks is refused
before anything is made."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmerep import environments
from mmerep.errors import UsageError
from mmerep.kube import Kube
from mmerep.profiles import get_profile
from provisioner import objects as o
from tests.cluster.provisioner_env import TAINT, Bed, MiB, provisioner_bed, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture()
def bed(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[Bed]:
    with provisioner_bed(kube, namespace, tmp_path) as b:
        yield b


def profile(bed: Bed, namespace: str, cls: str) -> Any:
    return dataclasses.replace(
        get_profile("local"), namespace=namespace, registry="harbor.example.org",
        requests={"cpu": "100m", "memory": "256Mi"},
        node_selector={TAINT: bed.tag},
        tolerations=[{"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}],
        storage_classes={"local-ssd": cls}, scratch_volume=None)


def provisioned_for(bed: Bed, pod: dict[str, Any], volume: str) -> dict[str, Any]:
    """The PV bound to the pod's ephemeral claim for ``volume``; it must be ours and on
    the pod's node."""
    claim_name = f"{pod['metadata']['name']}-{volume}"
    claim = wait_until(lambda: (c := bed.kube.get("v1", "PersistentVolumeClaim", claim_name,
                                                  bed.namespace))
                       and c.get("status", {}).get("phase") == "Bound" and c, 90,
                       f"claim {claim_name} to be bound")
    pv = bed.kube.get("v1", "PersistentVolume", claim["spec"]["volumeName"])
    assert pv is not None
    assert pv["metadata"]["labels"][o.LABEL_PROVISIONER] == bed.name
    assert o.pv_node(pv) == pod["spec"]["nodeName"]
    return pv


def test_executor_scratch_and_synclocal_cache_come_from_the_provisioner(bed: Bed) -> None:
    nodes = [bed.add_node([400 * MiB]) for _ in range(2)]
    cls = bed.start()
    rendered = environments.render_environment(
        profile(bed, bed.namespace, cls), "htcondor-batch", "sentinel3:v0.1.0", resolve=False,
        params={"executors": 2, "scratch": "60Mi", "synclocal_cache": "40Mi",
                "synclocal_node_labels": False})
    result = environments.deploy(bed.kube, rendered, timeout=180)
    assert result.action == "installed"

    pods = bed.kube.list_objects("v1", "Pod", bed.namespace,
                                 label_selector="app.kubernetes.io/instance=sentinel3")
    executors = [p for p in pods if p["metadata"]["labels"].get(
        "app.kubernetes.io/component") == "executor"]
    caches = [p for p in pods if p["metadata"]["labels"].get(
        "app.kubernetes.io/component") == "synclocal"]
    assert len(executors) == 2
    assert sorted(p["spec"]["nodeName"] for p in caches) == sorted(nodes)  # one per node
    for pod in executors:
        pv = provisioned_for(bed, pod, "execute")
        assert pv["spec"]["capacity"]["storage"] == str(60 * MiB)
        wait_until(Path(pv["spec"]["local"]["path"]).is_dir, 20, "the scratch directory")
    for pod in caches:
        pv = provisioned_for(bed, pod, "local-data")
        assert pv["spec"]["capacity"]["storage"] == str(40 * MiB)
        wait_until(Path(pv["spec"]["local"]["path"]).is_dir, 20, "the cache directory")
    assert len(bed.pvs()) == 4
    assert bed.events("ProvisioningFailed") == []


def test_deploy_refuses_a_local_ssd_class_the_cluster_lacks(bed: Bed) -> None:
    namespace = f"{bed.namespace}-x"[:63]
    rendered = environments.render_environment(
        profile(bed, namespace, "mmerep-no-such-ssd"), "htcondor-batch", "sentinel3:v0.1.0",
        resolve=False)
    with pytest.raises(UsageError) as err:
        environments.deploy(bed.kube, rendered, timeout=30)
    assert "StorageClass mmerep-no-such-ssd, which this cluster does not have" in str(
        err.value)
    assert "mme-rep provisioner install" in str(err.value)
    assert bed.kube.get("v1", "Namespace", namespace) is None  # nothing made
