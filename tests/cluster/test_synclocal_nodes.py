"""synclocal's node reports on the real API server: labels a job can select on."""

from __future__ import annotations

import time

import pytest

from mmerep import environments
from mmerep.kube import Kube
from mmerep.synclocal.cache import DatasetInfo
from mmerep.synclocal.node import kube_node_reporter, label_key

pytestmark = pytest.mark.cluster


def test_reports_label_nodes_and_reach_env_status(kube: Kube, namespace: str) -> None:
    now = time.time()
    olci = DatasetInfo("s3/olci-2019", True, 10 << 20, 12, now, now)
    aux = DatasetInfo("aux", False, 1 << 20, 1, now, None)
    nodes = ["mmerep-node-1", "mmerep-node-2"]
    try:
        kube_node_reporter(nodes[0], kube)([olci, aux])
        kube_node_reporter(nodes[1], kube)([olci, DatasetInfo("aux", True, 1 << 20, 1, now,
                                                              now)])
        labelled = kube.list_objects("v1", "Node", label_selector=f"{label_key('aux')}=complete")
        assert [n["metadata"]["name"] for n in labelled] == [nodes[1]]
        both = kube.list_objects("v1", "Node",
                                 label_selector=f"{label_key('s3/olci-2019')}=complete")
        assert sorted(n["metadata"]["name"] for n in both) == nodes
        line = environments.synclocal_line(kube)
        assert line == "synclocal: datasets complete on nodes: aux 1/2, s3/olci-2019 2/2"
        kube_node_reporter(nodes[1], kube)([])  # everything evicted: labels go away
        assert kube.list_objects("v1", "Node",
                                 label_selector=f"{label_key('aux')}=complete") == []
    finally:
        for name in nodes:
            kube_node_reporter(name, kube)([])
            kube.request("PATCH", f"/api/v1/nodes/{name}", content_type=(
                "application/merge-patch+json"), body={"metadata": {"annotations": {
                    "synclocal.mme-rep/datasets": None}}})
