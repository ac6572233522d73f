"""Node labels and annotation for job affinity and `env status`, tested as data."""

from __future__ import annotations

import json
import re
from typing import Any

from mmerep.synclocal.cache import DatasetInfo
from mmerep.synclocal.node import kube_node_reporter, label_key, node_patch
from mmerep.synclocal.notes import ANNOTATION, node_datasets, status_line

# Kubernetes' rule for the name part of a qualified label key.
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def info(name: str, complete: bool, size: int = 10) -> DatasetInfo:
    return DatasetInfo(name, complete, size, 2, updated=0.0, last_used=None)


def test_label_keys_are_valid_and_distinct() -> None:
    names = ["s3-olci-2019", "x" * 200, "x" * 199 + "y", "trailing.", "a_b.c"]
    keys = [label_key(n) for n in names]
    assert keys[0] == "synclocal.mme-rep/s3-olci-2019"
    for key in keys:
        prefix, name = key.split("/")
        assert prefix == "synclocal.mme-rep" and len(name) <= 63 and LABEL_NAME.match(name)
    assert len(set(keys)) == len(keys)


def test_patch_labels_complete_and_removes_stale_labels() -> None:
    current = {"kubernetes.io/hostname": "n1", "synclocal.mme-rep/gone": "complete",
               "synclocal.mme-rep/partial": "complete"}
    patch = node_patch(current, [info("done", True), info("partial", False)], now=1000)
    assert patch["metadata"]["labels"] == {"synclocal.mme-rep/done": "complete",
                                           "synclocal.mme-rep/gone": None,
                                           "synclocal.mme-rep/partial": None}
    state = json.loads(patch["metadata"]["annotations"][ANNOTATION])
    assert state == {"updated": 1000, "datasets": {
        "done": {"complete": True, "bytes": 10, "files": 2, "pinned": False},
        "partial": {"complete": False, "bytes": 10, "files": 2, "pinned": False}}}


def test_status_line_counts_nodes_per_dataset() -> None:
    def node(*sets: DatasetInfo) -> dict[str, Any]:
        return {"metadata": node_patch({}, list(sets))["metadata"]}

    nodes = [node(info("a", True), info("b", False)), node(info("a", True)),
             {"metadata": {"name": "fresh"}}]
    assert status_line(nodes) == "synclocal: datasets complete on nodes: a 2/2, b 0/2"
    assert status_line([{"metadata": {}}]) == "synclocal: no node has reported staged data"
    assert node_datasets({"metadata": {"annotations": {ANNOTATION: "not json"}}}) == {}


class RecordingKube:
    """Stands in for the API server, which the unit tier does not have."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.calls: list[tuple[str, str, Any, str | None]] = []

    def request(self, method: str, path: str, *, body: Any = None,
                content_type: str | None = None, what: str | None = None) -> Any:
        self.calls.append((method, path, body, content_type))
        return {"metadata": {"name": "n1", "labels": self.labels}}


def test_reporter_reads_the_node_then_merge_patches_it() -> None:
    kube = RecordingKube({"synclocal.mme-rep/old": "complete"})
    kube_node_reporter("node-1", kube)([info("new", True)])
    (get, patch) = kube.calls
    assert get[:2] == ("GET", "/api/v1/nodes/node-1")
    assert patch[0:2] == ("PATCH", "/api/v1/nodes/node-1")
    assert patch[3] == "application/merge-patch+json"
    assert patch[2]["metadata"]["labels"] == {"synclocal.mme-rep/new": "complete",
                                              "synclocal.mme-rep/old": None}
