"""A campaign's state across members: its environments (those labelled
``mme-rep/campaign=NAME``), their executors, and the projected finish of the work left.

``label_campaign`` and ``project`` are pure; ``read_campaign`` reads every member in
parallel (a member that is down is one row saying so)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mmerep.campaign.groups import each_member
from mmerep.campaign.members import CAMPAIGN_LABEL
from mmerep.campaign.plan import Work, check_work, end_date, slots_per_executor
from mmerep.errors import MmerepError, UsageError
from mmerep.grammar.names import LABEL_VALUE
from mmerep.profiles import Profile
from mmerep.quantity import parse_cpu, parse_memory

Obj = dict[str, Any]


def check_name(name: str) -> str:
    if not LABEL_VALUE.fullmatch(name) or not name:
        raise UsageError(f"campaign name '{name}' is not a label value",
                         hint="letters, digits, '-', '_' and '.', e.g. s3-olci-2019")
    return name


def label_campaign(objects: list[Obj], name: str) -> list[Obj]:
    """Every object of an environment labelled with its campaign (pod templates are left
    alone, so labelling never restarts a pod)."""
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        meta["labels"] = {**(meta.get("labels") or {}), CAMPAIGN_LABEL: check_name(name)}
    return objects


def _executor_row(member: str, deployment: Obj) -> dict[str, Any]:
    meta, spec = deployment["metadata"], deployment.get("spec") or {}
    containers = spec.get("template", {}).get("spec", {}).get("containers") or [{}]
    req = (containers[0].get("resources") or {}).get("requests") or {}
    status = deployment.get("status") or {}
    return {"member": member, "namespace": meta.get("namespace"),
            "environment": meta["labels"].get("app.kubernetes.io/instance"),
            "executors": int(spec.get("replicas", 0)),
            "ready": int(status.get("readyReplicas", 0)),
            "executor_cpu": req.get("cpu", "0"), "executor_memory": req.get("memory", "0")}


def read_campaign(profiles: list[Profile], name: str) -> list[dict[str, Any]]:
    """One row per executor Deployment of the campaign, per member; a member that cannot
    be read gives one row with ``down`` set."""
    from mmerep.campaign.capacity import connect

    selector = (f"{CAMPAIGN_LABEL}={check_name(name)},"
                "app.kubernetes.io/component=executor,app.kubernetes.io/managed-by=mme-rep")

    def one(p: Profile) -> list[Obj]:
        found: list[Obj] = connect(p).list_objects("apps/v1", "Deployment", p.namespace,
                                                   label_selector=selector)
        return found

    rows: list[dict[str, Any]] = []
    for p, result in zip(profiles, each_member(profiles, one), strict=True):
        if isinstance(result, MmerepError):
            rows.append({"member": p.name, "down": result.message})
        else:
            rows += [_executor_row(p.name, d) for d in result]
    return rows


def project(work: Work, done: int, rows: list[dict[str, Any]], now: datetime,
            deadline: datetime | None = None) -> dict[str, Any]:
    """Progress and the projected finish: the jobs left on the executors that serve now
    (ready ones), with the plan's arithmetic (mmerep/campaign/plan.py)."""
    check_work(work)
    if not 0 <= done <= work.jobs:
        raise UsageError(f"--done {done} is not between 0 and --jobs {work.jobs}")
    slots = sum(r["ready"] * slots_per_executor(work, parse_cpu(r["executor_cpu"]),
                                                parse_memory(r["executor_memory"]))
                for r in rows if "down" not in r)
    left = work.jobs - done
    end = now if left == 0 else end_date(Work(left, work.cpu_seconds, work.memory,
                                              work.job_cpus), now, slots)
    result: dict[str, Any] = {
        "jobs": work.jobs, "done": done, "percent_done": round(100 * done / work.jobs, 1),
        "slots_serving": slots, "projected_finish": end.isoformat() if end else None,
        "environments": rows}
    if deadline is not None:
        result["deadline"] = deadline.isoformat()
        result["on_time"] = end is not None and end <= deadline
    return result
