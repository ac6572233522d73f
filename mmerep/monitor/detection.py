"""Pure detection over successive samples: frozen jobs and broken executors.

No I/O here: the loop feeds samples in and carries the findings out, so every rule is
tested as data over sequences of samples.

A running job is *frozen* when its CPU time (user + system) has not grown for
``window`` seconds while its wall clock has. The clock that counts is the sample time of
the first sample that showed the job's current CPU time: the job has certainly made no
progress since then. With samples every ``interval`` and a window that is a multiple of
it, a job that freezes is therefore found at most one window plus one interval later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mmerep.condor import JobSample, JobState


@dataclass(frozen=True)
class FrozenSettings:
    window: float = 1800.0  # seconds without CPU progress
    startup_grace: float = 300.0  # a job's first minutes of a run are never judged
    restart_budget: int = 3  # vacates per job before it is held
    # Sample times drift by a little each interval; without slack a window that is a
    # multiple of the interval would sometimes need one interval more.
    slack: float = 1.0
    # The wall clock must have grown by this share of the window (a suspended job's does
    # not; HTCondor refreshes the counters only every few minutes).
    wall_share: float = 0.5


@dataclass
class _Track:
    """What one job's current run has shown so far."""

    starts: int
    run_seen: float
    progress_at: float
    progress_cpu: float
    progress_wall: float
    reported: bool = False  # a do-not-touch detection is reported once per run


@dataclass(frozen=True)
class Finding:
    """One frozen job and what to do about it: ``vacate``, ``hold`` or ``none``."""

    job_id: str
    owner: str
    executor: str | None
    action: str
    stalled_s: float
    restarts: int  # vacates the monitor did before this one
    reason: str


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _checkpoint_note(sample: JobSample) -> str:
    if sample.checkpoint_time:
        from datetime import UTC, datetime

        when = datetime.fromtimestamp(sample.checkpoint_time, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return f"it restarts from its checkpoint of {when}"
    return "it has no checkpoint, so it restarts from the beginning"


@dataclass
class FrozenDetector:
    """Tracks every running job between samples; ``observe`` returns what is frozen."""

    settings: FrozenSettings = field(default_factory=FrozenSettings)
    restarts: dict[str, int] = field(default_factory=dict)  # vacates done, per job
    _tracks: dict[str, _Track] = field(default_factory=dict)

    def observe(self, samples: Iterable[JobSample]) -> list[Finding]:
        s = self.settings
        findings: list[Finding] = []
        seen: set[str] = set()
        for job in samples:
            seen.add(job.job_id)
            if job.status != JobState.RUNNING:
                self._tracks.pop(job.job_id, None)
                continue
            now, cpu = job.sampled_at, job.cpu_s
            track = self._tracks.get(job.job_id)
            if track is None or track.starts != job.starts or cpu < track.progress_cpu:
                self._tracks[job.job_id] = _Track(job.starts, now, now, cpu, job.wall_s)
                continue
            if cpu > track.progress_cpu or job.transferring_input:
                # Progress (or input still arriving): the window starts again.
                track.progress_at, track.progress_cpu = now, cpu
                track.progress_wall = job.wall_s
                continue
            stalled = now - track.progress_at
            if now - track.run_seen < s.startup_grace or stalled < s.window - s.slack \
                    or job.wall_s - track.progress_wall < s.wall_share * s.window:
                continue
            finding = self._judge(job, track, stalled)
            if finding is not None:
                findings.append(finding)
        for gone in set(self._tracks) - seen:  # finished or removed
            del self._tracks[gone]
        return findings

    def _judge(self, job: JobSample, track: _Track, stalled: float) -> Finding | None:
        s, done = self.settings, self.restarts.get(job.job_id, 0)
        where = f" on {job.executor}" if job.executor else ""
        base = f"job {job.job_id} ({job.owner}) frozen: no CPU time for {_minutes(stalled)} " \
               f"while running{where}"
        if job.do_not_touch:
            if track.reported:
                return None
            track.reported = True
            return Finding(job.job_id, job.owner, job.executor, "none", stalled, done,
                           f"{base}; not touched: the job is marked MmerepDoNotTouch")
        if done < s.restart_budget:
            return Finding(job.job_id, job.owner, job.executor, "vacate", stalled, done,
                           f"{base}; vacated (restart {done + 1} of {s.restart_budget}): "
                           f"{_checkpoint_note(job)}")
        return Finding(job.job_id, job.owner, job.executor, "hold", stalled, done,
                       f"mme-rep monitor: {base}; restarted {done} times already (budget "
                       f"{s.restart_budget}), so held. Look at its output, then "
                       f"condor_release {job.job_id}")

    def acted(self, finding: Finding) -> None:
        """The action was carried out: count it, and judge the next run afresh."""
        if finding.action == "none":
            return
        if finding.action == "vacate":
            self.restarts[finding.job_id] = self.restarts.get(finding.job_id, 0) + 1
        self._tracks.pop(finding.job_id, None)

    def forget_gone(self, job_ids: Iterable[str]) -> None:
        """Drop the budgets of jobs that left the queue (the budget map stays bounded)."""
        alive = set(job_ids)
        for job_id in [j for j in self.restarts if j not in alive]:
            del self.restarts[job_id]


# -- broken executors ------------------------------------------------------------------

@dataclass(frozen=True)
class ExecutorPodView:
    name: str
    running: bool  # phase Running and not being deleted


@dataclass(frozen=True)
class BrokenExecutor:
    name: str
    missing_s: float
    reason: str


@dataclass
class BrokenExecutorDetector:
    """A Running executor pod whose startd has been missing from the pool for longer than
    ``grace`` is broken; at most ``per_interval`` are reported each time, and never one
    that the pool or a running job says is busy."""

    grace: float = 600.0
    per_interval: int = 2
    _missing_since: dict[str, float] = field(default_factory=dict)

    def observe(self, pods: Iterable[ExecutorPodView], registered: set[str], busy: set[str],
                now: float) -> tuple[list[BrokenExecutor], int]:
        """The pods to delete now, and how many are missing from the pool at all."""
        out: list[BrokenExecutor] = []
        missing: dict[str, float] = {}
        for pod in pods:
            if not pod.running or pod.name in registered or pod.name in busy:
                continue
            # Counted from when this monitor first saw it Running and missing: a restarted
            # monitor (or collector) gives every pod its whole grace again.
            since = self._missing_since.get(pod.name, now)
            missing[pod.name] = since
        self._missing_since = missing
        overdue = sorted((since, name) for name, since in missing.items()
                         if now - since >= self.grace)
        for since, name in overdue[: self.per_interval]:
            out.append(BrokenExecutor(name, now - since,
                                      f"executor pod {name} is Running but its startd has "
                                      f"been missing from the pool for "
                                      f"{_minutes(now - since)}; deleted, its Deployment "
                                      f"replaces it"))
        return out, len(missing)

    def deleted(self, name: str) -> None:
        self._missing_since.pop(name, None)
