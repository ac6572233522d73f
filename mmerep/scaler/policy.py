"""The autoscaler's decision, as a pure function: what it sees -> replicas and pods to remove.

Growth follows the queue (idle jobs' CPUs and memory, in executors of the pod's size),
limited by a step per interval and the bounds. Shrinking waits until demand has been
below the current size for a whole cool-down (and that long after the last growth), and
removes only executors that hold no claimed slot, in the order the ReplicaSet controller
itself deletes pods, so marking them with a low ``pod-deletion-cost`` makes the
controller remove exactly them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mmerep.condor import ExecutorSlots, QueueSummary
from mmerep.scaler.state import PolicyState


@dataclass(frozen=True)
class Bounds:
    minimum: int = 0
    maximum: int = 50
    step: int = 20  # most executors added or removed in one interval
    cooldown: float = 300.0  # seconds demand must stay low before shrinking

    def clamp(self, value: int) -> int:
        return max(self.minimum, min(self.maximum, value))


@dataclass(frozen=True)
class ExecutorPod:
    """One executor pod as Kubernetes sees it."""

    name: str
    phase: str = "Running"  # Pending, Running, ...
    node: str | None = "node-1"
    ready: bool = True
    template_hash: str = ""

    def controller_rank(self) -> tuple[int, int, int]:
        """The ReplicaSet controller's deletion order before pod-deletion-cost: unassigned
        before assigned, Pending before Unknown before Running, not ready before ready."""
        phase = {"Pending": 0, "Unknown": 1, "Running": 2}.get(self.phase, 0)
        return (int(self.node is not None), phase, int(self.ready))


@dataclass(frozen=True)
class Observation:
    queue: QueueSummary
    executors: tuple[ExecutorSlots, ...]  # registered in the pool
    pods: tuple[ExecutorPod, ...]  # the Deployment's live pods
    replicas: int  # the Deployment's spec.replicas now
    slot_cpus: float = 1.0  # size of one executor (its pod's requests)
    slot_memory_mb: int = 1024


@dataclass(frozen=True)
class Decision:
    replicas: int
    remove: tuple[str, ...]  # pods to mark and drain before lowering replicas
    reason: str
    wanted: int
    state: PolicyState


def wanted_executors(obs: Observation) -> int:
    """Executors the jobs need: what is claimed plus what idle jobs ask for, in executors
    of the pod's size; never fewer than the busy executors."""
    cpu = max(obs.slot_cpus, 0.001)
    memory = max(obs.slot_memory_mb, 1)
    claimed_cpus = sum(e.claimed_cpus for e in obs.executors)
    claimed_memory = sum(e.claimed_memory_mb for e in obs.executors)
    by_cpu = (claimed_cpus + obs.queue.idle_cpus) / cpu
    by_memory = (claimed_memory + obs.queue.idle_memory_mb) / memory
    # Each idle job needs a slot of its own size at least: one executor per job that
    # is bigger than half an executor (two of them never share one).
    big = sum(1 for j in obs.queue.idle if j.cpus > cpu / 2 or j.memory_mb > memory / 2)
    busy = sum(1 for e in obs.executors if e.busy)
    return max(busy + big, math.ceil(round(max(by_cpu, by_memory), 6)))


def removable(obs: Observation) -> list[ExecutorPod]:
    """Pods that may go, in the order the controller deletes them; never a busy one, and
    none that ranks after a busy one (the controller would take the busy one first)."""
    busy_names = {e.name for e in obs.executors if e.busy}
    pods = sorted(obs.pods, key=lambda p: (p.controller_rank(), p.name))
    busy_ranks = [p.controller_rank() for p in pods if p.name in busy_names]
    limit = min(busy_ranks) if busy_ranks else None
    draining = {e.name for e in obs.executors if e.draining}
    out = [p for p in pods if p.name not in busy_names
           and (limit is None or p.controller_rank() <= limit)]
    # Within a rank, executors already draining go first.
    return sorted(out, key=lambda p: (p.controller_rank(), p.name not in draining, p.name))


def decide(obs: Observation, bounds: Bounds, state: PolicyState, now: float) -> Decision:
    """The replica count for this interval and which pods must go for it."""
    wanted = bounds.clamp(wanted_executors(obs))
    current = obs.replicas
    if wanted > current:  # also when below the minimum (wanted is clamped)
        target = max(bounds.minimum, min(wanted, current + max(1, bounds.step)))
        why = (f"bounds: {current} is below the minimum {bounds.minimum}"
               if current < bounds.minimum else
               f"scale-up: {obs.queue.idle_jobs} idle jobs need {wanted} executors, "
               f"have {current}")
        return Decision(target, (), why, wanted, replace(state, last_up=now, low_since=None))
    if wanted == current:
        return Decision(current, (), "steady: executors match the queue", wanted,
                        replace(state, low_since=None))
    low_since = state.low_since if state.low_since is not None else now
    state = replace(state, low_since=low_since)
    if current <= bounds.maximum:  # above the maximum shrinks at once
        if now - low_since < bounds.cooldown:
            return Decision(current, (), f"cool-down: {wanted} executors would do, waiting "
                            f"{bounds.cooldown - (now - low_since):.0f}s more", wanted, state)
        if state.last_up is not None and now - state.last_up < bounds.cooldown:
            return Decision(current, (), "cool-down: grew less than a cool-down ago", wanted,
                            state)
    if len({p.template_hash for p in obs.pods}) > 1:
        return Decision(current, (), "hold: a rollout is in progress", wanted, state)
    if len(obs.pods) != current:
        # The controller would not delete the pods we mark, only stop creating others.
        return Decision(current, (), f"hold: {len(obs.pods)} pods for {current} replicas, "
                        "waiting for the controller", wanted, state)
    excess = min(current - wanted, max(1, bounds.step))
    candidates = removable(obs)[:excess]
    if not candidates:
        return Decision(current, (), f"hold: {current - wanted} executors too many, "
                        "but every one is busy", wanted, state)
    target = current - len(candidates)
    return Decision(target, tuple(p.name for p in candidates),
                    f"scale-down: {len(candidates)} idle executors removed "
                    f"({wanted} needed)", wanted,
                    replace(state, last_down=now, low_since=None))
