"""What a deploy would change, from a server-side dry run."""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from mmerep.environments.deploy_flow import with_revision
from mmerep.environments.model import Obj, Rendered, kind_and_name
from mmerep.environments.parts import live_parts, prunable
from mmerep.environments.records import read_records, revision_of
from mmerep.environments.replicas import settle_replicas
from mmerep.environments.vscaled import keep_vscaled, live_revision
from mmerep.kube import Kube


def _comparable(obj: Obj | None) -> Obj:
    if obj is None:
        return {}
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in (
        "managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def diff(kube: Kube, rendered: Rendered) -> list[dict[str, Any]]:
    """What a deploy would change, from a server-side dry run: action and a unified diff."""
    records = read_records(kube, rendered.namespace, rendered.env_name)
    current = revision_of(records[-1]) if records else 1
    if kube.get("v1", "Namespace", rendered.namespace) is None:
        return [{"action": "created", "object": kind_and_name(o), "diff": ""}
                for o in rendered.objects]
    rendered, _ = keep_vscaled(rendered, live_revision(records))  # nor what vscale set
    objects, _ = settle_replicas(kube, rendered)  # replicas the scaler owns are no change
    planned = with_revision(objects, current)
    out = []
    for result in kube.apply_all(planned, dry_run=True):
        if not result.changed:
            continue
        if result.obj["kind"] == "Secret":  # never show secret values
            out.append({"action": result.action, "object": kind_and_name(result.obj),
                        "diff": ""})
            continue
        old = yaml.safe_dump(_comparable(result.before), sort_keys=True).splitlines()
        new = yaml.safe_dump(_comparable(result.obj), sort_keys=True).splitlines()
        text = "\n".join(difflib.unified_diff(old, new, "live", "deploy", lineterm=""))
        out.append({"action": result.action, "object": kind_and_name(result.obj),
                    "diff": text})
    # What the deploy would prune (a part this revision no longer has).
    out += [{"action": "deleted", "object": kind_and_name(p), "diff": ""} for p in
            prunable(rendered, live_parts(kube, rendered.namespace, rendered.env_name))]
    return out
