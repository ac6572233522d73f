"""synclocal's notes on a Node (which datasets are staged there), as read back.

Light on purpose (``env status`` reads them on every call): the staging engine is not
imported here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

ANNOTATION = "synclocal.mme-rep/datasets"


def node_datasets(node: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The annotation read back from a Node object; {} when synclocal never reported."""
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
