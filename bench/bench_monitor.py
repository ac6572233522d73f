"""The monitor's cost per interval, and how fast a frozen job is vacated.

1. Cost: 5,000 jobs (4,800 running, 200 idle) on 300 executors in the in-memory pool,
   300 Running executor pods on the real API server (12 simulated nodes). Each interval
   every running job's counters move on (untimed); one monitor interval is timed: process
   CPU time, wall time, and tracemalloc's peak and retained memory. Baseline in the same
   run: only reading what an interval must read (the job samples, the pool, the executor
   pods) with no detection, metrics or state: the ratio is what judging adds.
2. Freeze -> vacate, on the simulated clock: the default 60 s interval and 30 min window,
   a job freezes at a random moment; the delay until its vacate, over many moments.
   Target: at most one window + one interval.
3. The same on the wall clock, small: 1 s interval, 5 s window, the loop running in its
   thread (target: at most 6 s).
Uses its own cluster state directory, so the user's cluster is left alone.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
import tracemalloc
from typing import Any

from testkit.private_cluster import private_cluster

ENV = "bench"
JOBS, EXECUTORS, SLOTS = 5000, 300, 16


def _pool(names: list[str]) -> Any:
    from mmerep.condor import MemoryPool

    pool = MemoryPool()
    for name in names:
        pool.add_executor(name, cpus=SLOTS, memory_mb=64_000)
    pool.submit(JOBS)
    pool.schedule()
    return pool


def _advance(pool: Any, seconds: float, frozen: frozenset[str] = frozenset()) -> None:
    from mmerep.condor import JobState

    for job in pool._jobs.values():
        if job.status == JobState.RUNNING:
            job.wall_s += seconds
            if job.job_id not in frozen:
                job.cpu_user_s += seconds * 0.9


def _executor_deployment(namespace: str, replicas: int) -> dict[str, Any]:
    labels = {"app.kubernetes.io/instance": ENV, "app.kubernetes.io/component": "executor"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"{ENV}-executor", "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": "startd", "image": "example.org/x:1",
                                         "resources": {"requests": {"cpu": "10m",
                                                                    "memory": "16Mi"}}}]}}}}


def _cost(kube: Any, namespace: str, intervals: int) -> dict[str, float]:
    from mmerep.monitor.detection import FrozenSettings
    from mmerep.monitor.loop import Monitor, executor_selector

    pods = kube.list_objects("v1", "Pod", namespace, label_selector=executor_selector(ENV))
    pool = _pool([p["metadata"]["name"] for p in pods])
    clock = {"now": 1_000_000.0}
    pool.clock = lambda: clock["now"]
    monitor = Monitor(kube, namespace, ENV, pool, interval=60, synclocal_urls=list,
                      frozen=FrozenSettings())
    monitor.run_once()  # first interval: reads the saved state, tracks every job
    cpu, wall, base_cpu, base_wall, peaks = [], [], [], [], []
    tracemalloc.start()
    retained_before = tracemalloc.get_traced_memory()[0]
    for _ in range(intervals):
        clock["now"] += 60
        _advance(pool, 60)
        # Baseline: only the reads an interval needs.
        c0, w0 = time.process_time(), time.perf_counter()
        pool.jobs()
        pool.executors()
        kube.list_objects("v1", "Pod", namespace, label_selector=executor_selector(ENV))
        base_cpu.append(time.process_time() - c0)
        base_wall.append(time.perf_counter() - w0)
        tracemalloc.reset_peak()
        c0, w0 = time.process_time(), time.perf_counter()
        monitor.run_once()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        peaks.append(tracemalloc.get_traced_memory()[1])
    retained = tracemalloc.get_traced_memory()[0] - retained_before
    tracemalloc.stop()
    return {"cpu": statistics.median(cpu), "wall": statistics.median(wall),
            "base_cpu": statistics.median(base_cpu), "base_wall": statistics.median(base_wall),
            "peak_mb": max(peaks) / 1e6, "retained_mb": retained / 1e6,
            "running": sum(1 for j in pool.jobs() if j.status.name == "RUNNING")}


def _freeze_delays(kube: Any, namespace: str, trials: int) -> list[float]:
    """Simulated clock, default settings: delay from a freeze to its vacate."""
    from mmerep.condor import MemoryPool
    from mmerep.monitor.detection import FrozenSettings
    from mmerep.monitor.loop import Monitor

    rng = random.Random(13)
    delays = []
    for _ in range(trials):
        kube.delete("v1", "ConfigMap", f"{ENV}-monitor-state", namespace,
                    propagation="Background")  # fresh budgets
        pool = MemoryPool()
        pool.add_executor("e-0", cpus=4)
        [job] = pool.submit(1)
        pool.schedule()
        clock = {"now": 0.0}
        pool.clock = lambda c=clock: c["now"]
        monitor = Monitor(kube, namespace, ENV, pool, interval=60, synclocal_urls=list,
                          frozen=FrozenSettings(window=1800, startup_grace=300))
        freeze_at = 600 + rng.uniform(0, 3600)
        step = 60.0
        while True:
            # The job runs until it freezes (its CPU time grows up to that moment).
            previous = clock["now"]
            clock["now"] += step
            running = max(0.0, min(clock["now"], freeze_at) - previous)
            pool.update(job, wall_s=clock["now"], cpu_user_s=pool._jobs[job].cpu_user_s
                        + running * 0.9)
            monitor.run_once()
            if pool._jobs[job].actions:
                assert pool._jobs[job].actions[0].startswith("vacate"), pool._jobs[job].actions
                delays.append(clock["now"] - freeze_at)
                break
    return delays


def _wall_clock_delays(kube: Any, namespace: str, trials: int) -> list[float]:
    from mmerep.condor import MemoryPool
    from mmerep.monitor.detection import FrozenSettings
    from mmerep.monitor.loop import Monitor

    delays = []
    for _ in range(trials):
        kube.delete("v1", "ConfigMap", f"{ENV}-monitor-state", namespace,
                    propagation="Background")
        pool = MemoryPool()
        pool.add_executor("e-0", cpus=4)
        [job] = pool.submit(1)
        pool.schedule()
        monitor = Monitor(kube, namespace, ENV, pool, interval=1, synclocal_urls=list,
                          frozen=FrozenSettings(window=5, startup_grace=0, slack=0.1))
        frozen = threading.Event()
        stop = threading.Event()
        start = time.time()

        def work(pool: Any = pool, job: str = job, frozen: threading.Event = frozen,
                 stop: threading.Event = stop, start: float = start) -> None:
            while not stop.wait(0.05):
                now = time.time()
                attrs = {"wall_s": now - start}
                if not frozen.is_set():
                    attrs["cpu_user_s"] = (now - start) * 0.9
                pool.update(job, **attrs)

        worker = threading.Thread(target=work, daemon=True)
        loop = threading.Thread(target=monitor.run, daemon=True)
        worker.start()
        loop.start()
        time.sleep(2 + random.random())
        frozen.set()
        froze = time.time()
        while not pool._jobs[job].actions and time.time() - froze < 30:
            time.sleep(0.02)
        delays.append(time.time() - froze)
        assert pool._jobs[job].actions[0].startswith("vacate"), pool._jobs[job].actions
        stop.set()
        monitor.stop.set()
        loop.join(5)
    return delays


def run(intervals: int = 3, trials: int = 20, wall_trials: int = 3) -> list[dict[str, object]]:
    import logging

    from mmerep.cluster import local

    logging.getLogger("mmerep.monitor").setLevel(logging.ERROR)  # one line per action

    with private_cluster("mmerep-bench-monitor-"):
        local.up(local.ClusterSpec(nodes=12))
        kube = local.connect()
        namespace = "bench-monitor"
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        kube.apply(_executor_deployment(namespace, EXECUTORS))
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            live = kube.get("apps/v1", "Deployment", f"{ENV}-executor", namespace)
            if live and live.get("status", {}).get("readyReplicas") == EXECUTORS:
                break
            time.sleep(1)
        cost = _cost(kube, namespace, intervals)
        # The delay runs in a namespace of their own, without the 300 executor pods.
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench-freeze"}})
        delays = _freeze_delays(kube, "bench-freeze", trials)
        wall = _wall_clock_delays(kube, "bench-freeze", wall_trials)
    return [
        {"case": f"reads only (baseline): {JOBS} job samples, {EXECUTORS} executors, "
                 f"{EXECUTORS} pods", "cpu_s": round(cost["base_cpu"], 3),
         "wall_s": round(cost["base_wall"], 3), "ratio": 1.0},
        {"case": f"monitor interval ({int(cost['running'])} running jobs judged, metrics, "
                 "state)", "cpu_s": round(cost["cpu"], 3), "wall_s": round(cost["wall"], 3),
         "ratio": round(cost["cpu"] / cost["base_cpu"], 2),
         "cpu_share_of_60s_interval": f"{100 * cost['cpu'] / 60:.2f}%"},
        {"case": "monitor memory", "peak_MB_per_interval": round(cost["peak_mb"], 1),
         "retained_MB_over_intervals": round(cost["retained_mb"], 2)},
        {"case": f"freeze -> vacate, 60s interval, 30min window ({trials} random moments)",
         "median_s": round(statistics.median(delays), 1), "max_s": round(max(delays), 1),
         "bound_s": 1800 + 60, "ok": max(delays) <= 1860},
        {"case": "freeze -> vacate on the wall clock, 1s interval, 5s window",
         "median_s": round(statistics.median(wall), 2), "max_s": round(max(wall), 2),
         "bound_s": 6, "ok": max(wall) <= 6},
    ]


if __name__ == "__main__":
    for row in run():
        print("  ".join(f"{k}={v}" for k, v in row.items()))
