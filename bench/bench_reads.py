"""Read commands as a user runs them (whole processes) against `kubectl get` of the same objects.

  mme-rep env list                 vs  kubectl get configmaps -l mme-rep/record=true
  mme-rep env status sentinel3     vs  kubectl get deploy,ds,svc,pods,events -l instance=...
  mme-rep env list (cache cold)    the first command after a kubeconfig change: it resolves
                                   the kubeconfig with the official client (one-off cost)

Run interleaved, round after round, each one's median taken. Target: at most 2x kubectl.
Uses its own cluster state directory and cache, so the user's are left alone.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from testkit.private_cluster import private_cluster

NAMESPACE = "bench-reads"


def _once(cmd: list[str], env: dict[str, str], cpu: list[float] | None = None) -> float:
    """Wall time of one run; its CPU time (user + system) is appended to ``cpu``: on a
    loaded machine the wall time mostly measures the wait for a core, the CPU time not."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall


def run(rounds: int = 9) -> list[dict[str, object]]:
    from mmerep.cluster import build, local, sample

    with private_cluster("mmerep-bench-reads-") as work:
        info = local.up()
        sample.push_sample_image(info.registry)
        kubeconfig = str(local.kubeconfig_path())
        profiles = work / "profiles.yaml"
        profiles.write_text(yaml.safe_dump({"profiles": {"bench": {
            "context": local.CONTEXT, "kubeconfig": kubeconfig, "registry": info.registry,
            "project": "mme-rep", "namespace": NAMESPACE}}}))
        cache = work / "cache"
        env = {**os.environ, "MMEREP_PROFILES": str(profiles), "MMEREP_CACHE_DIR": str(cache),
               "COLUMNS": "100"}
        mmerep = [sys.executable, "-m", "mmerep"]
        subprocess.run([*mmerep, "env", "deploy", "-F", "bench", "htcondor-batch",
                        "sentinel3:v0.1.0"], check=True, capture_output=True, env=env)
        kubectl = [str(build.binary_path("kubectl")), "--kubeconfig", kubeconfig,
                   "-n", NAMESPACE]
        selector = "app.kubernetes.io/instance=sentinel3"
        cases = {
            "kubectl get configmaps -l mme-rep/record=true":
                [*kubectl, "get", "configmaps", "-l", "mme-rep/record=true"],
            "mme-rep env list": [*mmerep, "env", "list", "-F", "bench"],
            "kubectl get deploy,ds,svc,pods,events -l instance":
                [*kubectl, "get", "deploy,ds,svc,pods,events", "-l", selector],
            "mme-rep env status sentinel3": [*mmerep, "env", "status", "-F", "bench",
                                             "sentinel3"],
        }
        for cmd in cases.values():  # warm the file cache, the .pyc files and our cache
            _once(cmd, env)
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        cold: list[float] = []
        for _ in range(rounds):
            for name, cmd in cases.items():
                times[name].append(_once(cmd, env, cpu[name]))
            shutil.rmtree(cache / "kube", ignore_errors=True)
            cold.append(_once(cases["mme-rep env list"], env))
    med = {name: statistics.median(t) for name, t in times.items()}
    med_cpu = {name: statistics.median(t) for name, t in cpu.items()}
    pairs = [("mme-rep env list", "kubectl get configmaps -l mme-rep/record=true"),
             ("mme-rep env status sentinel3", "kubectl get deploy,ds,svc,pods,events -l instance")]
    rows: list[dict[str, object]] = []
    for ours, theirs in pairs:
        rows.append({"case": theirs, "median_ms": round(med[theirs] * 1000), "ratio": 1.0,
                     "cpu_ms": round(med_cpu[theirs] * 1000)})
        rows.append({"case": ours, "median_ms": round(med[ours] * 1000),
                     "ratio": round(med[ours] / med[theirs], 2), "target": "<=2",
                     "cpu_ms": round(med_cpu[ours] * 1000),
                     "cpu_ratio": round(med_cpu[ours] / med_cpu[theirs], 2)})
    base = med["kubectl get configmaps -l mme-rep/record=true"]
    rows.append({"case": "mme-rep env list, first run after a kubeconfig change",
                 "median_ms": round(statistics.median(cold) * 1000),
                 "ratio": round(statistics.median(cold) / base, 2)})
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    for row in run():
        print(row)
