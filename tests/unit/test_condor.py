"""The HTCondor door: ads become data, the in-memory pool behaves like a pool, and the
bindings path goes as far as it can without a daemon (real classad2 parser, real timeout)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import classad2
import pytest

from mmerep import condor
from mmerep.condor import BindingsPool, JobState, MemoryPool
from mmerep.errors import CondorError, CondorUnreachable


@pytest.mark.parametrize(("expression", "matching", "other"), [
    (condor.IDLE_CONSTRAINT, {"JobStatus": 1}, {"JobStatus": 2}),
    (condor.ACTIVE_CONSTRAINT, {"JobStatus": 5}, {"JobStatus": 4}),
    (condor.slot_constraint("sentinel3"), {"MMEREP_ENV": "sentinel3"}, {}),
    (f'{condor.slot_constraint("s3")} && Machine == "s3-executor-abc"',
     {"MMEREP_ENV": "s3", "Machine": "s3-executor-abc"}, {"MMEREP_ENV": "s3", "Machine": "x"}),
])
def test_constraints_parse_and_select_with_the_real_classad_library(
        expression: str, matching: dict, other: dict) -> None:
    tree = classad2.ExprTree(expression)
    assert tree.eval(classad2.ClassAd(matching)) is True
    assert tree.eval(classad2.ClassAd(other)) is not True


def test_a_broken_expression_is_refused_by_the_same_parser() -> None:
    with pytest.raises(Exception, match="parse"):
        classad2.ExprTree("JobStatus ==")


@pytest.mark.parametrize("projection", [condor.QUEUE_PROJECTION, condor.JOB_PROJECTION,
                                        condor.SLOT_PROJECTION])
def test_projections_are_attribute_names(projection: list[str]) -> None:
    for name in projection:
        ad = classad2.ClassAd(f"[{name} = 1]")
        assert ad[name] == 1


def test_executors_from_partitionable_and_dynamic_slots() -> None:
    ads = [
        classad2.ClassAd({"Name": "slot1@e-1", "Machine": "e-1", "PartitionableSlot": True,
                          "State": "Unclaimed", "Activity": "Idle", "Cpus": 2,
                          "TotalSlotCpus": 4, "TotalSlotMemory": 8192, "Memory": 4096}),
        classad2.ClassAd({"Name": "slot1_1@e-1", "Machine": "e-1", "DynamicSlot": True,
                          "State": "Claimed", "Activity": "Busy", "Cpus": 2, "Memory": 4096}),
        classad2.ClassAd({"Name": "slot1@e-2", "Machine": "e-2", "PartitionableSlot": True,
                          "State": "Drained", "Activity": "Idle", "Cpus": 4,
                          "TotalSlotCpus": 4, "TotalSlotMemory": 8192}),
    ]
    e1, e2 = condor.executors_from_ads(ads)
    assert (e1.name, e1.cpus, e1.memory_mb, e1.claimed_cpus, e1.busy) == ("e-1", 4, 8192, 2, True)
    assert (e2.name, e2.busy, e2.draining) == ("e-2", False, True)


def test_queue_summary_from_job_ads() -> None:
    ads = [classad2.ClassAd({"ClusterId": 7, "ProcId": i, "JobStatus": s, "RequestCpus": 2,
                             "RequestMemory": 1000}) for i, s in enumerate([1, 1, 2, 5])]
    queue = condor.queue_from_ads(ads)
    assert (queue.idle_jobs, queue.running, queue.held) == (2, 1, 1)
    assert (queue.idle_cpus, queue.idle_memory_mb) == (4, 2000)
    assert queue.idle[0].job_id == "7.0"


def test_job_sample_from_an_ad() -> None:
    now = 1_000_000.0
    ad = classad2.ClassAd({
        "ClusterId": 6353, "ProcId": 2, "Owner": "alice", "JobStatus": 2,
        "RemoteUserCpu": 100.0, "RemoteSysCpu": 5.0, "RemoteWallClockTime": 50.0,
        "JobCurrentStartDate": int(now - 200), "NumJobStarts": 3, "LastCkptTime": int(now - 60),
        "BlockReadKbytes": 2048, "RemoteHost": "slot1_1@sentinel3-executor-x", "TransferringInput":
        False, condor.DO_NOT_TOUCH: True, "RequestCpus": 4})
    s = condor.sample_from_ad(ad, now)
    assert s.job_id == "6353.2" and s.owner == "alice" and s.status is JobState.RUNNING
    assert s.cpu_s == 105.0 and s.wall_s == 250.0 and s.starts == 3
    assert s.checkpoint_time == now - 60 and s.bytes_read == 2048 * 1024
    assert s.executor == "sentinel3-executor-x" and s.do_not_touch and not s.transferring_input
    assert s.cpus == 4


def test_memory_pool_schedules_claims_and_drains() -> None:
    pool = MemoryPool()
    pool.add_executor("e-1", cpus=2)
    pool.add_executor("e-2", cpus=2)
    pool.submit(3, cpus=1)
    assert pool.queue().idle_jobs == 3
    assert pool.schedule() == 3
    busy = {e.name: e.claimed_cpus for e in pool.executors()}
    assert busy == {"e-1": 2, "e-2": 1}
    assert pool.queue().running == 3 and pool.queue().idle_jobs == 0
    pool.drain("e-2")
    assert [e.name for e in pool.executors() if e.draining] == ["e-2"]
    with pytest.raises(CondorError, match="not in the pool"):
        pool.drain("e-9")


def test_memory_pool_vacate_and_hold_act_on_jobs() -> None:
    pool = MemoryPool()
    pool.add_executor("e-1", cpus=4)
    first, second = pool.submit(2)
    pool.schedule()
    pool.vacate(first, "frozen: no CPU for 10 minutes")
    pool.hold(second, "restarted too often")
    states = {s.job_id: s.status for s in pool.jobs()}
    assert states == {first: JobState.IDLE, second: JobState.HELD}
    pool.start(first, "e-1")
    assert pool.jobs([first])[0].starts == 2
    with pytest.raises(CondorError, match="no such job"):
        pool.hold("99.0", "x")


def test_memory_pool_unreachable_is_a_condor_error() -> None:
    pool = MemoryPool()
    pool.reachable = False
    with pytest.raises(CondorUnreachable):
        pool.executors()


@pytest.fixture()
def silent_collector() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung collector)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_collector_that_does_not_answer_fails_within_the_timeout(silent_collector: int) -> None:
    pool = BindingsPool("sentinel3", collector=f"127.0.0.1:{silent_collector}", timeout=2)
    started = time.monotonic()
    with pytest.raises(CondorUnreachable, match="collector"):
        pool.executors()
    assert time.monotonic() - started < 6


def test_a_refused_collector_is_unreachable_at_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = BindingsPool("sentinel3", collector=f"127.0.0.1:{port}", timeout=2)
    with pytest.raises(CondorUnreachable):
        pool.executors()


def test_bad_job_ids_never_reach_the_schedd() -> None:
    pool = BindingsPool("sentinel3", collector="127.0.0.1:1")
    with pytest.raises(CondorError, match="not a job id"):
        pool.vacate("1; rm", "x")
    assert pool.jobs(["nonsense"]) == []
