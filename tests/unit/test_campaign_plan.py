"""The campaign plan's arithmetic, on cases checked by hand (see mmerep/campaign/plan.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mmerep.campaign.plan import (
    MemberRoom,
    Work,
    parse_duration,
    parse_when,
    plan_campaign,
    slots_per_executor,
)
from mmerep.errors import MmerepError, UsageError

GI = 2**30
NOW = datetime(2027, 1, 1, tzinfo=UTC)
TEN_DAYS = datetime(2027, 1, 11, tzinfo=UTC)
# 1000 jobs of 2 h CPU time on one core and 4Gi each.
WORK = Work(jobs=1000, cpu_seconds=7200, memory=4 * GI)


def big(name: str, room: int, deployed: int = 0) -> MemberRoom:
    return MemberRoom(name, executor_cpu=4, executor_memory=16 * GI, deployed=deployed,
                      room=room)


def test_one_member_gets_just_enough_executors() -> None:
    # 240 h left / 2 h a job = 120 waves; ceil(1000/120) = 9 slots; 4 slots an executor
    # (4 CPU / 1, 16Gi / 4Gi) -> 3 executors = 12 slots; ceil(1000/12) = 84 waves = 168 h.
    plan = plan_campaign(WORK, TEN_DAYS, NOW, [big("a", room=50)])
    assert (plan.waves_before_deadline, plan.slots_needed) == (120, 9)
    assert [(s.name, s.executors, s.slots_per_executor) for s in plan.shares] == [("a", 3, 4)]
    assert plan.on_time
    assert plan.end_with_plan == datetime(2027, 1, 8, tzinfo=UTC)
    assert plan.end_with_deployed is None  # nothing deployed yet
    # With all 50 executors: 200 slots, 5 waves, 10 h.
    assert plan.end_with_everything == datetime(2027, 1, 1, 10, tzinfo=UTC)


def test_members_are_filled_most_room_first_and_deployed_executors_count() -> None:
    # b: 10 executors of 2 CPU / 8Gi (2 slots each) = 20 slots of room; a: 1 deployed + 1
    # room of 4 slots = 8. b first: ceil(9/2) = 5 executors (10 slots); a keeps its 1.
    small = MemberRoom("b", executor_cpu=2, executor_memory=8 * GI, room=10)
    plan = plan_campaign(WORK, TEN_DAYS, NOW, [big("a", room=1, deployed=1), small])
    assert [(s.name, s.executors, s.deployed) for s in plan.shares] == [("b", 5, 0),
                                                                         ("a", 1, 1)]
    # 14 slots: ceil(1000/14) = 72 waves = 144 h = 6 days.
    assert plan.end_with_plan == datetime(2027, 1, 7, tzinfo=UTC)
    # What is deployed now, a's one executor: 4 slots, 250 waves = 500 h = 20 d 20 h.
    assert plan.end_with_deployed == datetime(2027, 1, 21, 20, tzinfo=UTC)
    assert plan.to_dict()["members"][0] == {"name": "b", "executors": 5, "deployed": 0,
                                            "add": 5, "slots_per_executor": 2,
                                            "available": 10}


def test_ties_keep_the_groups_order() -> None:
    plan = plan_campaign(WORK, TEN_DAYS, NOW, [big("z", room=5), big("a", room=5)])
    assert [(s.name, s.executors) for s in plan.shares] == [("z", 3), ("a", 0)]


def test_a_deadline_that_cannot_be_met_says_by_how_much_and_what_would_meet_it() -> None:
    # Room for 2 executors = 8 slots, 9 needed. With 8: 125 waves = 250 h = 10 d 10 h.
    plan = plan_campaign(WORK, TEN_DAYS, NOW, [big("a", room=2)])
    assert not plan.on_time
    assert plan.late_by_seconds == 10 * 3600
    assert plan.more_executors_needed == 1
    assert plan.would_meet_it == [
        "1 more executors of 4 CPU / 16Gi (room on a new member, or freed on one)",
        "a deadline of 2027-01-11T10:00:00+00:00 with every executor that fits"]


def test_a_deadline_shorter_than_one_job() -> None:
    plan = plan_campaign(WORK, datetime(2027, 1, 1, 1, tzinfo=UTC), NOW, [big("a", room=50)])
    assert plan.slots_needed is None and not plan.on_time
    # All 50 executors: 10 h, so 9 h after the 1 h deadline.
    assert plan.late_by_seconds == 9 * 3600
    assert plan.would_meet_it[0].startswith("a deadline at least 2:00:00 away")


def test_members_down_or_too_small_are_skipped_and_said_why() -> None:
    down = MemberRoom("b", 4, 16 * GI, room=None, down="connection refused")
    tiny = MemberRoom("c", 1, 2 * GI, room=100)
    plan = plan_campaign(WORK, TEN_DAYS, NOW, [big("a", room=50), down, tiny])
    assert [s.name for s in plan.shares] == ["a"]
    assert plan.skipped == {
        "b": "down: connection refused",
        "c": "a job (1 CPU, 4Gi) does not fit in its executors (1 CPU, 2Gi)"}


def test_nothing_usable() -> None:
    plan = plan_campaign(WORK, TEN_DAYS, NOW, [MemberRoom("b", 4, 16 * GI, room=None,
                                                           down="timed out")])
    assert not plan.on_time and plan.would_meet_it == [
        "9 job slots on members that are up and have room"]


def test_slots_per_executor() -> None:
    assert slots_per_executor(WORK, 4, 16 * GI) == 4
    assert slots_per_executor(WORK, 16, 16 * GI) == 4  # memory-bound
    assert slots_per_executor(Work(1, 60, GI, job_cpus=0.5), 1.5, 8 * GI) == 3


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("45m", 2700), ("1.5h", 5400),
                                               ("3d", 259200), ("2w", 1209600), ("600", 600)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-2h", "0", "2x", "nanh"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError, match="is not a duration"):
        parse_duration(text)


def test_dates_and_bad_input() -> None:
    assert parse_when("2027-03-01") == datetime(2027, 3, 1, tzinfo=UTC)
    with pytest.raises(UsageError, match="is not a date"):
        parse_when("March")
    with pytest.raises(UsageError, match="not in the future"):
        plan_campaign(WORK, NOW, NOW, [big("a", 1)])
    with pytest.raises(UsageError, match="jobs"):
        plan_campaign(Work(0, 1, 1), TEN_DAYS, NOW, [])


def test_campaign_progress_and_projected_finish() -> None:
    from mmerep.campaign.progress import label_campaign, project

    rows = [{"member": "a", "namespace": "s3", "environment": "olci", "executors": 3,
             "ready": 2, "executor_cpu": "4", "executor_memory": "16Gi"},
            {"member": "b", "down": "connection refused"}]
    # 400 of 1000 done; 600 left on the 2 serving executors' 8 slots: 75 waves of 2 h.
    data = project(WORK, 400, rows, NOW, TEN_DAYS)
    assert (data["percent_done"], data["slots_serving"]) == (40.0, 8)
    assert data["projected_finish"] == "2027-01-07T06:00:00+00:00"
    assert data["on_time"] is True
    assert project(WORK, 1000, [], NOW)["projected_finish"] == NOW.isoformat()
    assert project(WORK, 0, [], NOW)["projected_finish"] is None
    with pytest.raises(UsageError, match="--done 1001"):
        project(WORK, 1001, rows, NOW)
    objs = label_campaign([{"metadata": {"labels": {"x": "1"}},
                            "spec": {"template": {"metadata": {"labels": {}}}}}], "s3-olci")
    assert objs[0]["metadata"]["labels"] == {"x": "1", "mme-rep/campaign": "s3-olci"}
    assert objs[0]["spec"]["template"]["metadata"]["labels"] == {}
    with pytest.raises(UsageError, match="not a label value"):
        label_campaign([{}], "no spaces")


def test_work_measured_from_a_queue() -> None:
    from mmerep.campaign.measured import work_from_queue
    from mmerep.condor import MemoryPool

    pool = MemoryPool()
    with pytest.raises(UsageError, match="the queue is empty"):
        work_from_queue(pool, 7200)
    pool.submit(3, cpus=1, memory_mb=4096)
    pool.submit(1, cpus=2, memory_mb=8192)
    work = work_from_queue(pool, 7200)
    # 4 idle jobs: (1+1+1+2)/4 = 1.25 CPUs and (3*4096+8192)/4 = 5120 MiB each.
    assert work == Work(jobs=4, cpu_seconds=7200, memory=5120 * 2**20, job_cpus=1.25)
    pool.reachable = False
    with pytest.raises(MmerepError, match="Failed communication with collector"):
        work_from_queue(pool, 7200)
