"""The one place environments reach into synclocal: which nodes hold which datasets."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from mmerep.errors import KubeForbidden
from mmerep.kube import Kube

# synclocal.node's ANNOTATION and status_line, read here without importing it: its
# package loads the whole staging engine (~20 ms of an `env status`). A unit test
# (tests/unit/test_synclocal_line.py) holds both to the same answers.
ANNOTATION = "synclocal.mme-rep/datasets"


def synclocal_line(kube: Kube) -> str:
    """Which staged datasets are complete on how many nodes (from synclocal's node notes)."""
    try:
        return status_line(kube.list_metadata("v1", "Node"))  # the notes are annotations
    except KubeForbidden:
        return "synclocal: nodes are not readable with these credentials"


def node_datasets(node: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    raw = (node.get("metadata", {}).get("annotations") or {}).get(ANNOTATION)
    try:
        return dict(json.loads(raw)["datasets"]) if raw else {}
    except (ValueError, KeyError, TypeError):
        return {}


def status_line(nodes: Sequence[Mapping[str, Any]]) -> str:
    """The ``env status`` line: how many nodes hold each dataset complete."""
    per: dict[str, int] = {}
    reporting = 0
    for node in nodes:
        ds = node_datasets(node)
        reporting += bool(ds)
        for name, state in ds.items():
            per[name] = per.get(name, 0) + int(bool(state.get("complete")))
    if not per:
        return "synclocal: no node has reported staged data"
    parts = ", ".join(f"{name} {n}/{reporting}" for name, n in sorted(per.items()))
    return f"synclocal: datasets complete on nodes: {parts}"
