"""The campaign plan: pure arithmetic over the work, a deadline and each member's room.

The model, said once so the numbers can be checked by hand:

- a job runs on ``job_cpus`` cores for ``cpu_seconds / job_cpus`` seconds of wall time
  (CPU-bound: its CPU time spread over its cores);
- an executor is one partitionable HTCondor slot of its pod's size, so it runs
  ``floor(min(executor cpu / job cpus, executor memory / job memory))`` jobs at once
  (its *slots*);
- with ``T`` seconds to the deadline a slot finishes ``floor(T / wall)`` jobs one after
  another (its *waves*), so ``ceil(jobs / waves)`` slots are needed;
- with ``S`` slots the work takes ``ceil(jobs / S)`` waves, i.e. ends
  ``ceil(jobs / S) * wall`` after it starts.

Members are filled in order of the most room (stable: the group's order breaks ties),
counting the executors already deployed there first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mmerep.errors import UsageError
from mmerep.quantity import format_cpu, format_memory


@dataclass(frozen=True)
class Work:
    """What is to be done: ``jobs`` jobs of this mean CPU time and memory each."""

    jobs: int
    cpu_seconds: float
    memory: int
    job_cpus: float = 1.0

    @property
    def wall_seconds(self) -> float:
        return self.cpu_seconds / self.job_cpus


@dataclass(frozen=True)
class MemberRoom:
    """One member as the plan sees it: its executors' size, how many run there now, and
    how many more fit (``None``: unknown, e.g. the member is down; counted as none)."""

    name: str
    executor_cpu: float
    executor_memory: int
    deployed: int = 0
    room: int | None = 0
    down: str | None = None


@dataclass
class MemberShare:
    name: str
    executors: int  # in total, the deployed ones included
    deployed: int
    slots_per_executor: int
    available: int  # deployed + room


@dataclass
class CampaignPlan:
    work: Work
    now: datetime
    deadline: datetime
    wall_seconds: float
    waves_before_deadline: int
    slots_needed: int | None  # None: no number of slots meets the deadline
    shares: list[MemberShare] = field(default_factory=list)
    on_time: bool = False
    end_with_deployed: datetime | None = None
    end_with_plan: datetime | None = None
    end_with_everything: datetime | None = None
    late_by_seconds: float | None = None
    more_executors_needed: int = 0
    would_meet_it: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "work": {"jobs": self.work.jobs, "cpu_seconds": self.work.cpu_seconds,
                     "memory": format_memory(self.work.memory),
                     "job_cpus": format_cpu(self.work.job_cpus)},
            "now": when(self.now), "deadline": when(self.deadline),
            "job_wall_seconds": self.wall_seconds,
            "waves_before_deadline": self.waves_before_deadline,
            "slots_needed": self.slots_needed,
            "members": [{"name": s.name, "executors": s.executors, "deployed": s.deployed,
                         "add": s.executors - s.deployed,
                         "slots_per_executor": s.slots_per_executor,
                         "available": s.available} for s in self.shares],
            "executors": sum(s.executors for s in self.shares),
            "on_time": self.on_time,
            "end_with_deployed": when(self.end_with_deployed),
            "end_with_plan": when(self.end_with_plan),
            "end_with_everything": when(self.end_with_everything),
            "late_by_seconds": self.late_by_seconds,
            "more_executors_needed": self.more_executors_needed,
            "would_meet_it": self.would_meet_it,
            "skipped": self.skipped,
        }


def slots_per_executor(work: Work, cpu: float, memory: int) -> int:
    """Jobs one executor of this size runs at once (0: a job does not fit in it)."""
    return max(0, math.floor(min(cpu / work.job_cpus, memory / work.memory) + 1e-9))


def end_date(work: Work, start: datetime, slots: int) -> datetime | None:
    """When the work ends on ``slots`` slots started at ``start``; None with no slot."""
    if slots <= 0:
        return None
    return start + timedelta(seconds=math.ceil(work.jobs / slots) * work.wall_seconds)


def check_work(work: Work) -> None:
    if work.jobs < 1:
        raise UsageError(f"jobs '{work.jobs}' is not a positive number", hint="e.g. --jobs 120000")
    if work.cpu_seconds <= 0:
        raise UsageError("the mean CPU time per job must be above zero", hint="e.g. --cpu-time 2h")
    if work.memory <= 0:
        raise UsageError("the memory per job must be above zero", hint="e.g. --memory 4Gi")
    if work.job_cpus <= 0:
        raise UsageError("CPUs per job must be above zero", hint="e.g. --job-cpus 1")


def plan_campaign(work: Work, deadline: datetime, now: datetime,
                  members: list[MemberRoom]) -> CampaignPlan:
    """How many executors on which members finish ``work`` by ``deadline``.

    Members are used in order of the most room, then the order given. A deadline that
    cannot be met says by how much (with every executor that fits) and what would meet
    it (more executors, or a later deadline).
    """
    check_work(work)
    if deadline <= now:
        raise UsageError(f"the deadline {deadline.isoformat()} is not in the future "
                         f"(now {now.isoformat()})", hint="give a later --deadline")
    wall = work.wall_seconds
    time_left = (deadline - now).total_seconds()
    waves = math.floor(time_left / wall + 1e-9)
    result = CampaignPlan(work=work, now=now, deadline=deadline, wall_seconds=wall,
                          waves_before_deadline=waves,
                          slots_needed=math.ceil(work.jobs / waves) if waves else None)
    usable: list[tuple[MemberRoom, int]] = []
    for member in members:
        k = slots_per_executor(work, member.executor_cpu, member.executor_memory)
        if member.down is not None:
            result.skipped[member.name] = f"down: {member.down}"
        elif k == 0:
            result.skipped[member.name] = (
                f"a job ({format_cpu(work.job_cpus)} CPU, {format_memory(work.memory)}) does "
                f"not fit in its executors ({format_cpu(member.executor_cpu)} CPU, "
                f"{format_memory(member.executor_memory)})")
        else:
            usable.append((member, k))
    deployed_slots = sum(m.deployed * k for m, k in usable)
    result.end_with_deployed = end_date(work, now, deployed_slots)
    # Most room first (in slots); sorted() is stable, so the given order breaks ties.
    ranked = sorted(usable, key=lambda mk: -(mk[0].deployed + (mk[0].room or 0)) * mk[1])
    all_slots = sum((m.deployed + (m.room or 0)) * k for m, k in ranked)
    result.end_with_everything = end_date(work, now, all_slots)
    remaining = result.slots_needed if result.slots_needed is not None else all_slots
    for member, k in ranked:
        available = member.deployed + (member.room or 0)
        # Deployed executors are counted (they are running anyway), then more as needed.
        executors = min(available, max(member.deployed, math.ceil(max(remaining, 0) / k)))
        remaining -= executors * k
        result.shares.append(MemberShare(member.name, executors, member.deployed, k,
                                         available))
    planned_slots = sum(s.executors * s.slots_per_executor for s in result.shares)
    result.end_with_plan = end_date(work, now, planned_slots)
    result.on_time = result.end_with_plan is not None and result.end_with_plan <= deadline
    if not result.on_time:
        _explain_miss(result, ranked)
    return result


def _explain_miss(result: CampaignPlan, ranked: list[tuple[MemberRoom, int]]) -> None:
    work, deadline = result.work, result.deadline
    end = result.end_with_everything
    result.late_by_seconds = (end - deadline).total_seconds() if end else None
    if result.slots_needed is None:
        result.would_meet_it.append(
            f"a deadline at least {_duration(work.wall_seconds)} away (one job takes that "
            f"long); no number of executors helps before then")
        if end:
            result.would_meet_it.append(f"a deadline of {end.isoformat()} with every "
                                        "executor that fits")
        return
    missing_slots = result.slots_needed - sum(s.available * s.slots_per_executor
                                              for s in result.shares)
    if not ranked:
        result.would_meet_it.append(
            f"{result.slots_needed} job slots on members that are up and have room")
    elif missing_slots > 0:
        member, k = ranked[0]
        result.more_executors_needed = math.ceil(missing_slots / k)
        result.would_meet_it.append(
            f"{result.more_executors_needed} more executors of {format_cpu(member.executor_cpu)}"
            f" CPU / {format_memory(member.executor_memory)} (room on a new member, or "
            "freed on one)")
    if end:
        result.would_meet_it.append(f"a deadline of {end.isoformat()} with every executor "
                                    "that fits")


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, option: str = "--cpu-time") -> float:
    """Seconds from ``90s``, ``45m``, ``2h``, ``1.5h``, ``3d``, ``2w`` (or plain seconds)."""
    value = text.strip()
    unit = value[-1:] if value[-1:] in _UNITS else "s"
    number = value[:-1] if value[-1:] in _UNITS else value
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"{option} '{text}' is not a duration",
                         hint="use a number and a unit, e.g. 90s, 45m, 2h, 1.5h, 3d")
    return seconds


def parse_when(text: str, option: str = "--deadline") -> datetime:
    """A date or date-time in ISO 8601 (``2027-03-01``, ``2027-03-01T12:00``), UTC unless
    it says otherwise."""
    from datetime import UTC

    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option} '{text}' is not a date",
                         hint="use ISO 8601, e.g. 2027-03-01 or 2027-03-01T12:00") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
