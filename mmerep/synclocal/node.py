"""Telling the cluster which datasets are complete on which node.

One label per complete dataset, ``synclocal.mme-rep/<dataset>=complete``, so a job's
node affinity can require its inputs; an annotation with every dataset's state (full
names, sizes), which ``env status`` summarises. Building the patch is pure; sending it
goes through the one Kubernetes gateway, imported only when a reporter is made.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mmerep.grammar.names import LABEL_NAME
from mmerep.synclocal.cache import DatasetInfo
from mmerep.synclocal.notes import ANNOTATION

if TYPE_CHECKING:
    from mmerep.kube import Kube

LABEL_PREFIX = "synclocal.mme-rep"
COMPLETE = "complete"

Reporter = Callable[[Sequence[DatasetInfo]], None]


def label_key(dataset: str) -> str:
    """A valid label key for any dataset name; long or odd names get a hash suffix."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", dataset)
    if not LABEL_NAME.fullmatch(name):
        digest = hashlib.sha256(dataset.encode()).hexdigest()[:10]
        name = f"{name[:52].strip('._-')}-{digest}".lstrip("._-")
    return f"{LABEL_PREFIX}/{name}"


def node_patch(current_labels: Mapping[str, str], datasets: Sequence[DatasetInfo],
               now: float | None = None) -> dict[str, Any]:
    """A JSON merge patch: label complete datasets, remove our labels for the rest."""
    complete = {label_key(d.name) for d in datasets if d.complete}
    labels: dict[str, str | None] = {
        k: None for k in current_labels if k.startswith(LABEL_PREFIX + "/") and k not in complete
    }
    labels.update(dict.fromkeys(sorted(complete), COMPLETE))
    state = {
        "updated": round(time.time() if now is None else now),
        "datasets": {d.name: {"complete": d.complete, "bytes": d.bytes, "files": d.files,
                              "pinned": d.pinned} for d in datasets},
    }
    return {"metadata": {"labels": labels,
                         "annotations": {ANNOTATION: json.dumps(state, sort_keys=True,
                                                                separators=(",", ":"))}}}




def kube_node_reporter(node_name: str, kube: Kube | None = None) -> Reporter:
    """Patch this node through the gateway (in-cluster service account by default)."""
    path = f"/api/v1/nodes/{quote(node_name)}"

    def report(datasets: Sequence[DatasetInfo]) -> None:
        nonlocal kube
        if kube is None:
            from mmerep.kube import Kube

            kube = Kube.in_cluster()
        node = kube.request("GET", path, what=f"read node {node_name}")
        labels = (node.get("metadata") or {}).get("labels") or {}
        kube.request("PATCH", path, body=node_patch(labels, datasets),
                     content_type="application/merge-patch+json",
                     what=f"label node {node_name}")

    return report
