"""The only door to HTCondor: the ``htcondor2``/``classad2`` bindings become plain data here.

Two implementations of one narrow interface (``Pool``):

- ``BindingsPool`` talks to a real collector and schedd through the bindings (in the
  scheduler pod, where the schedd is local and the collector is a Service away);
- ``MemoryPool`` keeps a pool in memory, for tests and for the autoscaler's own tests.

Everything returned is a frozen dataclass; every failure is a ``CondorError`` (an
``MmerepError``), so callers never see a bindings exception.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Protocol

from mmerep.errors import CondorError, CondorUnreachable

# A user puts ``+MmerepDoNotTouch = True`` in a submit file to keep monitoring's hands
# (vacate, hold, restart) off a job.
DO_NOT_TOUCH = "MmerepDoNotTouch"
# Set by the executor's config (STARTD_ATTRS) so one collector can serve several pools.
ENV_ATTRIBUTE = "MMEREP_ENV"

IDLE_CONSTRAINT = "JobStatus == 1"
ACTIVE_CONSTRAINT = "JobStatus == 1 || JobStatus == 2 || JobStatus == 5"
QUEUE_PROJECTION = ["ClusterId", "ProcId", "JobStatus", "RequestCpus", "RequestMemory"]
JOB_PROJECTION = [
    "ClusterId", "ProcId", "Owner", "JobStatus", "RemoteUserCpu", "RemoteSysCpu",
    "RemoteWallClockTime", "JobCurrentStartDate", "NumJobStarts", "LastCkptTime",
    "BlockReadKbytes", "BytesRecvd", "RemoteHost", "TransferringInput", "RequestCpus",
    DO_NOT_TOUCH,
]
SLOT_PROJECTION = [
    "Name", "Machine", "State", "Activity", "Cpus", "Memory", "TotalSlotCpus",
    "TotalSlotMemory", "PartitionableSlot", "DynamicSlot", ENV_ATTRIBUTE,
]


def slot_constraint(env_name: str) -> str:
    """The startd ads of one environment's executors."""
    return f'{ENV_ATTRIBUTE} =?= "{env_name}"'


class JobState(IntEnum):
    """HTCondor's ``JobStatus`` codes."""

    IDLE = 1
    RUNNING = 2
    REMOVED = 3
    COMPLETED = 4
    HELD = 5
    TRANSFERRING_OUTPUT = 6
    SUSPENDED = 7


@dataclass(frozen=True)
class IdleJob:
    job_id: str
    cpus: float
    memory_mb: int


@dataclass(frozen=True)
class QueueSummary:
    """What the schedd holds: idle jobs with their requests, and how many run or wait held."""

    idle: tuple[IdleJob, ...] = ()
    running: int = 0
    held: int = 0

    @property
    def idle_jobs(self) -> int:
        return len(self.idle)

    @property
    def idle_cpus(self) -> float:
        return sum(j.cpus for j in self.idle)

    @property
    def idle_memory_mb(self) -> int:
        return sum(j.memory_mb for j in self.idle)


@dataclass(frozen=True)
class ExecutorSlots:
    """One executor (a startd, i.e. one pod) and how much of it is claimed."""

    name: str  # the machine name = the pod's hostname = the pod's name
    cpus: float
    memory_mb: int
    claimed_cpus: float = 0.0
    claimed_slots: int = 0
    draining: bool = False
    claimed_memory_mb: int = 0

    @property
    def busy(self) -> bool:
        return self.claimed_slots > 0


@dataclass(frozen=True)
class JobSample:
    """One job at one moment: what monitoring compares between successive samples."""

    job_id: str  # "6353.2"
    owner: str
    status: JobState
    cpu_user_s: float
    cpu_system_s: float
    wall_s: float
    starts: int
    checkpoint_time: float | None  # epoch seconds of the last checkpoint, if any
    bytes_read: int
    executor: str | None  # the machine (pod) it runs on
    transferring_input: bool
    do_not_touch: bool
    sampled_at: float
    cpus: float = 1.0

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_system_s


class Pool(Protocol):
    """What mme-rep needs from an HTCondor pool."""

    def queue(self) -> QueueSummary: ...

    def executors(self) -> list[ExecutorSlots]: ...

    def jobs(self, job_ids: Iterable[str] | None = None) -> list[JobSample]: ...

    def drain(self, executor: str) -> None: ...

    def vacate(self, job_id: str, reason: str) -> None: ...

    def hold(self, job_id: str, reason: str) -> None: ...


# -- ads -> data (pure, so tested without a pool) ---------------------------------------

def _num(ad: Any, key: str, default: float = 0.0) -> float:
    value = ad.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _job_id(ad: Any) -> str:
    return f"{int(ad.get('ClusterId', 0))}.{int(ad.get('ProcId', 0))}"


def queue_from_ads(ads: Iterable[Any]) -> QueueSummary:
    idle, running, held = [], 0, 0
    for ad in ads:
        status = int(_num(ad, "JobStatus"))
        if status == JobState.IDLE:
            idle.append(IdleJob(_job_id(ad), _num(ad, "RequestCpus", 1.0) or 1.0,
                                int(_num(ad, "RequestMemory", 0.0))))
        elif status == JobState.RUNNING:
            running += 1
        elif status == JobState.HELD:
            held += 1
    return QueueSummary(tuple(idle), running, held)


def executors_from_ads(ads: Iterable[Any]) -> list[ExecutorSlots]:
    """Slot ads grouped by machine: the partitionable slot says the size, dynamic slots
    say what is claimed."""
    machines: dict[str, ExecutorSlots] = {}
    for ad in ads:
        machine = str(ad.get("Machine") or str(ad.get("Name", "")).partition("@")[2])
        if not machine:
            continue
        current = machines.get(machine) or ExecutorSlots(machine, 0.0, 0)
        state, activity = str(ad.get("State", "")), str(ad.get("Activity", ""))
        draining = current.draining or activity == "Draining" or state == "Drained"
        if ad.get("PartitionableSlot") is True or not ad.get("DynamicSlot"):
            current = replace(current, cpus=_num(ad, "TotalSlotCpus", _num(ad, "Cpus")),
                              memory_mb=int(_num(ad, "TotalSlotMemory", _num(ad, "Memory"))))
        if state == "Claimed":
            current = replace(current, claimed_cpus=current.claimed_cpus + _num(ad, "Cpus"),
                              claimed_slots=current.claimed_slots + 1,
                              claimed_memory_mb=current.claimed_memory_mb
                              + int(_num(ad, "Memory")))
        machines[machine] = replace(current, draining=draining)
    return sorted(machines.values(), key=lambda e: e.name)


def sample_from_ad(ad: Any, now: float) -> JobSample:
    status = int(_num(ad, "JobStatus", 1))
    wall = _num(ad, "RemoteWallClockTime")
    started = _num(ad, "JobCurrentStartDate")
    if status == JobState.RUNNING and started:
        wall += max(0.0, now - started)
    kbytes = ad.get("BlockReadKbytes")
    read = int(_num(ad, "BlockReadKbytes") * 1024) if kbytes is not None else \
        int(_num(ad, "BytesRecvd"))
    host = ad.get("RemoteHost")
    checkpoint = ad.get("LastCkptTime")
    try:
        state = JobState(status)
    except ValueError:
        state = JobState.IDLE
    return JobSample(
        job_id=_job_id(ad), owner=str(ad.get("Owner", "")), status=state,
        cpu_user_s=_num(ad, "RemoteUserCpu"), cpu_system_s=_num(ad, "RemoteSysCpu"),
        wall_s=wall, starts=int(_num(ad, "NumJobStarts")),
        checkpoint_time=float(checkpoint) if checkpoint else None, bytes_read=read,
        executor=str(host).partition("@")[2] or str(host) if host else None,
        transferring_input=ad.get("TransferringInput") is True,
        do_not_touch=ad.get(DO_NOT_TOUCH) is True, sampled_at=now,
        cpus=_num(ad, "RequestCpus", 1.0) or 1.0)


def pool_size(pool: Pool) -> tuple[int | None, int | None, str]:
    """Executors registered in the pool and how many are busy; or (None, None, why not)."""
    try:
        executors = pool.executors()
    except CondorError as exc:
        text = str(exc.message)
        note = "collector not answering" if "collector" in text.lower() or \
            "communication" in text.lower() else text
        return None, None, note
    return len(executors), sum(1 for e in executors if e.busy), ""


# -- the real pool --------------------------------------------------------------------

class BindingsPool:
    """A real pool through the bindings; every call bounded by ``timeout`` seconds."""

    # Importing the bindings costs ~40 ms of CPU: a caller with other work to do asks
    # from a forked child (mmerep.background), not a thread that would hold the GIL.
    ask_in_child = True

    def __init__(self, env_name: str, *, collector: str | None = None,
                 timeout: float = 10.0) -> None:
        self.env_name = env_name
        self.collector_address = collector
        self.timeout = timeout

    def _bindings(self) -> Any:
        import htcondor2

        # A collector that accepts and never answers would otherwise hold us 60 s.
        htcondor2.param["QUERY_TIMEOUT"] = str(max(1, int(self.timeout)))
        return htcondor2

    def _collector(self) -> Any:
        htcondor2 = self._bindings()
        return htcondor2.Collector(self.collector_address) if self.collector_address \
            else htcondor2.Collector()

    def _schedd(self) -> Any:
        htcondor2 = self._bindings()
        try:
            return htcondor2.Schedd()
        except Exception as exc:
            raise CondorUnreachable(f"the schedd cannot be located: {exc}",
                                    hint="run this in the scheduler pod") from None

    def _call(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except CondorError:
            raise
        except Exception as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "communication" in text.lower() or "locate" in text.lower():
                raise CondorUnreachable(f"{what}: {text}") from None
            raise CondorError(f"{what}: {text}") from None

    def queue(self) -> QueueSummary:
        schedd = self._schedd()
        ads = self._call("query the schedd", schedd.query, ACTIVE_CONSTRAINT, QUEUE_PROJECTION)
        return queue_from_ads(ads)

    def executors(self) -> list[ExecutorSlots]:
        import htcondor2

        collector = self._call("reach the collector", self._collector)
        ads = self._call("query the collector", collector.query, htcondor2.AdType.Startd,
                         slot_constraint(self.env_name), SLOT_PROJECTION)
        return executors_from_ads(ads)

    def jobs(self, job_ids: Iterable[str] | None = None) -> list[JobSample]:
        constraint = ACTIVE_CONSTRAINT
        if job_ids is not None:
            wanted = [j for j in job_ids if _valid_job_id(j)]
            if not wanted:
                return []
            constraint = " || ".join(
                f"(ClusterId == {c} && ProcId == {p})"
                for c, p in (j.split(".") for j in wanted))
        schedd = self._schedd()
        ads = self._call("query the schedd", schedd.query, constraint, JOB_PROJECTION)
        now = time.time()
        return [sample_from_ad(ad, now) for ad in ads]

    def drain(self, executor: str) -> None:
        htcondor2 = self._bindings()
        collector = self._call("reach the collector", self._collector)
        ads = self._call("locate the startd", collector.query, htcondor2.AdType.Startd,
                         f'{slot_constraint(self.env_name)} && Machine == "{executor}"',
                         ["Name", "MyAddress", "MyType", "CondorVersion", "Machine"])
        if not ads:
            raise CondorError(f"executor {executor} is not in the pool")
        startd = htcondor2.Startd(ads[0])
        self._call(f"drain {executor}", startd.drainJobs, htcondor2.DrainType.Graceful,
                   reason="mme-rep scaler: scaling down")

    def _act(self, action_name: str, job_id: str, reason: str) -> None:
        import htcondor2

        if not _valid_job_id(job_id):
            raise CondorError(f"'{job_id}' is not a job id", hint="e.g. 6353.2")
        schedd = self._schedd()
        self._call(f"{action_name} job {job_id}", schedd.act,
                   getattr(htcondor2.JobAction, action_name), job_id, reason)

    def vacate(self, job_id: str, reason: str) -> None:
        self._act("Vacate", job_id, reason)

    def hold(self, job_id: str, reason: str) -> None:
        self._act("Hold", job_id, reason)


def _valid_job_id(job_id: str) -> bool:
    cluster, dot, proc = job_id.partition(".")
    return bool(dot) and cluster.isdigit() and proc.isdigit()


# -- the in-memory pool ------------------------------------------------------------------

@dataclass
class MemoryJob:
    job_id: str
    owner: str = "processor"
    cpus: float = 1.0
    memory_mb: int = 1024
    status: JobState = JobState.IDLE
    executor: str | None = None
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    wall_s: float = 0.0
    starts: int = 0
    checkpoint_time: float | None = None
    bytes_read: int = 0
    transferring_input: bool = False
    do_not_touch: bool = False
    actions: list[str] = field(default_factory=list)


@dataclass
class MemoryExecutor:
    name: str
    cpus: float = 1.0
    memory_mb: int = 2048
    draining: bool = False


class MemoryPool:
    """A pool in memory with the same interface; tests drive it (submit, start, finish).

    ``reachable = False`` makes every read fail as an unreachable collector does.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, MemoryJob] = {}
        self._executors: dict[str, MemoryExecutor] = {}
        self._clusters = itertools.count(1)
        self.reachable = True
        self.drained: list[str] = []
        self.clock: Callable[[], float] = time.time  # sample times (tests move it)

    def _check(self) -> None:
        if not self.reachable:
            raise CondorUnreachable("query the collector: Failed communication with collector.")

    # driving it
    def submit(self, count: int = 1, *, cpus: float = 1.0, memory_mb: int = 1024,
               owner: str = "processor", **attrs: Any) -> list[str]:
        with self._lock:
            cluster = next(self._clusters)
            ids = [f"{cluster}.{proc}" for proc in range(count)]
            for job_id in ids:
                self._jobs[job_id] = MemoryJob(job_id, owner, cpus, memory_mb, **attrs)
            return ids

    def add_executor(self, name: str, cpus: float = 1.0, memory_mb: int = 2048) -> None:
        with self._lock:
            self._executors[name] = MemoryExecutor(name, cpus, memory_mb)

    def remove_executor(self, name: str) -> None:
        with self._lock:
            self._executors.pop(name, None)
            for job in self._jobs.values():
                if job.executor == name:
                    job.status, job.executor = JobState.IDLE, None

    def set_executors(self, names: Iterable[str], cpus: float = 1.0,
                      memory_mb: int = 2048) -> None:
        """Make the registered executors exactly ``names`` (as pods come and go)."""
        names = list(names)
        for gone in set(self._executors) - set(names):
            self.remove_executor(gone)
        for name in names:
            if name not in self._executors:
                self.add_executor(name, cpus, memory_mb)

    def start(self, job_id: str, executor: str) -> None:
        with self._lock:
            job = self._jobs[job_id]
            job.status, job.executor = JobState.RUNNING, executor
            job.starts += 1

    def schedule(self) -> int:
        """Match idle jobs to free executor CPUs, as a negotiator cycle would."""
        started = 0
        for executor in self.executors():
            if executor.draining:
                continue
            free = executor.cpus - executor.claimed_cpus
            for job in [j for j in self._jobs.values() if j.status == JobState.IDLE]:
                if job.cpus <= free:
                    self.start(job.job_id, executor.name)
                    free -= job.cpus
                    started += 1
        return started

    def finish(self, job_ids: Iterable[str] | None = None) -> None:
        with self._lock:
            for job_id in list(job_ids) if job_ids is not None else list(self._jobs):
                self._jobs.pop(job_id, None)

    def update(self, job_id: str, **attrs: Any) -> None:
        with self._lock:
            job = self._jobs[job_id]
            for key, value in attrs.items():
                setattr(job, key, value)

    # the interface
    def queue(self) -> QueueSummary:
        self._check()
        with self._lock:
            jobs = list(self._jobs.values())
        return QueueSummary(
            tuple(IdleJob(j.job_id, j.cpus, j.memory_mb) for j in jobs
                  if j.status == JobState.IDLE),
            sum(1 for j in jobs if j.status == JobState.RUNNING),
            sum(1 for j in jobs if j.status == JobState.HELD))

    def executors(self) -> list[ExecutorSlots]:
        self._check()
        with self._lock:
            out = []
            for e in self._executors.values():
                mine = [j for j in self._jobs.values()
                        if j.executor == e.name and j.status == JobState.RUNNING]
                out.append(ExecutorSlots(e.name, e.cpus, e.memory_mb,
                                         sum(j.cpus for j in mine), len(mine), e.draining,
                                         sum(j.memory_mb for j in mine)))
        return sorted(out, key=lambda x: x.name)

    def jobs(self, job_ids: Iterable[str] | None = None) -> list[JobSample]:
        self._check()
        now = self.clock()
        with self._lock:
            wanted = set(job_ids) if job_ids is not None else None
            return [JobSample(j.job_id, j.owner, j.status, j.cpu_user_s, j.cpu_system_s,
                              j.wall_s, j.starts, j.checkpoint_time, j.bytes_read,
                              j.executor, j.transferring_input, j.do_not_touch, now, j.cpus)
                    for j in self._jobs.values() if wanted is None or j.job_id in wanted]

    def drain(self, executor: str) -> None:
        self._check()
        with self._lock:
            if executor not in self._executors:
                raise CondorError(f"executor {executor} is not in the pool")
            self._executors[executor].draining = True
            self.drained.append(executor)

    def _act(self, action: str, job_id: str, reason: str) -> MemoryJob:
        self._check()
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise CondorError(f"{action} job {job_id}: no such job")
            job.actions.append(f"{action}: {reason}")
            return job

    def vacate(self, job_id: str, reason: str) -> None:
        job = self._act("vacate", job_id, reason)
        with self._lock:
            job.status, job.executor = JobState.IDLE, None

    def hold(self, job_id: str, reason: str) -> None:
        job = self._act("hold", job_id, reason)
        with self._lock:
            job.status, job.executor = JobState.HELD, None
