"""The plots' data: each job's CPU utilisation and the aggregated data-lake read throughput
as the monitor exports them (and, with Prometheus, the queue and pool, and the executors
desired, current, ready and busy as the autoscaler exports them).

Two sources, one shape (``{"plots": {name: {"unit", "lines": [{"label", "points"}]}}}``):

- ``PrometheusSource``: the profile names a Prometheus; its HTTP API's ``query_range``
  gives the history of any range asked for (the last hour, six hours, a day...).
- ``ExporterSource``: no Prometheus; the monitor's exporter in the environment's
  scheduler pod is read through the API server's port-forward, with the user's identity,
  and a short history is kept in memory from the first time a page asked for it.

The monitor already sums synclocal's per-node counters into the read throughput, so one
endpoint per environment serves both plots.
"""

from __future__ import annotations

import json
import select
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.parser import text_string_to_metric_families

from mmerep.errors import KubeError, MmerepError
from mmerep.kube import Kube
from mmerep.portforward import PortForward, endpoint_of

MONITOR_PORT = 9111  # the monitor's --metrics-port in the htcondor-batch template
RANGES = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
DEFAULT_RANGE = "1h"
POINTS = 240  # per line and plot: the step is the range / POINTS
MAX_JOB_LINES = 10  # the least busy jobs (the monitor exports at most 50)
EXPORTER_HISTORY = 720  # samples per environment: an hour at one every five seconds
EXPORTER_EVERY = 4.0  # seconds: pages poll; the exporter is read at most this often
MB = 1e6

Points = list[list[float]]


class Source(Protocol):
    kind: str

    def plots(self, namespace: str, env: str, seconds: int) -> dict[str, Any]: ...


def range_seconds(name: str | None) -> int:
    return RANGES.get(name or DEFAULT_RANGE, RANGES[DEFAULT_RANGE])


def _line(label: str, points: Points) -> dict[str, Any]:
    return {"label": label, "points": points}


def _plot(unit: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {"unit": unit, "lines": lines}


# -- Prometheus ---------------------------------------------------------------------------

def pod_matcher(namespace: str, env: str) -> str:
    """The label matchers of the series the environment's monitor exports: its namespace
    and its scheduler pod (``<env>-scheduler-<hash>-<id>``, as a Deployment names it)."""
    def quoted(text: str) -> str:
        return json.dumps(text)  # a PromQL string literal is a JSON one for these names

    pod = f"{env}-scheduler-[a-z0-9]+-[a-z0-9]+"
    return f"namespace={quoted(namespace)},pod=~{quoted(pod)}"


def prometheus_queries(namespace: str, env: str) -> dict[str, dict[str, str]]:
    """PromQL per plot and line ("{job}": one line per value of the ``job`` label)."""
    m = pod_matcher(namespace, env)
    return {
        "cpu": {"{job}": f"bottomk({MAX_JOB_LINES}, mmerep_monitor_job_cpu_utilisation{{{m}}})",
                "mean": f"avg(mmerep_monitor_running_jobs_cpu_utilisation_mean{{{m}}})"},
        "datalake": {"read": f"sum(mmerep_monitor_datalake_read_bytes_per_second{{{m}}}) "
                             f"/ {MB:g}"},
        # The autoscaler's gauges (the same pod, port 9110), exported whether or not it
        # acts; max: a scheduler pod being replaced reports the same Deployment twice.
        "executors": {line: f"max(mmerep_scaler_executors_{line}{{{m}}})"
                      for line in ("desired", "current", "ready", "busy")},
        "pool": {"idle": f'sum(mmerep_monitor_jobs{{{m},state="idle"}})',
                 "running": f'sum(mmerep_monitor_jobs{{{m},state="running"}})',
                 "busy": f'sum(mmerep_monitor_executors{{{m},state="busy"}})',
                 "executors": f"sum(mmerep_monitor_executors{{{m}}})"},
    }


UNITS = {"cpu": "CPU s per s per CPU", "datalake": "MB/s", "pool": "jobs, executors",
         "executors": "executors"}


@dataclass
class PrometheusSource:
    url: str
    timeout: float = 10.0
    kind: str = "prometheus"

    def query_range(self, expr: str, start: float, end: float, step: float
                    ) -> list[tuple[dict[str, str], Points]]:
        query = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}",
                                        "end": f"{end:.3f}", "step": f"{step:.3f}"})
        what = f"Prometheus at {self.url}"
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query_range?{query}",  # noqa: S310
                                        timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            try:
                message = json.load(exc).get("error", exc.reason)
            except ValueError:
                message = exc.reason
            raise MmerepError(f"{what} refused a query: {message}") from None
        except (OSError, ValueError) as exc:
            raise MmerepError(f"{what} did not answer: {exc}",
                              hint="check the profile's prometheus address") from None
        if body.get("status") != "success":
            raise MmerepError(f"{what} refused a query: {body.get('error', body)}")
        return [(dict(r.get("metric", {})), [[float(t), float(v)] for t, v in r["values"]])
                for r in body["data"]["result"]]

    def plots(self, namespace: str, env: str, seconds: int) -> dict[str, Any]:
        end = time.time()
        start, step = end - seconds, max(1.0, seconds / POINTS)
        out = {}
        for plot, lines in prometheus_queries(namespace, env).items():
            drawn = []
            for label, expr in lines.items():
                for metric, points in self.query_range(expr, start, end, step):
                    # The scrape's own ``job`` label wins; the monitor's is then kept as
                    # ``exported_job`` (Prometheus' default, honor_labels: false).
                    job = metric.get("exported_job", metric.get("job", "?"))
                    name = f"job {job}" if label == "{job}" else label
                    drawn.append(_line(name, points))
            out[plot] = _plot(UNITS[plot], drawn)
        return out


# -- the monitor's exporter, through the API server's port-forward -------------------------

def http_get_through(pf: PortForward, path: str, timeout: float) -> str:
    """One HTTP/1.0 GET over a port-forward stream; the body as text."""
    pf.send(f"GET {path} HTTP/1.0\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n".encode())
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        pf.flush()
        data = pf.receive()
        if data is None:
            break
        buf += data
        head, sep, body = bytes(buf).partition(b"\r\n\r\n")
        if sep:
            length = next((int(v) for k, _, v in (line.partition(b":") for line in
                                                    head.split(b"\r\n")[1:])
                           if k.strip().lower() == b"content-length"), None)
            if length is not None and len(body) >= length:
                break
        if time.monotonic() > deadline:
            raise KubeError(f"the monitor's metrics did not arrive within {timeout:.0f} s")
        if not data and not pf.pending():
            select.select([pf.fileno()], [pf.fileno()] if pf.wants_write else [], [], 0.5)
    head, _, body = bytes(buf).partition(b"\r\n\r\n")
    first = head.split(b"\r\n", 1)[0].decode("latin-1")
    if first.split(" ")[1:2] != ["200"]:
        raise KubeError(f"the monitor's metrics endpoint answered {first or 'nothing'!r}")
    return body.decode("utf-8", "replace")


@dataclass(frozen=True)
class Sample:
    time: float
    jobs: dict[str, float]  # job id -> CPU utilisation (the least busy ones)
    mean: float
    read_mb_s: float
    pool: dict[str, float]  # idle, running, busy, executors


def parse_sample(text: str, now: float) -> Sample:
    """What the plots need from one exposition of the monitor's metrics."""
    jobs: dict[str, float] = {}
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "mmerep_monitor_job_cpu_utilisation":
                jobs[s.labels.get("job", "?")] = s.value
            else:
                values[(s.name, s.labels.get("state", ""))] = s.value
    return Sample(
        now, dict(sorted(jobs.items(), key=lambda kv: (kv[1], kv[0]))[:MAX_JOB_LINES]),
        values.get(("mmerep_monitor_running_jobs_cpu_utilisation_mean", ""), 0.0),
        values.get(("mmerep_monitor_datalake_read_bytes_per_second", ""), 0.0) / MB,
        {"idle": values.get(("mmerep_monitor_jobs", "idle"), 0.0),
         "running": values.get(("mmerep_monitor_jobs", "running"), 0.0),
         "busy": values.get(("mmerep_monitor_executors", "busy"), 0.0),
         "executors": values.get(("mmerep_monitor_executors", "busy"), 0.0)
         + values.get(("mmerep_monitor_executors", "idle"), 0.0)})


def sample_plots(samples: list[Sample], since: float) -> dict[str, Any]:
    """The plots from the samples kept in memory (pure)."""
    kept = [s for s in samples if s.time >= since]
    jobs = sorted({j for s in kept for j in s.jobs})[:MAX_JOB_LINES]
    return {
        "cpu": _plot(UNITS["cpu"], [
            *(_line(f"job {j}", [[s.time, s.jobs[j]] for s in kept if j in s.jobs])
              for j in jobs),
            _line("mean", [[s.time, s.mean] for s in kept])] if kept else []),
        "datalake": _plot(UNITS["datalake"], [_line("read", [[s.time, s.read_mb_s]
                                                              for s in kept])] if kept else []),
        "pool": _plot(UNITS["pool"], [_line(k, [[s.time, s.pool[k]] for s in kept])
                                      for k in ("idle", "running", "busy", "executors")]
                      if kept else []),
    }


def scheduler_pod(kube: Kube, namespace: str, env: str) -> str:
    pods = [p for p in kube.list_objects(
        "v1", "Pod", namespace, label_selector=f"app.kubernetes.io/instance={env},"
        "app.kubernetes.io/component=scheduler")
        if p.get("status", {}).get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp")]
    if not pods:
        raise KubeError(f"{env} has no running scheduler pod: its monitor cannot be read")
    return str(sorted(p["metadata"]["name"] for p in pods)[0])


@dataclass
class ExporterSource:
    kube: Kube
    port: int = MONITOR_PORT
    timeout: float = 10.0
    kind: str = "exporter"
    _history: dict[tuple[str, str], deque[Sample]] = field(default_factory=dict)
    _last: dict[tuple[str, str], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def exposition(self, namespace: str, env: str) -> str:
        pod = scheduler_pod(self.kube, namespace, env)
        pf = PortForward.open(endpoint_of(self.kube), namespace, pod, self.port,
                              timeout=self.timeout)
        try:
            return http_get_through(pf, "/metrics", self.timeout)
        finally:
            pf.close()

    def sample(self, namespace: str, env: str) -> None:
        key = (namespace, env)
        now = time.time()
        with self._lock:
            if now - self._last.get(key, 0.0) < EXPORTER_EVERY:
                return
            self._last[key] = now
        sample = parse_sample(self.exposition(namespace, env), now)
        with self._lock:
            self._history.setdefault(key, deque(maxlen=EXPORTER_HISTORY)).append(sample)

    def plots(self, namespace: str, env: str, seconds: int) -> dict[str, Any]:
        self.sample(namespace, env)
        with self._lock:
            samples = list(self._history.get((namespace, env), ()))
        return sample_plots(samples, time.time() - seconds)


def source_for(kube: Kube, prometheus: str | None) -> Source:
    return PrometheusSource(prometheus) if prometheus else ExporterSource(kube)


def plots_payload(source: Source, namespace: str, env: str, range_name: str | None
                  ) -> dict[str, Any]:
    """What ``/api/plots`` answers: the plots, or the reason there are none."""
    seconds = range_seconds(range_name)
    payload: dict[str, Any] = {"source": source.kind, "range": seconds, "now": time.time(),
                               "error": None, "plots": {}}
    try:
        payload["plots"] = source.plots(namespace, env, seconds)
    except MmerepError as exc:
        payload["error"] = exc.message
    payload["now"] = time.time()
    return payload
