"""Read commands as a user runs them (whole processes) against `kubectl get` of the same objects.

  mme-rep env list                 vs  kubectl get configmaps -l mme-rep/record=true
  mme-rep env status sentinel3     vs  kubectl get deploy,ds,svc,pods,events -l instance=...
  mme-rep scaler -F bench sentinel3
                                   vs  kubectl get deploy,configmaps,pods -l instance=...
  mme-rep scaler --in-cluster --env sentinel3 (as /configs/scaler.sh runs it, with the
                                   scaler's service-account token) vs kubectl get, with
                                   that token, of its Deployment and state ConfigMap by
                                   name (its Role allows no more; the pods not included)
  mme-rep provisioner status       vs  kubectl get configmaps,leases,pv,storageclasses in
                                   its namespace
  mme-rep --help                   vs  python -c pass
  mme-rep env list (cache cold)    the first command after a kubeconfig change: it resolves
                                   the kubeconfig with the official client (one-off cost)

The scaler also asks the HTCondor collector for the pool's size: here (simulated pods) no
collector answers, so that part is the bindings' import and a refused query.

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


def _service_account(work: Path, kubectl: list[str], env: dict[str, str],
                     kubeconfig: str) -> dict[str, str]:
    """The environment /configs/scaler.sh sees in the scheduler pod: the scaler's
    service-account token and the cluster's CA in a directory, the API server's address."""
    from urllib.parse import urlsplit

    sa_dir = work / "serviceaccount"
    sa_dir.mkdir()
    token = subprocess.run([*kubectl, "create", "token", "sentinel3-scaler"], check=True,
                           capture_output=True, text=True).stdout.strip()
    (sa_dir / "token").write_text(token)
    (sa_dir / "namespace").write_text(NAMESPACE)
    cluster = yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]
    shutil.copy(cluster["certificate-authority"], sa_dir / "ca.crt")
    server = urlsplit(cluster["server"])
    return {**env, "MMEREP_SA_DIR": str(sa_dir), "KUBERNETES_SERVICE_HOST": str(server.hostname),
            "KUBERNETES_SERVICE_PORT": str(server.port)}


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
        # As users run it: with the .pyc files Python writes (a shell that sets
        # PYTHONDONTWRITEBYTECODE would have every run compile its modules again).
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
               "MMEREP_PROFILES": str(profiles), "MMEREP_CACHE_DIR": str(cache),
               "COLUMNS": "100"}
        mmerep = [sys.executable, "-m", "mmerep"]
        subprocess.run([*mmerep, "env", "deploy", "-F", "bench", "htcondor-batch",
                        "sentinel3:v0.1.0"], check=True, capture_output=True, env=env)
        kubectl = [str(build.binary_path("kubectl")), "--kubeconfig", kubeconfig,
                   "-n", NAMESPACE]
        selector = "app.kubernetes.io/instance=sentinel3"
        in_cluster_env = _service_account(work, kubectl, env, kubeconfig)
        sa_kubectl = [str(build.binary_path("kubectl")), "--server",
                      f"https://{in_cluster_env['KUBERNETES_SERVICE_HOST']}:"
                      f"{in_cluster_env['KUBERNETES_SERVICE_PORT']}",
                      "--certificate-authority", f"{in_cluster_env['MMEREP_SA_DIR']}/ca.crt",
                      "--token", (Path(in_cluster_env["MMEREP_SA_DIR"]) / "token").read_text(),
                      "-n", NAMESPACE]
        # Its objects (the Lease, classes); its pods are simulated, so no node reports.
        subprocess.run([*kubectl[:-2], "create", "namespace", "mmerep-provisioner"],
                       check=True, capture_output=True)
        installed = subprocess.run([*mmerep, "provisioner", "install", "-F", "bench",
                                    "--image", "example.org/mme-rep/provisioner:bench"],
                                   capture_output=True, text=True, env=env)
        if installed.returncode:
            print(f"  (provisioner install failed, status reads an empty one: "
                  f"{installed.stderr.strip()})")
        prov_ns = "mmerep-provisioner"
        scaler_objects = ["get", "deploy,configmaps,pods", "-l", selector]
        cases = {
            "kubectl get configmaps -l mme-rep/record=true":
                [*kubectl, "get", "configmaps", "-l", "mme-rep/record=true"],
            "mme-rep env list": [*mmerep, "env", "list", "-F", "bench"],
            "kubectl get deploy,ds,svc,pods,events -l instance":
                [*kubectl, "get", "deploy,ds,svc,pods,events", "-l", selector],
            "mme-rep env status sentinel3": [*mmerep, "env", "status", "-F", "bench",
                                             "sentinel3"],
            "kubectl get deploy,configmaps,pods -l instance": [*kubectl, *scaler_objects],
            "mme-rep scaler -F bench sentinel3": [*mmerep, "scaler", "-F", "bench", "sentinel3"],
            # its Role lets it read the Deployment and the state by name only
            "kubectl get (scaler's token) deploy/..-executor cm/..-scaler-state":
                [*sa_kubectl, "get", "deployment/sentinel3-executor",
                 "configmap/sentinel3-scaler-state"],
            "mme-rep scaler --in-cluster --env sentinel3":
                [*mmerep, "scaler", "--in-cluster", "--env", "sentinel3"],
            "kubectl get configmaps,leases,pv,storageclasses": [
                *kubectl[:-2], "-n", prov_ns, "get", "configmaps,leases,pv,storageclasses"],
            "mme-rep provisioner status": [*mmerep, "provisioner", "status", "-F", "bench"],
            "python -c pass": [sys.executable, "-c", "pass"],
            "mme-rep --help": [*mmerep, "--help"],
        }
        envs = {"mme-rep scaler --in-cluster --env sentinel3": in_cluster_env}
        for name, cmd in cases.items():  # warm the file cache, the .pyc files and our cache
            _once(cmd, envs.get(name, env))
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        cold: list[float] = []
        load_before = os.getloadavg()[0]
        for _ in range(rounds):
            for name, cmd in cases.items():
                times[name].append(_once(cmd, envs.get(name, env), cpu[name]))
            shutil.rmtree(cache / "kube", ignore_errors=True)
            cold.append(_once(cases["mme-rep env list"], env))
    med = {name: statistics.median(t) for name, t in times.items()}
    med_cpu = {name: statistics.median(t) for name, t in cpu.items()}
    pairs = [("mme-rep env list", "kubectl get configmaps -l mme-rep/record=true"),
             ("mme-rep env status sentinel3", "kubectl get deploy,ds,svc,pods,events -l instance"),
             ("mme-rep scaler -F bench sentinel3",
              "kubectl get deploy,configmaps,pods -l instance"),
             ("mme-rep scaler --in-cluster --env sentinel3",
              "kubectl get (scaler's token) deploy/..-executor cm/..-scaler-state"),
             ("mme-rep provisioner status", "kubectl get configmaps,leases,pv,storageclasses"),
             ("mme-rep --help", "python -c pass")]
    rows: list[dict[str, object]] = []
    for ours, theirs in pairs:
        rows.append({"case": theirs, "median_ms": round(med[theirs] * 1000), "ratio": 1.0,
                     "cpu_ms": round(med_cpu[theirs] * 1000)})
        rows.append({"case": ours, "median_ms": round(med[ours] * 1000),
                     "ratio": round(med[ours] / med[theirs], 2),
                     "target": "<3" if ours == "mme-rep --help" else "<=2",
                     "cpu_ms": round(med_cpu[ours] * 1000),
                     "cpu_ratio": round(med_cpu[ours] / med_cpu[theirs], 2)})
    # On 2 shared cores the wall time mostly measures the wait for a core: say how busy.
    rows.append({"case": "load average (1 min) before and after the rounds",
                 "load": f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"})
    base = med["kubectl get configmaps -l mme-rep/record=true"]
    rows.append({"case": "mme-rep env list, first run after a kubeconfig change",
                 "median_ms": round(statistics.median(cold) * 1000),
                 "ratio": round(statistics.median(cold) / base, 2)})
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    for row in run():
        print(row)
