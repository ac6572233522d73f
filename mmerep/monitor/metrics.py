"""The monitor's Prometheus metrics, in a registry of its own (as synclocal's are).

Per-job series are bounded: only the ``max_job_series`` running jobs with the lowest CPU
utilisation get a series of their own (the ones worth looking at); every running job
counts in the histogram and the mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mmerep.condor import ExecutorSlots, JobSample, JobState

UTILISATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.5, 2.0)


@dataclass(frozen=True)
class JobUtilisation:
    job_id: str
    owner: str
    executor: str
    ratio: float  # CPU seconds per wall second per requested CPU


def utilisation(previous: dict[str, JobSample], samples: Iterable[JobSample]
                ) -> list[JobUtilisation]:
    """Each running job's CPU use between its previous sample and this one."""
    out = []
    for job in samples:
        before = previous.get(job.job_id)
        if job.status != JobState.RUNNING or before is None or before.starts != job.starts:
            continue
        wall = job.wall_s - before.wall_s
        if wall <= 0:
            continue
        ratio = max(0.0, job.cpu_s - before.cpu_s) / (wall * (job.cpus or 1.0))
        out.append(JobUtilisation(job.job_id, job.owner, job.executor or "", ratio))
    return out


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None,
                 max_job_series: int = 50) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.max_job_series = max_job_series
        self.jobs = Gauge("mmerep_monitor_jobs", "Jobs in the queue by state", ["state"],
                          registry=r)
        self.job_cpu = Gauge("mmerep_monitor_job_cpu_utilisation",
                             "CPU utilisation of a running job (CPU s per wall s per "
                             "requested CPU), for the least busy jobs only",
                             ["job", "owner", "executor"], registry=r)
        self.cpu_hist = Histogram("mmerep_monitor_running_job_cpu_utilisation",
                                  "CPU utilisation of every running job, per interval",
                                  buckets=UTILISATION_BUCKETS, registry=r)
        self.cpu_mean = Gauge("mmerep_monitor_running_jobs_cpu_utilisation_mean",
                              "Mean CPU utilisation of the running jobs", registry=r)
        self.starts = Counter("mmerep_monitor_job_starts",
                              "Job starts seen (HTCondor NumJobStarts grew)", registry=r)
        self.restarts = Counter("mmerep_monitor_job_restarts",
                                "Job starts after the first one (restarts)", registry=r)
        self.frozen = Counter("mmerep_monitor_frozen_jobs_detected",
                              "Frozen jobs detected", registry=r)
        self.frozen_actions = Counter("mmerep_monitor_frozen_jobs_acted",
                                      "Actions on frozen jobs", ["action"], registry=r)
        self.executors = Gauge("mmerep_monitor_executors", "Executors in the pool by state",
                               ["state"], registry=r)
        self.executors_missing = Gauge(
            "mmerep_monitor_executors_missing",
            "Running executor pods whose startd is not in the pool", registry=r)
        self.executors_deleted = Counter(
            "mmerep_monitor_broken_executors_deleted",
            "Running executor pods deleted because their startd was missing", registry=r)
        self.read_bytes = Gauge("mmerep_monitor_datalake_read_bytes",
                                "Bytes read from the bulk/data-lake tier by synclocal on "
                                "every node (sum of synclocal_copied_bytes)", registry=r)
        self.read_rate = Gauge("mmerep_monitor_datalake_read_bytes_per_second",
                               "Aggregated read throughput from the bulk/data-lake tier "
                               "over the last interval", registry=r)
        self.synclocal_up = Gauge("mmerep_monitor_synclocal_targets_up",
                                  "synclocal metrics endpoints that answered", registry=r)
        self.errors = Counter("mmerep_monitor_errors", "Intervals or steps that failed",
                              ["kind"], registry=r)
        self.last_run = Gauge("mmerep_monitor_last_run_timestamp_seconds",
                              "When the monitor last finished an interval", registry=r)
        self.interval_seconds = Gauge("mmerep_monitor_interval_duration_seconds",
                                      "How long the last interval took", registry=r)

    def queue(self, samples: Sequence[JobSample]) -> None:
        counts = {s.name.lower(): 0 for s in (JobState.IDLE, JobState.RUNNING, JobState.HELD)}
        for job in samples:
            key = job.status.name.lower()
            counts[key] = counts.get(key, 0) + 1
        for state, n in counts.items():
            self.jobs.labels(state).set(n)

    def job_utilisation(self, rows: Sequence[JobUtilisation]) -> None:
        self.job_cpu.clear()  # jobs that finished or left the lowest N lose their series
        for row in sorted(rows, key=lambda r: (r.ratio, r.job_id))[: self.max_job_series]:
            self.job_cpu.labels(row.job_id, row.owner, row.executor).set(round(row.ratio, 4))
        for row in rows:
            self.cpu_hist.observe(row.ratio)
        self.cpu_mean.set(sum(r.ratio for r in rows) / len(rows) if rows else 0.0)

    def pool(self, executors: Sequence[ExecutorSlots]) -> None:
        busy = sum(1 for e in executors if e.busy)
        self.executors.labels("busy").set(busy)
        self.executors.labels("idle").set(len(executors) - busy)
