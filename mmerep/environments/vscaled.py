"""Who owns a workload's CPU and memory: the VerticalPodAutoscaler pattern, as
``replicas.py`` is the HorizontalPodAutoscaler one.

``vscale`` records, in its revision, the template parameters it set and the workload it set
them on (``Rendered.owned``). A later deploy that does not set any of those parameters
itself keeps the workload's CPU and memory as ``vscale`` left them, and records the same
ownership again: a new image does not undo a vscale. A deploy that sets one of them
(``--set executor_memory=16G``) takes them back. A rollback restores what the revision it
returns to had, ownership included.
"""

from __future__ import annotations

import dataclasses

from mmerep.environments.model import Obj, Rendered, kind_and_name
from mmerep.environments.records import live_record, rendered_from_record

RESOURCES = ("cpu", "memory")  # what vscale changes; other resources stay as rendered


def live_revision(records: list[Obj]) -> Rendered | None:
    """The live revision as recorded, when something in it is owned by vscale; else None
    (and nothing is unpacked)."""
    record = live_record(records)
    return rendered_from_record(record) if record and record["data"].get("owned") else None


def with_resources_of(rendered: Obj, recorded: Obj) -> Obj:
    """``rendered`` with each container's CPU and memory requests and limits as in
    ``recorded`` (matched by container name; pure)."""
    spec = rendered["spec"]["template"]["spec"]
    before = {c["name"]: c.get("resources", {})
              for c in recorded["spec"]["template"]["spec"]["containers"]}
    containers = []
    for container in spec["containers"]:
        if container["name"] not in before:
            containers.append(container)
            continue
        resources = {k: dict(v) for k, v in container.get("resources", {}).items()}
        for part in ("requests", "limits"):
            now = resources.setdefault(part, {})
            for key in RESOURCES:
                now.pop(key, None)
                if key in before[container["name"]].get(part, {}):
                    now[key] = before[container["name"]][part][key]
            if not now:
                del resources[part]
        rest = {k: v for k, v in container.items() if k != "resources"}
        containers.append({**rest, "resources": resources} if resources else rest)
    return {**rendered, "spec": {**rendered["spec"], "template": {
        **rendered["spec"]["template"], "spec": {**spec, "containers": containers}}}}


def keep_vscaled(rendered: Rendered, live: Rendered | None) -> tuple[Rendered, list[str]]:
    """``rendered`` with the CPU and memory ``vscale`` set on the live revision kept, where
    the operator did not set those parameters in this deploy; and one line per workload
    kept, for the operator."""
    if live is None or not live.owned:
        return rendered, []
    recorded = {kind_and_name(o): o for o in live.objects}
    objects = {kind_and_name(o): o for o in rendered.objects}
    owned, params, kept = {}, dict(rendered.params), []
    for what, names in live.owned.items():
        if what not in recorded or what not in objects \
                or set(names) & set(rendered.explicit):
            continue  # gone from the template, or the operator takes it back
        objects[what] = with_resources_of(objects[what], recorded[what])
        params.update({n: live.params.get(n) for n in names})
        owned[what] = names
        shown = ", ".join(f"{n}={live.params[n]}" for n in names if live.params.get(n))
        kept.append(f"kept {what}'s CPU and memory as vscale set them ({shown}); "
                    f"--set {names[0]}=... takes them back")
    if not kept:
        return rendered, []
    return dataclasses.replace(rendered, objects=list(objects.values()), params=params,
                               owned=owned), kept
