"""The monitor ("mme-rep monitor run"): every interval, samples in, actions out.

It runs as a sidecar of the scheduler pod (or from an operator's shell). Each interval it
samples the jobs and the pool through ``mmerep.condor``, vacates (then holds) frozen jobs,
deletes Running executor pods whose startd stays missing from the pool, adds up synclocal's
data-lake reads, and updates its metrics and its state ConfigMap. Every detection and
action is a log line, an Event on the environment and a metric.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mmerep.condor import JobSample, JobState, Pool
from mmerep.errors import CondorError, KubeError, MmerepError
from mmerep.monitor import state as st
from mmerep.monitor.datalake import ReadThroughput
from mmerep.monitor.detection import (
    BrokenExecutor,
    BrokenExecutorDetector,
    ExecutorPodView,
    Finding,
    FrozenDetector,
    FrozenSettings,
)
from mmerep.monitor.metrics import Metrics, utilisation
from mmerep.monitor.objects import POD_MONITOR, pod_monitor

log = logging.getLogger(__name__)
COMPONENT = "mme-rep-monitor"
SYNCLOCAL_PORT = 9109


def executor_selector(env_name: str) -> str:
    return f"app.kubernetes.io/instance={env_name},app.kubernetes.io/component=executor"


def synclocal_selector(env_name: str) -> str:
    return f"app.kubernetes.io/instance={env_name},app.kubernetes.io/component=synclocal"


def pod_is_running(pod: dict[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") == "Running" and \
        not pod["metadata"].get("deletionTimestamp")


def _now_text(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_event(namespace: str, env_name: str, component: str, reason: str, message: str,
                now: float) -> dict[str, Any]:
    """A core/v1 Event about one of the environment's workloads (``env status`` shows it)."""
    stamp = _now_text(now)
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{env_name}-monitor-", "namespace": namespace},
        "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment",
                           "name": f"{env_name}-{component}", "namespace": namespace},
        "reason": reason, "message": message[:1000], "type": "Warning", "count": 1,
        "firstTimestamp": stamp, "lastTimestamp": stamp,
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
        "reportingInstance": os.environ.get("HOSTNAME", COMPONENT)[:128],
    }


FROZEN_REASONS = {"vacate": "FrozenJobVacated", "hold": "FrozenJobHeld",
                  "none": "FrozenJobNotTouched"}


@dataclass
class Monitor:
    kube: Any
    namespace: str
    env_name: str
    pool: Pool
    interval: float = 60.0
    frozen: FrozenSettings = field(default_factory=FrozenSettings)
    executor_grace: float = 600.0
    deletions_per_interval: int = 2
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], float] = time.time
    stop: threading.Event = field(default_factory=threading.Event)
    # Where synclocal's metrics are read; default: every synclocal pod's IP on its port.
    synclocal_urls: Callable[[], list[str]] | None = None

    def __post_init__(self) -> None:
        self.detector = FrozenDetector(self.frozen)
        self.broken = BrokenExecutorDetector(self.executor_grace, self.deletions_per_interval)
        self.reads = ReadThroughput()
        self._previous: dict[str, JobSample] = {}
        self._loaded = False
        self._missing = 0
        self.findings: list[dict[str, Any]] = []

    # -- one interval ------------------------------------------------------------------

    def run_once(self) -> dict[str, Any]:
        """One interval; returns what it saw and did (also written to the state)."""
        started = time.monotonic()
        now = self.clock()
        if not self._loaded:  # the budget already spent survives a restart of the monitor
            saved = st.read_state(self.kube, self.namespace, self.env_name)
            self.detector.restarts.update(saved.restarts)
            self.findings = saved.findings
            self._loaded = True
            self.ensure_pod_monitor()
        new: list[dict[str, Any]] = []
        observed: dict[str, Any] = {"time": round(now, 3)}
        try:
            samples = self.pool.jobs()
            executors = self.pool.executors()
        except CondorError as exc:
            # Without the pool nothing can be judged: a missing startd might only be a
            # collector that does not answer.
            self.metrics.errors.labels("pool").inc()
            log.error("pool not readable, nothing judged this interval: %s", exc)
            observed["error"] = exc.message
            self._save(new, observed)
            return observed
        self._job_metrics(samples, executors)
        for finding in self.detector.observe(samples):
            new.append(self._act_on_frozen(finding, now))
        self.detector.forget_gone(j.job_id for j in samples)
        busy = {e.name for e in executors if e.busy} | {
            j.executor for j in samples if j.status == JobState.RUNNING and j.executor}
        new.extend(self._broken_executors({e.name for e in executors}, busy, now))
        self._datalake(now)
        observed.update({
            "jobs": len(samples),
            "running": sum(1 for j in samples if j.status == JobState.RUNNING),
            "held": sum(1 for j in samples if j.status == JobState.HELD),
            "executors": len(executors), "busy": sum(1 for e in executors if e.busy),
            "missing": self._missing,
        })
        self._save(new, observed)
        self.metrics.last_run.set(now)
        self.metrics.interval_seconds.set(time.monotonic() - started)
        return observed

    def _job_metrics(self, samples: list[JobSample], executors: list[Any]) -> None:
        m = self.metrics
        m.queue(samples)
        m.pool(executors)
        m.job_utilisation(utilisation(self._previous, samples))
        for job in samples:
            before = self._previous.get(job.job_id)
            grown = job.starts - (before.starts if before else 0)
            if grown > 0 and before is not None:
                m.starts.inc(grown)
                m.restarts.inc(min(grown, max(0, job.starts - 1)))
        self._previous = {j.job_id: j for j in samples}

    def _act_on_frozen(self, finding: Finding, now: float) -> dict[str, Any]:
        m = self.metrics
        m.frozen.inc()
        record = {"time": round(now, 3), "kind": "frozen", "job": finding.job_id,
                  "owner": finding.owner, "executor": finding.executor,
                  "action": finding.action, "message": finding.reason}
        try:
            if finding.action == "vacate":
                self.pool.vacate(finding.job_id, finding.reason)
            elif finding.action == "hold":
                self.pool.hold(finding.job_id, finding.reason)
        except CondorError as exc:
            m.errors.labels(f"{finding.action}").inc()
            log.error("frozen job %s: %s failed: %s", finding.job_id, finding.action, exc)
            return {**record, "action": f"{finding.action} failed", "message":
                    f"{finding.reason} ({finding.action} failed: {exc.message})"}
        self.detector.acted(finding)
        m.frozen_actions.labels(finding.action).inc()
        log.warning("%s", finding.reason)
        self._event("scheduler", FROZEN_REASONS[finding.action], finding.reason, now)
        return record

    def _broken_executors(self, registered: set[str], busy: set[str],
                          now: float) -> list[dict[str, Any]]:
        pods = self.kube.list_objects("v1", "Pod", self.namespace,
                                      label_selector=executor_selector(self.env_name))
        views = [ExecutorPodView(p["metadata"]["name"], pod_is_running(p)) for p in pods]
        broken, missing = self.broken.observe(views, registered, busy, now)
        self.metrics.executors_missing.set(missing)
        self._missing = missing
        return [self._delete_executor(b, now) for b in broken]

    def _delete_executor(self, broken: BrokenExecutor, now: float) -> dict[str, Any]:
        record = {"time": round(now, 3), "kind": "broken-executor", "pod": broken.name,
                  "action": "delete", "message": broken.reason}
        try:
            self.kube.delete("v1", "Pod", broken.name, self.namespace, propagation="Background")
        except KubeError as exc:
            self.metrics.errors.labels("delete").inc()
            log.error("broken executor %s: delete failed: %s", broken.name, exc)
            return {**record, "action": "delete failed"}
        self.broken.deleted(broken.name)
        self.metrics.executors_deleted.inc()
        log.warning("%s", broken.reason)
        self._event("executor", "BrokenExecutorDeleted", broken.reason, now)
        return record

    def _event(self, component: str, reason: str, message: str, now: float) -> None:
        try:
            self.kube.create(build_event(self.namespace, self.env_name, component, reason,
                                         message, now), field_manager=COMPONENT)
        except KubeError as exc:  # an event is a courtesy; the action is done
            self.metrics.errors.labels("event").inc()
            log.error("could not record the event %s: %s", reason, exc)

    def ensure_pod_monitor(self) -> bool:
        """Ship the environment's PodMonitor when the cluster has the Prometheus Operator's
        CRD (otherwise the pods' scrape annotations serve); True if it was applied."""
        try:
            self.kube.resource(*POD_MONITOR)
        except KubeError:
            log.info("no PodMonitor CRD in this cluster: scrape annotations only")
            return False
        try:
            owner = self.kube.get("apps/v1", "Deployment", f"{self.env_name}-scheduler",
                                  self.namespace)
            self.kube.apply(pod_monitor(self.env_name, self.namespace, owner=owner),
                            force=True, compare=False, field_manager=COMPONENT)
        except KubeError as exc:
            self.metrics.errors.labels("podmonitor").inc()
            log.error("PodMonitor not applied: %s", exc)
            return False
        return True

    def _synclocal_urls(self) -> list[str]:
        if self.synclocal_urls is not None:
            return self.synclocal_urls()
        pods = self.kube.list_objects("v1", "Pod", self.namespace,
                                      label_selector=synclocal_selector(self.env_name))
        return [f"http://{p['status']['podIP']}:{SYNCLOCAL_PORT}/metrics" for p in pods
                if pod_is_running(p) and p.get("status", {}).get("podIP")]

    def _datalake(self, now: float) -> None:
        try:
            total, rate, up = self.reads.observe(self._synclocal_urls(), now)
        except KubeError as exc:
            self.metrics.errors.labels("synclocal").inc()
            log.error("synclocal endpoints not listed: %s", exc)
            return
        self.metrics.read_bytes.set(total)
        self.metrics.read_rate.set(rate)
        self.metrics.synclocal_up.set(up)

    def _save(self, new: list[dict[str, Any]], observed: dict[str, Any]) -> None:
        self.findings = [*self.findings, *new][-st.KEEP_FINDINGS:]
        try:
            st.save_state(self.kube, self.namespace, self.env_name, st.MonitorState(
                self.findings, dict(self.detector.restarts), observed))
        except KubeError as exc:
            self.metrics.errors.labels("state").inc()
            log.error("state not saved: %s", exc)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Intervals at a fixed rate until ``stop`` is set; a failing interval is logged,
        counted and retried on the next one."""
        next_run = time.monotonic()
        while not self.stop.is_set():
            try:
                self.run_once()
            except MmerepError as exc:
                self.metrics.errors.labels(type(exc).__name__).inc()
                log.error("interval failed: %s", exc)
            next_run += self.interval
            delay = next_run - time.monotonic()
            if delay < 0:
                next_run, delay = time.monotonic(), 0
            if self.stop.wait(delay):
                return
