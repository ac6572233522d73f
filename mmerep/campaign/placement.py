"""Placement: which member of a profile group gets an environment. Pure: it decides over
each member's free capacity (``capacity.Capacity``) and what the environment will request.

The member with the most room *after* the environment wins: free CPU and memory minus the
environment's requests, counted in executors of its size (the scarcer of the two decides).
Ties keep the group's order. A member that is down, or has not enough room, is reported
with the reason and skipped; ``on`` names the member and overrides the choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mmerep.campaign.capacity import Capacity
from mmerep.errors import UsageError
from mmerep.quantity import format_cpu, format_memory, parse_cpu, parse_memory

Obj = dict[str, Any]


@dataclass(frozen=True)
class Demand:
    """What an environment's pods request in total, and one executor's size."""

    cpu: float
    memory: int
    executors: int = 0
    executor_cpu: float = 0.0
    executor_memory: int = 0

    def text(self) -> str:
        return f"{format_cpu(self.cpu)} CPU / {format_memory(self.memory)}"


@dataclass
class MemberVerdict:
    member: str
    free_cpu: float | None
    free_memory: int | None
    room_after: int | None  # executors of the environment's size that still fit after it
    fits: bool
    reason: str  # "" when it fits

    def to_dict(self) -> dict[str, Any]:
        return {"member": self.member,
                "free_cpu": None if self.free_cpu is None else format_cpu(max(self.free_cpu, 0)),
                "free_memory": None if self.free_memory is None
                else format_memory(max(self.free_memory, 0)),
                "room_after": self.room_after, "fits": self.fits, "reason": self.reason}


@dataclass
class Placement:
    chosen: str
    why: str
    demand: Demand
    verdicts: list[MemberVerdict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "why": self.why,
                "demand": {"cpu": format_cpu(self.demand.cpu),
                           "memory": format_memory(self.demand.memory),
                           "executors": self.demand.executors},
                "members": [v.to_dict() for v in self.verdicts]}


def _pod_template_requests(workload: Obj) -> tuple[float, int]:
    cpu, memory = 0.0, 0
    spec = workload.get("spec", {}).get("template", {}).get("spec", {})
    for container in spec.get("containers") or []:
        req = (container.get("resources") or {}).get("requests") or {}
        cpu += parse_cpu(req.get("cpu", 0))
        memory += parse_memory(req.get("memory", 0))
    return cpu, memory


def environment_demand(objects: list[Obj]) -> Demand:
    """What a rendered environment's Deployments and StatefulSets will request (replicas
    times their pods'); DaemonSets are per node and counted by neither member."""
    cpu, memory, executors, ex_cpu, ex_mem = 0.0, 0, 0, 0.0, 0
    for obj in objects:
        if obj.get("kind") not in ("Deployment", "StatefulSet"):
            continue
        replicas = obj.get("spec", {}).get("replicas", 1)
        pod_cpu, pod_mem = _pod_template_requests(obj)
        cpu += replicas * pod_cpu
        memory += replicas * pod_mem
        labels = obj.get("metadata", {}).get("labels") or {}
        if labels.get("app.kubernetes.io/component") == "executor":
            executors, ex_cpu, ex_mem = replicas, pod_cpu, pod_mem
    return Demand(cpu, memory, executors, ex_cpu, ex_mem)


def judge(cap: Capacity, demand: Demand) -> MemberVerdict:
    """One member's verdict: free capacity, and the room left after the environment."""
    if cap.down is not None:
        return MemberVerdict(cap.member, None, None, None, False, f"down: {cap.down}")
    after_cpu = cap.free_cpu - demand.cpu
    after_mem = cap.free_memory - demand.memory
    if cap.nodes == 0:
        reason = "no node its node selector and tolerations allow"
        return MemberVerdict(cap.member, cap.free_cpu, cap.free_memory, None, False, reason)
    if after_cpu < 0 or after_mem < 0:
        short = [f"{format_cpu(-after_cpu)} CPU" if after_cpu < 0 else "",
                 f"{format_memory(-after_mem)} memory" if after_mem < 0 else ""]
        reason = f"not enough room: short of {' and '.join(s for s in short if s)}"
        return MemberVerdict(cap.member, cap.free_cpu, cap.free_memory, None, False, reason)
    # Room in executors of this environment's size; without executors, in its own size.
    unit_cpu = demand.executor_cpu or demand.cpu
    unit_mem = demand.executor_memory or demand.memory
    rooms = [after_cpu / unit_cpu if unit_cpu else math.inf,
             after_mem / unit_mem if unit_mem else math.inf]
    room = min(rooms)
    room_after = math.floor(room) if math.isfinite(room) else 10**9
    return MemberVerdict(cap.member, cap.free_cpu, cap.free_memory, room_after, True, "")


def place(capacities: list[Capacity], demand: Demand | dict[str, Demand],
          on: str | None = None) -> Placement:
    """The member the environment goes to, and every member's verdict. ``demand`` may be
    per member (profiles' default requests differ).

    UsageError when ``on`` names no member, or when no member fits (naming each member's
    reason; nothing is changed).
    """
    demands = demand if isinstance(demand, dict) else {c.member: demand for c in capacities}
    verdicts = [judge(c, demands[c.member]) for c in capacities]
    names = [c.member for c in capacities]
    first = demands[names[0]] if names else Demand(0, 0)
    unit = "executors" if first.executors else "more of it"
    if on is not None:
        if on not in names:
            raise UsageError(f"--on {on}: not a member of the group",
                             hint=f"members: {', '.join(names)}")
        verdict = verdicts[names.index(on)]
        state = "fits" if verdict.fits else verdict.reason
        return Placement(on, f"--on {on} (chosen by hand; {state})", demands[on], verdicts)
    fitting = [v for v in verdicts if v.fits]
    if not fitting:
        detail = "; ".join(f"{v.member}: {v.reason}" for v in verdicts)
        raise UsageError(f"no member has room for the environment ({first.text()}): {detail}",
                         hint="free capacity on a member, ask for less (--set executors=N), "
                         "or choose one with --on MEMBER")
    # max() keeps the first of equals: the group's order breaks ties.
    best = max(fitting, key=lambda v: v.room_after or 0)
    others = [v for v in fitting if v is not best]
    why = f"most room after it: {best.room_after} {unit}"
    if others:
        why += " (" + ", ".join(f"{v.member}: {v.room_after}" for v in others) + ")"
    if any(v.room_after == best.room_after for v in others):
        why += "; tie broken by the group's order"
    return Placement(best.member, why, demands[best.member], verdicts)
