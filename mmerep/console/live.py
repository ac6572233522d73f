"""What the console shows live: one set of watches per namespace (or all), shared by every
browser, and a short in-memory history of each environment's executors for the plots.

The watches run in threads (the gateway is sync); subscribers are asyncio queues that the
threads wake with ``call_soon_threadsafe``. A subscriber is only told "something changed":
it reads the current state itself, so a burst of events costs one render per client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mmerep import sshkeys
from mmerep.environments import RECORD_LABEL, environment_rows
from mmerep.errors import MmerepError
from mmerep.kube import Kube, workload_status

log = logging.getLogger(__name__)

Obj = dict[str, Any]
WATCHED_WORKLOADS = (("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"),
                     ("apps/v1", "DaemonSet"))
MANAGED = "app.kubernetes.io/managed-by=mme-rep"
SCALER_STATE = f"{MANAGED},app.kubernetes.io/component=scaler"
SSH_HOSTS = f"{MANAGED},{sshkeys.KEPT_LABEL}=true"  # the known-hosts ConfigMaps
HISTORY_POINTS = 720  # per environment: an hour at one change every five seconds
WATCH_SECONDS = 10 * 365 * 24 * 3600.0  # "until stopped"


def workload_row(obj: Obj) -> dict[str, Any]:
    """One workload as the console shows it (name, role, desired and ready pods)."""
    st = workload_status(obj, obj)
    labels = obj["metadata"].get("labels", {})
    return {"name": obj["metadata"]["name"], "kind": obj["kind"],
            "component": labels.get("app.kubernetes.io/component", ""),
            "desired": st.desired, "ready": st.ready_pods, "done": st.ready,
            "created": obj["metadata"].get("creationTimestamp", "")}


def pod_restarts(pod: Obj) -> int:
    status = pod.get("status") or {}
    return sum(int(c.get("restartCount", 0)) for key in ("initContainerStatuses",
                                                         "containerStatuses")
               for c in status.get(key) or [])


def ssh_components(cm: Obj) -> tuple[str, ...]:
    """The components that answer SSH, from an environment's known-hosts ConfigMap (what
    ``mme-rep ssh config`` reads)."""
    return tuple((cm.get("data") or {}).get("components", "").split())


def env_of(obj: Obj) -> str:
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/instance", ""))


def table_rows(records: Iterable[Obj], workloads: Iterable[Obj],
               restarts: dict[tuple[str, str], int] | None = None,
               ssh: dict[tuple[str, str], tuple[str, ...]] | None = None
               ) -> list[dict[str, Any]]:
    """The environments table: ``env list``'s rows plus pods ready/desired, a state, when
    it was created (its first revision), its pods' restarts, the components that run one
    pod per node (DaemonSets) and the components that answer SSH."""
    records = list(records)
    by_env: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for w in workloads:
        by_env.setdefault((w["metadata"]["namespace"], env_of(w)), []).append(workload_row(w))
    created: dict[tuple[str, str], str] = {}
    for r in records:
        key = (r["metadata"]["namespace"], env_of(r))
        stamp = r["metadata"].get("creationTimestamp") or r["data"].get("time", "")
        if stamp and (key not in created or stamp < created[key]):
            created[key] = stamp
    rows = environment_rows(records)
    for row in rows:
        key = (row["namespace"], row["name"])
        parts = by_env.get(key, [])
        row["ready"] = sum(p["ready"] for p in parts)
        row["desired"] = sum(p["desired"] for p in parts)
        row["state"] = ("Active" if parts and all(p["done"] for p in parts)
                        else "Progressing" if parts else "Missing")
        row["created"] = created.get(key, "")
        row["restarts"] = (restarts or {}).get(key, 0)
        row["per_node"] = sorted(p["component"] or p["name"] for p in parts
                                 if p["kind"] == "DaemonSet")
        row["ssh_components"] = list((ssh or {}).get(key, ()))
    return rows


@dataclass
class Series:
    """Executors desired/ready over time (seconds since the epoch)."""

    points: deque[tuple[float, int, int]] = field(
        default_factory=lambda: deque(maxlen=HISTORY_POINTS))

    def add(self, desired: int, ready: int) -> None:
        if self.points and self.points[-1][1:] == (desired, ready):
            return
        self.points.append((time.time(), desired, ready))


@dataclass
class PoolSeries:
    """What the autoscaler observed each interval (its state ConfigMap's ``observed``):
    (time, idle jobs, running jobs, busy executors, executors in the pool)."""

    points: deque[tuple[float, int, int, int, int]] = field(
        default_factory=lambda: deque(maxlen=HISTORY_POINTS))

    def add(self, data: dict[str, str]) -> None:
        try:
            observed = json.loads(data.get("observed") or "{}")
            point = (float(observed["time"]), int(observed.get("idle_jobs", 0)),
                     int(observed.get("running_jobs", 0)), int(observed.get("busy", 0)),
                     int(observed.get("executors", 0)))
        except (ValueError, KeyError, TypeError):
            return  # no interval recorded yet, or not one this console understands
        if not self.points or self.points[-1][0] < point[0]:
            self.points.append(point)


class Live:
    """The environments of one namespace (``None``: all), kept current by watches."""

    def __init__(self, kube: Kube, namespace: str | None) -> None:
        self.kube = kube
        self.namespace = namespace
        self.lock = threading.Lock()
        self.records: dict[tuple[str, str], Obj] = {}
        self.workloads: dict[tuple[str, str, str], Obj] = {}
        self.series: dict[tuple[str, str], Series] = {}
        self.pool: dict[tuple[str, str], PoolSeries] = {}
        self.pods: dict[tuple[str, str], tuple[str, int]] = {}  # (ns, pod): (env, restarts)
        self.ssh: dict[tuple[str, str], tuple[str, ...]] = {}  # (ns, env): components
        self.error: str | None = None  # the API server's message when a watch fails
        self.version = 0
        self.synced = threading.Event()
        self.stop = threading.Event()
        self._pending = 0  # watches that have not listed yet
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[int]]] = set()
        self._threads: list[threading.Thread] = []

    # -- watching ----------------------------------------------------------------------

    def start(self) -> Live:
        kinds = [("v1", "ConfigMap", f"{RECORD_LABEL}=true", "record"),
                 ("v1", "ConfigMap", SCALER_STATE, "scaler"),
                 ("v1", "ConfigMap", SSH_HOSTS, "ssh"),
                 ("v1", "Pod", MANAGED, "pod"),
                 *((a, k, MANAGED, "workload") for a, k in WATCHED_WORKLOADS)]
        self._pending = len(kinds)
        for api_version, kind, selector, role in kinds:
            t = threading.Thread(target=self._follow, args=(api_version, kind, selector, role),
                                 name=f"console-watch-{role}-{kind}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self) -> None:
        self.stop.set()

    def _follow(self, api_version: str, kind: str, selector: str, role: str) -> None:
        pause = 1.0
        first = True
        while not self.stop.is_set():
            try:
                for event in self.kube.watch(
                        api_version, kind, self.namespace, label_selector=selector,
                        timeout=WATCH_SECONDS, stop=self.stop, chunk=30, mark_synced=True,
                        all_namespaces=self.namespace is None):
                    if event["type"] == "SYNCED":
                        if first:
                            first = False
                            self._listed()
                        continue
                    self._apply(role, event["type"], event["object"])
                    pause = 1.0
            except MmerepError as exc:
                log.warning("watch %s: %s", kind, exc.message)
                with self.lock:
                    self.error = exc.message
                if first:  # a watch that cannot list must not hold the first page back
                    first = False
                    self._listed()
                self.changed()
                self.stop.wait(pause)
                pause = min(pause * 2, 30.0)

    def _listed(self) -> None:
        with self.lock:
            self._pending -= 1
            if self._pending <= 0:
                self.synced.set()

    def _apply(self, role: str, kind_of_event: str, obj: Obj) -> None:
        meta = obj["metadata"]
        with self.lock:
            self.error = None
            if role == "scaler":
                if kind_of_event != "DELETED":
                    self.pool.setdefault((meta["namespace"], env_of(obj)), PoolSeries()).add(
                        obj.get("data") or {})
            elif role == "pod":
                pkey = (meta["namespace"], meta["name"])
                if kind_of_event == "DELETED":
                    self.pods.pop(pkey, None)
                else:
                    before = self.pods.get(pkey)
                    self.pods[pkey] = (env_of(obj), pod_restarts(obj))
                    if before == self.pods[pkey]:
                        return  # only restarts show: nothing to tell the pages
            elif role == "ssh":
                skey = (meta["namespace"], env_of(obj))
                if meta["name"] != sshkeys.known_hosts_name(skey[1]):
                    return  # another kept ConfigMap
                if kind_of_event == "DELETED":
                    self.ssh.pop(skey, None)
                else:
                    self.ssh[skey] = ssh_components(obj)
            elif role == "record":
                key = (meta["namespace"], meta["name"])
                if kind_of_event == "DELETED":
                    self.records.pop(key, None)
                else:
                    self.records[key] = obj
            else:
                wkey = (obj["kind"], meta["namespace"], meta["name"])
                if kind_of_event == "DELETED":
                    self.workloads.pop(wkey, None)
                else:
                    self.workloads[wkey] = obj
                row = workload_row(obj)
                if row["component"] == "executor":
                    series = self.series.setdefault((meta["namespace"], env_of(obj)), Series())
                    if kind_of_event == "DELETED":
                        series.add(0, 0)
                    else:
                        series.add(row["desired"], row["ready"])
        self.changed()

    # -- reading -----------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        with self.lock:
            restarts: dict[tuple[str, str], int] = {}
            for (ns, _), (env, count) in self.pods.items():
                restarts[(ns, env)] = restarts.get((ns, env), 0) + count
            return table_rows(list(self.records.values()), list(self.workloads.values()),
                              restarts, dict(self.ssh))

    def environment(self, namespace: str, env: str) -> dict[str, Any]:
        """One environment's workloads and its executors' history, for its page."""
        with self.lock:
            workloads = [workload_row(w) for (_, ns, _), w in sorted(self.workloads.items())
                         if ns == namespace and env_of(w) == env]
            series = self.series.get((namespace, env))
            points = [list(p) for p in series.points] if series else []
            pool = self.pool.get((namespace, env))
            pool_points = [list(p) for p in pool.points] if pool else []
        return {"namespace": namespace, "name": env, "workloads": workloads,
                "series": points, "pool": pool_points, "now": time.time(),
                "error": self.error}

    # -- subscribers -------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[int]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        with self.lock:
            self._subscribers.add((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[int]) -> None:
        with self.lock:
            self._subscribers = {s for s in self._subscribers if s[1] is not queue}

    def changed(self) -> None:
        with self.lock:
            self.version += 1
            version = self.version
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                loop.call_soon_threadsafe(queue.put_nowait, version)


class LiveRegistry:
    """One ``Live`` per namespace asked for (``None``: all), made on first use."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._lives: dict[str | None, Live] = {}
        self._lock = threading.Lock()

    def get(self, namespace: str | None, wait: float = 10.0) -> Live:
        with self._lock:
            live = self._lives.get(namespace)
            if live is None:
                live = self._lives[namespace] = Live(self.kube, namespace).start()
        live.synced.wait(wait)
        return live

    def close(self) -> None:
        for live in self._lives.values():
            live.close()
