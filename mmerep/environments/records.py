"""Revision records: one ConfigMap per revision, holding the inputs and rendered objects
(never a Secret), which ``history`` lists and ``rollback`` re-applies."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime
from typing import Any

from mmerep import revisions, templates
from mmerep.environments.model import (
    RECORD_LABEL,
    SUMMARY_ANNOTATION,
    Obj,
    Rendered,
)
from mmerep.errors import UsageError
from mmerep.kube import Kube


def record_name(env_name: str, revision: int) -> str:
    return f"{env_name}-mmerep-r{revision}"


def _pack(objects: list[Obj]) -> str:
    return base64.b64encode(gzip.compress(json.dumps(objects).encode(), mtime=0)).decode()


def _unpack(data: str) -> list[Obj]:
    objects: list[Obj] = json.loads(gzip.decompress(base64.b64decode(data)))
    return objects


def build_record(rendered: Rendered, revision: int, status: str, note: str = "") -> Obj:
    labels = {**templates.standard_labels(rendered.env_name, rendered.template, "record"),
              RECORD_LABEL: "true", "mme-rep/revision": str(revision)}
    stored = [o for o in rendered.objects if o["kind"] != "Secret"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": record_name(rendered.env_name, revision),
                     "namespace": rendered.namespace, "labels": labels,
                     # what `env list` shows, readable from the metadata alone (with the
                     # labels' template and revision); revisions.set_status keeps
                     # STATUS_ANNOTATION equal to data.status
                     "annotations": {SUMMARY_ANNOTATION: json.dumps(
                         {"image": rendered.image, "time": now}, sort_keys=True),
                         revisions.STATUS_ANNOTATION: status}},
        "data": {"revision": str(revision), "status": status, "template": rendered.template,
                 "image": rendered.image, "params": json.dumps(rendered.params, sort_keys=True),
                 "workloads": json.dumps(list(rendered.workloads)),
                 "secrets": json.dumps({k: list(v) for k, v in rendered.secrets.items()}),
                 "web": json.dumps(rendered.web),
                 "time": now, "note": note,
                 **({"owned": json.dumps({k: list(v) for k, v in rendered.owned.items()})}
                    if rendered.owned else {})},
        "binaryData": {"objects.json.gz": _pack(stored)},
    }


def revision_of(record: Obj) -> int:
    return int(record["data"]["revision"])


def read_records(kube: Kube, namespace: str, env_name: str) -> list[Obj]:
    """Revision records, oldest first."""
    found = kube.list_objects("v1", "ConfigMap", namespace, label_selector=(
        f"{RECORD_LABEL}=true,app.kubernetes.io/instance={env_name}"))
    return sorted(found, key=revision_of)


def live_record(records: list[Obj]) -> Obj | None:
    """The record of the revision that runs: the newest that says "deployed" (a vscale
    cannot relabel the one before it, so several may; a failed change after it does not
    run)."""
    return next((r for r in reversed(records) if r["data"]["status"] == "deployed"), None)


def good_records(records: list[Obj]) -> list[Obj]:
    """Records of revisions that once became ready (what a rollback may return to)."""
    return [r for r in records if r["data"]["status"] in ("deployed", "superseded")]


def set_record_status(kube: Kube, record: Obj, status: str, note: str = "") -> None:
    revisions.set_status(kube, record, status, note)  # durability: patch status, not rewrite


def supersede_deployed(kube: Kube, records: list[Obj]) -> None:
    """Mark the revision that was live as superseded (a new one is about to be recorded)."""
    for old in records:
        if old["data"]["status"] == "deployed":
            set_record_status(kube, old, "superseded")


def rendered_from_record(record: Obj) -> Rendered:
    data = record["data"]
    objects = _unpack(record["binaryData"]["objects.json.gz"])
    meta = record["metadata"]
    secrets = {k: tuple(v) for k, v in json.loads(data.get("secrets", "{}")).items()}
    return Rendered(meta["labels"]["app.kubernetes.io/instance"], meta["namespace"],
                    data["template"], data["image"], json.loads(data["params"]), objects,
                    tuple(json.loads(data.get("workloads", "[]"))), secrets,
                    json.loads(data.get("web", "{}")),
                    owned={k: tuple(v) for k, v in json.loads(data.get("owned", "{}")).items()})


def history(kube: Kube, namespace: str, env_name: str) -> list[dict[str, Any]]:
    records = read_records(kube, namespace, env_name)
    if not records:
        raise UsageError(f"environment {env_name} not found in namespace {namespace}",
                         hint="mme-rep env list shows what is deployed")
    live_one = live_record(records)
    live = revision_of(live_one) if live_one else None

    def status(r: Obj) -> str:
        # A revision written from inside the pool (vscale) cannot relabel the older one.
        st = str(r["data"]["status"])
        return "superseded" if st == "deployed" and revision_of(r) != live else st

    rows = [{"revision": revision_of(r), "status": status(r),
             "time": r["data"]["time"], "template": r["data"]["template"],
             "image": r["data"]["image"], "note": r["data"].get("note", "")} for r in records]
    return revisions.explain_in_progress(kube, namespace, env_name, rows)  # durability
