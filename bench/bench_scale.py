"""`mme-rep scaler ... scale 310` against `kubectl scale` + `kubectl rollout status`, and the
autoscaler's reaction time.

1. From 2 to 310 executors until all are Running, as commands a user types, alternating,
   each on its own environment (1 CPU / 2Gi executors on 24 simulated nodes):
     mme-rep scaler -F bench sentinel3 scale 310
     kubectl scale deployment/sentinel3-executor --replicas=310; kubectl rollout status ...
   Both go back to 2 (untimed) between rounds. Target: at most 1.05x kubectl.
2. Autoscaler reaction: the loop runs at its default 15 s interval against the real API
   server with the in-memory pool; at a random moment the queue jumps, and we time until
   the new replica count is in the Deployment. Target: at most one interval (anchors poll
   every 15 to 120 s).
Uses its own cluster state directory, so the user's cluster is left alone.
"""

from __future__ import annotations

import dataclasses
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from testkit.private_cluster import private_cluster

ENV = "sentinel3"
TARGET = 310


def _wait_pods(kube: Any, namespace: str, count: int, timeout: float = 300) -> None:
    from mmerep.scaler.state import executor_selector

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = kube.list_objects("v1", "Pod", namespace, label_selector=executor_selector(ENV))
        if len(pods) == count and all(p["status"].get("phase") == "Running" for p in pods):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{namespace}: not {count} running executors after {timeout}s")


def _reset(kube: Any, namespace: str) -> None:
    kube.scale("Deployment", f"{ENV}-executor", 2, namespace, field_manager="bench")
    _wait_pods(kube, namespace, 2)


def _kubectl_run(kubectl: str, kubeconfig: str, namespace: str) -> float:
    base = [kubectl, "--kubeconfig", kubeconfig, "-n", namespace]
    start = time.perf_counter()
    subprocess.run([*base, "scale", f"deployment/{ENV}-executor", f"--replicas={TARGET}"],
                   check=True, capture_output=True)
    subprocess.run([*base, "rollout", "status", "--timeout=600s",
                    f"deployment/{ENV}-executor"], check=True, capture_output=True)
    return time.perf_counter() - start


def _mmerep_run(env: dict[str, str]) -> float:
    start = time.perf_counter()
    # --stall 60: on a loaded machine the scheduler may pause for seconds; the summary
    # would then honestly report Pending executors, which is not what is measured here.
    out = subprocess.run([sys.executable, "-m", "mmerep", "scaler", "-F", "bench", ENV,
                          "scale", str(TARGET), "--stall", "60"], capture_output=True,
                         text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"mme-rep scaler failed: {out.stdout}{out.stderr}")
    return time.perf_counter() - start


def _reaction(kube: Any, namespace: str, jumps: int, interval: float) -> list[float]:
    from mmerep.condor import MemoryPool
    from mmerep.scaler.autoscaler import Autoscaler
    from mmerep.scaler.state import ScalerState, save_settings

    pool = MemoryPool()
    save_settings(kube, namespace, ENV, ScalerState(daemon=True, minimum=1, maximum=400))
    auto = Autoscaler(kube, namespace, ENV, pool, interval=interval, cooldown=3600)
    thread = threading.Thread(target=auto.run, daemon=True)
    thread.start()
    times = []
    try:
        for _ in range(jumps):
            time.sleep(random.uniform(0.5, interval))  # a jump at any moment of an interval
            before = kube.get_scale("Deployment", f"{ENV}-executor", namespace)["spec"]["replicas"]
            start = time.perf_counter()
            jobs = pool.submit(40)
            while kube.get_scale("Deployment", f"{ENV}-executor",
                                 namespace)["spec"]["replicas"] == before:
                time.sleep(0.02)
            times.append(time.perf_counter() - start)
            pool.finish(jobs)
            save_settings(kube, namespace, ENV, ScalerState(daemon=False))
            _reset(kube, namespace)
            save_settings(kube, namespace, ENV, ScalerState(daemon=True, minimum=1,
                                                            maximum=400))
    finally:
        auto.stop.set()
        thread.join()
    return times


def run(rounds: int = 3, jumps: int = 4, interval: float = 15.0) -> list[dict[str, object]]:
    from mmerep import environments
    from mmerep.cluster import build, local, sample
    from mmerep.profiles import get_profile

    with private_cluster("mmerep-bench-scale-") as work:
        info = local.up(local.ClusterSpec(nodes=24))
        sample.push_sample_image(info.registry)
        kube = local.connect()
        base = dataclasses.replace(get_profile("local"), max_executors=500)
        for ns in ("bench-kubectl", "bench-mmerep", "bench-auto"):
            rendered = environments.render_environment(
                dataclasses.replace(base, namespace=ns), "htcondor-batch", "sentinel3:v0.1.0",
                params={"executors": 2})
            environments.deploy(kube, rendered, timeout=300)
        profiles = Path(work) / "profiles.yaml"
        profiles.write_text(yaml.safe_dump({"profiles": {"bench": {
            "context": local.CONTEXT, "kubeconfig": str(local.kubeconfig_path()),
            "namespace": "bench-mmerep", "registry": info.registry, "project": "mme-rep",
            "max_executors": 500}}}))
        env = {**os.environ, "MMEREP_PROFILES": str(profiles)}
        kubectl, kubeconfig = str(build.binary_path("kubectl")), str(local.kubeconfig_path())
        ours, theirs = [], []
        for _ in range(rounds):
            theirs.append(_kubectl_run(kubectl, kubeconfig, "bench-kubectl"))
            _reset(kube, "bench-kubectl")
            ours.append(_mmerep_run(env))
            _reset(kube, "bench-mmerep")
        reactions = _reaction(kube, "bench-auto", jumps, interval)
    k, m = statistics.median(theirs), statistics.median(ours)
    return [
        {"case": f"kubectl scale + rollout status, 2 -> {TARGET} Running",
         "median_s": round(k, 2), "ratio": 1.0},
        {"case": f"mme-rep scaler scale {TARGET} (live count, summary)", "median_s": round(m, 2),
         "ratio": round(m / k, 3), "target": "<=1.05"},
        {"case": f"autoscaler reaction, queue jump -> replicas written ({interval:.0f}s "
         "interval)", "median_s": round(statistics.median(reactions), 2),
         "max_s": round(max(reactions), 2),
         "max_in_intervals": round(max(reactions) / interval, 2), "target": "<=1 interval"},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
