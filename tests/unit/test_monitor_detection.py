"""Frozen-job and broken-executor detection over sequences of samples (no pool, no cluster)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from mmerep.condor import JobSample, JobState
from mmerep.monitor.detection import (
    BrokenExecutorDetector,
    ExecutorPodView,
    FrozenDetector,
    FrozenSettings,
)

WINDOW, INTERVAL = 600.0, 60.0
SETTINGS = FrozenSettings(window=WINDOW, startup_grace=120.0, restart_budget=2)


def sample(t: float, cpu: float, *, wall: float | None = None, starts: int = 1,
           status: JobState = JobState.RUNNING, **kw: object) -> JobSample:
    base = JobSample("6353.2", "alice", status, cpu, 0.0, t if wall is None else wall, starts,
                     None, 0, "s3-executor-abc", False, False, t)
    return replace(base, **kw)  # type: ignore[arg-type]


def run(detector: FrozenDetector, cpu_at: object, until: float, start: float = 0.0,
        **kw: object) -> list[tuple[float, str]]:
    """Sample every interval from ``start`` to ``until``; the actions, with their times."""
    out = []
    t = start
    while t <= until:
        for f in detector.observe([sample(t, cpu_at(t), **kw)]):  # type: ignore[operator]
            out.append((t, f.action))
            detector.acted(f)
        t += INTERVAL
    return out


def test_a_job_that_stops_using_cpu_is_vacated_within_one_window_and_one_interval() -> None:
    d = FrozenDetector(SETTINGS)
    frozen_at = 1000.0
    actions = run(d, lambda t: min(t, frozen_at) * 0.9, 2000.0)
    assert actions, "never detected"
    when, action = actions[0]
    assert action == "vacate"
    assert frozen_at + WINDOW - INTERVAL <= when <= frozen_at + WINDOW + INTERVAL


def test_a_slow_job_that_still_uses_some_cpu_is_left_alone() -> None:
    d = FrozenDetector(SETTINGS)
    assert run(d, lambda t: t * 0.001, 20_000.0) == []


def test_a_job_in_its_first_minutes_is_not_judged() -> None:
    d = FrozenDetector(FrozenSettings(window=60.0, startup_grace=300.0))
    # No CPU at all for its first 4 minutes (e.g. waiting for a licence), then busy.
    actions = run(d, lambda t: 0.0 if t < 240 else t - 240, 3000.0)
    assert actions == []


def test_a_job_transferring_input_is_not_frozen() -> None:
    d = FrozenDetector(SETTINGS)
    assert run(d, lambda t: 5.0, 5000.0, transferring_input=True) == []


def test_a_job_marked_do_not_touch_is_reported_once_and_never_acted_on() -> None:
    d = FrozenDetector(SETTINGS)
    actions = run(d, lambda t: 5.0, 5000.0, do_not_touch=True)
    assert [a for _, a in actions] == ["none"]


def test_a_suspended_job_whose_wall_clock_stands_still_is_not_frozen() -> None:
    d = FrozenDetector(SETTINGS)
    assert run(d, lambda t: 5.0, 5000.0, wall=100.0) == []


def test_restarts_follow_the_budget_then_the_job_is_held_with_a_readable_reason() -> None:
    d = FrozenDetector(SETTINGS)
    actions: list[str] = []
    reasons: list[str] = []
    t = 0.0
    for run_number in range(1, 5):  # each restart is a new run (NumJobStarts grows)
        held = bool(actions) and actions[-1] == "hold"
        for _ in range(30):
            # A held job is no longer running; the monitor must leave it alone.
            status = JobState.HELD if held else JobState.RUNNING
            for f in d.observe([sample(t, 3.0, starts=run_number, status=status)]):
                actions.append(f.action)
                reasons.append(f.reason)
                d.acted(f)
                held = f.action == "hold"
            t += INTERVAL
    assert actions == ["vacate", "vacate", "hold"]
    assert "restart 1 of 2" in reasons[0]
    assert "no checkpoint" in reasons[0]
    assert "restarted 2 times already" in reasons[-1]
    assert "condor_release 6353.2" in reasons[-1]


def test_checkpoint_time_is_named_in_the_vacate_reason() -> None:
    d = FrozenDetector(SETTINGS)
    found = []
    t = 0.0
    while not found:
        found = d.observe([sample(t, 3.0, checkpoint_time=1_700_000_000.0)])
        t += INTERVAL
    assert "checkpoint of 2023-11-14 22:13:20Z" in found[0].reason


def test_a_vacate_that_failed_is_tried_again_and_budget_is_not_spent() -> None:
    d = FrozenDetector(SETTINGS)
    seen = []
    for i in range(40):
        seen += d.observe([sample(i * INTERVAL, 3.0)])  # never acted() on
    assert len(seen) > 1 and all(f.action == "vacate" and f.restarts == 0 for f in seen)


def test_budgets_of_jobs_that_left_the_queue_are_dropped() -> None:
    d = FrozenDetector(SETTINGS, restarts={"1.0": 2, "6353.2": 1})
    d.forget_gone(["6353.2"])
    assert d.restarts == {"6353.2": 1}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=1e4), min_size=1, max_size=80),
       st.lists(st.floats(min_value=1.0, max_value=4000.0), min_size=1, max_size=80),
       st.booleans())
def test_a_job_whose_cpu_time_grows_is_never_acted_on(growth: list[float], gaps: list[float],
                                                      restarted: bool) -> None:
    d = FrozenDetector(FrozenSettings(window=60.0, startup_grace=0.0, restart_budget=0))
    t, cpu = 0.0, 0.0
    for i, grow in enumerate(growth):
        t += gaps[i % len(gaps)]
        cpu += grow
        starts = 2 if restarted and i > len(growth) // 2 else 1
        assert d.observe([sample(t, cpu, starts=starts)]) == []


def test_broken_executor_needs_the_grace_and_is_bounded_per_interval() -> None:
    d = BrokenExecutorDetector(grace=300.0, per_interval=2)
    pods = [ExecutorPodView(f"e-{i}", True) for i in range(5)]
    assert d.observe(pods, set(), set(), 0.0) == ([], 5)
    assert d.observe(pods, set(), set(), 200.0) == ([], 5)
    first, missing = d.observe(pods, set(), set(), 300.0)
    assert [b.name for b in first] == ["e-0", "e-1"] and missing == 5
    for b in first:
        d.deleted(b.name)
    second, _ = d.observe(pods[2:], set(), set(), 360.0)
    assert [b.name for b in second] == ["e-2", "e-3"]
    assert "missing from the pool for 6 min" in second[0].reason


def test_registered_busy_and_pending_executors_are_never_broken() -> None:
    d = BrokenExecutorDetector(grace=10.0, per_interval=10)
    pods = [ExecutorPodView("in-pool", True), ExecutorPodView("claimed", True),
            ExecutorPodView("pending", False)]
    for t in (0.0, 100.0, 200.0):
        broken, missing = d.observe(pods, {"in-pool"}, {"claimed"}, t)
        assert broken == [] and missing == 0


def test_an_executor_that_comes_back_starts_its_grace_again() -> None:
    d = BrokenExecutorDetector(grace=300.0)
    pod = [ExecutorPodView("e", True)]
    d.observe(pod, set(), set(), 0.0)
    d.observe(pod, {"e"}, set(), 200.0)  # registered again
    assert d.observe(pod, set(), set(), 400.0) == ([], 1)
    assert [b.name for b in d.observe(pod, set(), set(), 700.0)[0]] == ["e"]
