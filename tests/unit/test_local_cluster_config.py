"""The local cluster's kwokctl configuration: what its etcd is asked to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmerep.cluster import local


def _etcd_args(config: list[dict[str, Any]]) -> list[str]:
    patches = config[0]["componentsPatches"]
    return [f"--{a['key']}={a['value']}" for p in patches if p["name"] == "etcd"
            for a in p["extraArgs"]]


def _binaries() -> dict[str, Path]:
    return {name: Path(f"/cache/bin/{name}") for name in (
        "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd",
        "kwok", "kwokctl")}


def test_etcd_does_not_wait_on_the_disk_for_each_commit_by_default() -> None:
    assert _etcd_args(local.kwokctl_config(_binaries())) == ["--unsafe-no-fsync=true"]


def test_a_cluster_asked_for_durable_etcd_syncs_every_commit() -> None:
    config = local.kwokctl_config(_binaries(), local.ClusterSpec(etcd_fsync=True))
    assert _etcd_args(config) == []
    # the other components keep their settings either way
    names = {p["name"] for p in config[0]["componentsPatches"]}
    assert {"kube-apiserver", "kube-scheduler", "kube-controller-manager"} <= names
