"""`env deploy htcondor-batch` until ready, against kubectl on the same rendered objects.

Both run as commands a user would type, each into a fresh namespace, alternating:
  mme-rep env deploy -F bench htcondor-batch sentinel3:v0.1.0   (validation, digest
      resolution, server-side dry run, apply, wait, status table)
  kubectl apply --server-side -f objects.yaml; kubectl rollout status <each workload>
Target: at most 1.0x kubectl's time (issue 15). Also counts the API requests of one deploy.
Uses its own cluster state directory, so the user's cluster is left alone.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from testkit.private_cluster import private_cluster


def _kubectl_run(kubectl: str, kubeconfig: str, objects: list[dict[str, Any]],
                 namespace: str, workdir: Path) -> float:
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    for obj in objects:
        docs.append({**obj, "metadata": {**obj["metadata"], "namespace": namespace}})
    path = workdir / f"{namespace}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    base = [kubectl, "--kubeconfig", kubeconfig]
    start = time.perf_counter()
    subprocess.run([*base, "apply", "--server-side", "--field-manager", "bench", "-f",
                    str(path)], check=True, capture_output=True)
    for obj in objects:
        if obj["kind"] in ("Deployment", "DaemonSet", "StatefulSet"):
            subprocess.run([*base, "-n", namespace, "rollout", "status", "--timeout=300s",
                            f"{obj['kind'].lower()}/{obj['metadata']['name']}"],
                           check=True, capture_output=True)
    return time.perf_counter() - start


def _mmerep_run(profiles: Path, namespace: str) -> float:
    profiles.write_text(yaml.safe_dump({"profiles": {"bench": {**_PROFILE,
                                                               "namespace": namespace}}}))
    env = {**os.environ, "MMEREP_PROFILES": str(profiles)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mmerep", "env", "deploy", "-F", "bench",
                    "htcondor-batch", "sentinel3:v0.1.0"], check=True, capture_output=True,
                   env=env)
    return time.perf_counter() - start


_PROFILE: dict[str, Any] = {}


def run(rounds: int = 3) -> list[dict[str, object]]:
    from mmerep import environments
    from mmerep.cluster import build, local, sample
    from mmerep.profiles import get_profile

    with private_cluster("mmerep-bench-env-") as work:
        info = local.up()
        sample.push_sample_image(info.registry)
        _PROFILE.update(context=local.CONTEXT, kubeconfig=str(local.kubeconfig_path()),
                        registry=info.registry, project="mme-rep")
        kubectl = str(build.binary_path("kubectl"))
        profile = dataclasses.replace(get_profile("local"), namespace="bench-count")
        rendered = environments.render_environment(profile, "htcondor-batch",
                                                   "sentinel3:v0.1.0")
        kube = local.connect()
        before = kube.requests_sent
        environments.deploy(kube, rendered, timeout=300)
        requests = kube.requests_sent - before
        ours, theirs = [], []
        for i in range(rounds):
            # Rendered for kubectl's own namespace: the cluster-wide parts (priority
            # classes, RBAC) are named after it, as a deploy there would name them.
            mine = environments.render_environment(
                dataclasses.replace(profile, namespace=f"bench-k{i}"), "htcondor-batch",
                "sentinel3:v0.1.0")
            objects = [*environments.generated_secrets(None, mine), *mine.objects]
            theirs.append(_kubectl_run(kubectl, str(local.kubeconfig_path()), objects,
                                       f"bench-k{i}", work))
            ours.append(_mmerep_run(work / "profiles.yaml", f"bench-m{i}"))
    k, m = statistics.median(theirs), statistics.median(ours)
    return [
        {"case": "kubectl apply --server-side + rollout status", "median_s": round(k, 2),
         "ratio": 1.0},
        {"case": "mme-rep env deploy htcondor-batch", "median_s": round(m, 2),
         "ratio": round(m / k, 2), "target": "<=1.0"},
        {"case": "API requests per deploy (first install)", "count": requests},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
