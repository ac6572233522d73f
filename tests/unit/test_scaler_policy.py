"""The autoscaler's policy as data, and its promises over random queues, pools and sequences
of intervals (hypothesis): a busy executor is never chosen, the bounds hold, the marked pods
are exactly those the ReplicaSet controller deletes, and a steady queue never oscillates."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from mmerep.condor import ExecutorSlots, IdleJob, QueueSummary
from mmerep.scaler.policy import (
    Bounds,
    ExecutorPod,
    Observation,
    PolicyState,
    decide,
    removable,
    wanted_executors,
)


def queue(idle: int = 0, cpus: float = 1.0, memory: int = 512) -> QueueSummary:
    return QueueSummary(tuple(IdleJob(f"1.{i}", cpus, memory) for i in range(idle)))


def pods(*names: str, phase: str = "Running") -> tuple[ExecutorPod, ...]:
    return tuple(ExecutorPod(n, phase) for n in names)


def slot(name: str, busy: bool = False, cpus: float = 1.0) -> ExecutorSlots:
    return ExecutorSlots(name, cpus, 1024, cpus if busy else 0.0, int(busy))


def test_a_queue_jump_grows_by_at_most_a_step() -> None:
    obs = Observation(queue(100), (slot("a"), slot("b")), pods("a", "b"), 2)
    d = decide(obs, Bounds(0, 50, step=20), PolicyState(), now=0)
    assert (d.replicas, d.remove, d.wanted) == (22, (), 50)
    assert d.reason.startswith("scale-up: 100 idle jobs need 50 executors")


def test_pending_executors_count_so_it_does_not_overshoot() -> None:
    # 10 idle jobs, 10 replicas of which 8 still Pending: nothing more to add.
    obs = Observation(queue(10), (slot("a"), slot("b")),
                      pods("a", "b") + pods(*"cdefghij", phase="Pending"), 10)
    d = decide(obs, Bounds(0, 50), PolicyState(), now=0)
    assert d.replicas == 10 and d.reason.startswith("steady")


def test_executor_size_and_job_size_both_count() -> None:
    four_cpu = Observation(queue(8, cpus=2), (), (), 0, slot_cpus=4, slot_memory_mb=16384)
    assert wanted_executors(four_cpu) == 4
    memory_bound = Observation(queue(4, cpus=1, memory=6000), (), (), 0, slot_cpus=4,
                               slot_memory_mb=8000)
    assert wanted_executors(memory_bound) == 4  # 6000 MB jobs: one per 8000 MB executor


def test_shrinks_only_after_the_cool_down_and_only_idle_executors() -> None:
    pool = (slot("a", busy=True), slot("b"), slot("c"))
    obs = Observation(queue(0), pool, pods("a", "b", "c"), 3)
    bounds = Bounds(0, 10, cooldown=60)
    first = decide(obs, bounds, PolicyState(), now=100)
    assert first.replicas == 3 and first.reason.startswith("cool-down")
    later = decide(obs, bounds, first.state, now=161)
    assert later.replicas == 1 and set(later.remove) == {"b", "c"}


def test_everything_busy_holds() -> None:
    obs = Observation(queue(0), (slot("a", busy=True), slot("b", busy=True)), pods("a", "b"),
                      3 - 1 + 0)
    d = decide(obs, Bounds(0, 1, cooldown=0), PolicyState(), now=0)
    assert d.replicas == 2 and not d.remove and "busy" in d.reason


def test_pending_pods_go_before_idle_running_ones() -> None:
    obs = Observation(queue(0), (slot("a"),), pods("a") + pods("p", phase="Pending"), 2)
    assert [p.name for p in removable(obs)] == ["p", "a"]


def test_a_not_ready_busy_pod_shields_the_ready_idle_ones() -> None:
    # The controller deletes not-ready pods before ready ones whatever their cost, so an
    # idle ready pod cannot be removed while a busy not-ready one exists.
    busy = ExecutorPod("b", ready=False)
    obs = Observation(queue(0), (slot("a"), slot("b", busy=True)), (ExecutorPod("a"), busy), 2)
    assert removable(obs) == []


# -- properties ---------------------------------------------------------------------------

@dataclass
class World:
    pods: list[ExecutorPod]
    busy: set[str]
    replicas: int
    idle_jobs: int
    created: int = 0
    history: list[tuple[float, int]] = field(default_factory=list)

    def observation(self) -> Observation:
        slots = tuple(slot(p.name, p.name in self.busy) for p in self.pods
                      if p.phase == "Running")
        return Observation(queue(self.idle_jobs), slots, tuple(self.pods), self.replicas)


pod_strategy = st.builds(
    ExecutorPod, name=st.text("abcdefgh", min_size=3, max_size=3),
    phase=st.sampled_from(["Pending", "Running", "Running", "Unknown"]),
    node=st.sampled_from([None, "node-1", "node-2"]), ready=st.booleans())


@st.composite
def worlds(draw: st.DrawFn) -> World:
    found = draw(st.lists(pod_strategy, max_size=25, unique_by=lambda p: p.name))
    running = [p.name for p in found if p.phase == "Running"]
    busy = set(draw(st.lists(st.sampled_from(running), unique=True))) if running else set()
    return World(found, busy, len(found), draw(st.integers(0, 80)))


bounds_strategy = st.builds(
    lambda lo, span, step, cool: Bounds(lo, lo + span, step, cool),
    st.integers(0, 10), st.integers(0, 40), st.integers(1, 15),
    st.sampled_from([0.0, 30.0, 60.0, 300.0]))


def controller_deletes(pods_: list[ExecutorPod], marked: set[str], keep: int) -> set[str]:
    """The ReplicaSet controller's choice (rank, then pod-deletion-cost; ties: any)."""
    ranked = sorted(pods_, key=lambda p: (p.controller_rank(), -1 if p.name in marked else 0))
    return {p.name for p in ranked[:len(pods_) - keep]}


def apply(world: World, replicas: int, remove: tuple[str, ...]) -> None:
    world.pods = [p for p in world.pods if p.name not in remove]
    while len(world.pods) < replicas:
        world.created += 1
        world.pods.append(ExecutorPod(f"new{world.created}", "Pending", None, False))
    world.replicas = replicas


@settings(max_examples=300, deadline=None)
@given(worlds(), bounds_strategy, st.lists(st.tuples(st.floats(1, 200), st.integers(-30, 30)),
                                           min_size=1, max_size=12))
def test_busy_never_removed_bounds_hold_and_marks_are_what_the_controller_deletes(
        world: World, bounds: Bounds, steps: list[tuple[float, int]]) -> None:
    state, now = PolicyState(), 0.0
    for gap, queue_change in steps:
        now += gap
        world.idle_jobs = max(0, world.idle_jobs + queue_change)
        before = world.replicas
        obs = world.observation()
        d = decide(obs, bounds, state, now)
        assert not set(d.remove) & world.busy, "a busy executor was chosen"
        assert d.replicas >= bounds.minimum
        if before <= bounds.maximum:
            assert d.replicas <= bounds.maximum
        else:
            assert d.replicas <= before
        assert abs(d.replicas - before) <= max(bounds.step, bounds.minimum)
        if d.remove:
            assert d.replicas == before - len(d.remove)
            deleted = controller_deletes(world.pods, set(d.remove), d.replicas)
            assert deleted == set(d.remove), "the controller would delete other pods"
        else:
            assert d.replicas >= before or before > bounds.maximum
        if d.replicas < before and state.last_up is not None and before <= bounds.maximum:
            assert now - state.last_up >= bounds.cooldown, "shrank within a cool-down of growing"
        state = d.state
        apply(world, d.replicas, d.remove)


@settings(max_examples=200, deadline=None)
@given(worlds(), bounds_strategy, st.integers(5, 30))
def test_a_steady_queue_never_oscillates(world: World, bounds: Bounds, intervals: int) -> None:
    state, now, seen = PolicyState(), 0.0, []
    for _ in range(intervals):
        now += 15.0
        d = decide(world.observation(), bounds, state, now)
        state = d.state
        apply(world, d.replicas, d.remove)
        # New pods register idle, as startds do when they come up.
        world.pods = [ExecutorPod(p.name, "Running", "node-1", True) for p in world.pods]
        seen.append(d.replicas)
    moves = [b - a for a, b in itertools.pairwise(seen) if b != a]
    assert all(m > 0 for m in moves) or all(m < 0 for m in moves), seen
