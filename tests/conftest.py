"""Shared fixtures. Cluster tier: one local cluster per test session, one namespace per test.

The cluster runs with its own state directory (not the user's `mme-rep cluster up`),
reusing the cached binaries. There is no skip: if the cluster cannot start, every
cluster test fails with the reason, in CI and on a laptop alike.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmerep.kube import Kube


@pytest.fixture(scope="session")
def cluster_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("cluster-state")
    old = os.environ.get("MMEREP_STATE_DIR")
    os.environ["MMEREP_STATE_DIR"] = str(state)
    try:
        yield state
    finally:
        if old is None:
            os.environ.pop("MMEREP_STATE_DIR", None)
        else:
            os.environ["MMEREP_STATE_DIR"] = old


@pytest.fixture(scope="session")
def cluster(cluster_state: Path) -> Iterator[object]:
    from mmerep.cluster import local

    try:  # a start that fails half-way must not leave its processes behind
        yield local.up(local.ClusterSpec(nodes=4))
    finally:
        local.down()


@pytest.fixture()
def kube(cluster: object) -> Kube:
    from mmerep.cluster import local

    return local.connect()


@pytest.fixture()
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield name
    finally:
        kube.delete("v1", "Namespace", name, propagation="Background")
