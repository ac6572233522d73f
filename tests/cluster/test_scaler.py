"""The scaler on the real API server: scale and vscale, who owns the replica count, the
in-pod script through KWOK's exec routing, the scaler's RBAC with a real token, and the
autoscaler loop with the real ReplicaSet controller (the pool is the in-memory one)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmerep import environments
from mmerep.cluster import build, local, podexec, sample
from mmerep.condor import MemoryPool
from mmerep.errors import KubeForbidden, KubeTimeout
from mmerep.kube import Kube
from mmerep.profiles import get_profile
from mmerep.scaler import executors as ex
from mmerep.scaler.autoscaler import DELETION_COST, Autoscaler
from mmerep.scaler.state import (
    ScalerState,
    executor_selector,
    read_state,
    save_settings,
    state_name,
)

pytestmark = pytest.mark.cluster
ENV = "sentinel3"
EXECUTOR = f"{ENV}-executor"
# Small executors, so 310 of them fit on the session's 4 simulated nodes (16 CPU each).
SMALL = {"executor_cpu": "100m", "executor_memory": "128Mi", "scratch": "1Gi"}


@pytest.fixture(scope="module")
def image(cluster: local.ClusterInfo) -> str:
    for tag in ("v0.1.0", "v0.2.0"):
        sample.push_sample_image(cluster.registry, repo=f"mme-rep/htcondor-batch/{ENV}", tag=tag,
                                 note=tag)
    return "sentinel3:v0.1.0"


@pytest.fixture()
def env_ns(kube: Kube) -> Iterator[str]:
    name = f"sc-{uuid.uuid4().hex[:8]}"
    yield name
    kube.delete("v1", "Namespace", name, propagation="Background")


def profile_for(namespace: str, **changes: Any) -> Any:
    return dataclasses.replace(get_profile("local"), namespace=namespace,
                               **{"max_executors": 400, **changes})


def deploy(kube: Kube, namespace: str, image: str = "sentinel3:v0.1.0", **params: Any) -> Any:
    rendered = environments.render_environment(profile_for(namespace), "htcondor-batch", image,
                                               params={**SMALL, **params})
    return environments.deploy(kube, rendered, timeout=180)


def replicas(kube: Kube, namespace: str) -> int:
    live = kube.get("apps/v1", "Deployment", EXECUTOR, namespace)
    assert live is not None
    return int(live["spec"]["replicas"])


def executor_pods(kube: Kube, namespace: str) -> list[dict]:
    return [p for p in kube.list_objects("v1", "Pod", namespace,
                                         label_selector=executor_selector(ENV))
            if not p["metadata"].get("deletionTimestamp")]


def test_scale_2_to_310_until_all_are_running(kube: Kube, env_ns: str, image: str) -> None:
    deploy(kube, env_ns, executors=2)
    seen: list[ex.ScaleProgress] = []
    result = ex.scale(kube, env_ns, ENV, 310, on_progress=seen.append, stall=30)
    assert (result.before, result.after, result.running, result.pending) == (2, 310, 310, 0)
    assert result.complete
    assert seen[-1].ready == 310 and len({p.ready for p in seen}) > 2  # a live count
    running = [p for p in executor_pods(kube, env_ns) if p["status"].get("phase") == "Running"]
    assert len(running) == 310
    # Every write carries a field manager; the count is now the scaler's.
    live = kube.get("apps/v1", "Deployment", EXECUTOR, env_ns)
    assert live is not None
    managers = {(m.get("manager"), m.get("operation")) for m in live["metadata"]["managedFields"]}
    assert ("mme-rep-scaler", "Update") in managers and all(m for m, _ in managers)
    assert environments.replicas_owned_elsewhere(live)
    down = ex.scale(kube, env_ns, ENV, 0, stall=30)  # leave the nodes free for the next test
    assert down.complete and executor_pods(kube, env_ns) == []


def _profiles(tmp_path: Path, namespace: str, **extra: Any) -> dict[str, str]:
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump({"profiles": {"dev-s3": {
        "context": "mmerep-local", "kubeconfig": str(local.kubeconfig_path()),
        "namespace": namespace, "registry": local.registry_address(), "project": "mme-rep",
        "requests": {"cpu": "1", "memory": "10G"}, "max_executors": 400, **extra}}}))
    return {**os.environ, "MMEREP_PROFILES": str(path), "COLUMNS": "200"}


def test_scale_beyond_capacity_reports_pending_with_the_schedulers_reason(
        kube: Kube, env_ns: str, image: str, tmp_path: Path) -> None:
    deploy(kube, env_ns, executors=2, executor_cpu="6", executor_memory="1Gi")
    env = _profiles(tmp_path, env_ns)
    out = subprocess.run([sys.executable, "-m", "mmerep", "scaler", "-F", "dev-s3", ENV,
                          "scale", "12", "--stall", "3"], capture_output=True, text=True,
                         env=env, timeout=180)
    assert out.returncode == ex.EXIT_PENDING, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Scaling deployment up from 2 to 12..."
    # 4 nodes of 16 CPU hold at most 8 executors of 6 CPU.
    running, pending = (int(w.strip(",")) for w in lines[-1].split()[1:4:2])
    assert running <= 8 and pending >= 4 and running + pending == 12, lines[-1]
    assert "(0/4 nodes are available: " in lines[-1] and "Insufficient cpu" in lines[-1]
    assert replicas(kube, env_ns) == 12


def test_a_deploy_neither_resets_nor_conflicts_with_a_scale_and_rollback_keeps_it(
        kube: Kube, env_ns: str, image: str) -> None:
    assert deploy(kube, env_ns, executors=2).revision == 1
    ex.scale(kube, env_ns, ENV, 5, stall=10)
    upgraded = deploy(kube, env_ns, "sentinel3:v0.2.0")  # a new image, no executors given
    assert upgraded.action == "upgraded" and replicas(kube, env_ns) == 5
    rendered = environments.render_environment(profile_for(env_ns), "htcondor-batch",
                                               "sentinel3:v0.2.0", params=SMALL)
    assert [c["object"] for c in environments.diff(kube, rendered)] == []  # no replicas diff
    environments.rollback_to(kube, env_ns, ENV, 1, timeout=120)
    assert replicas(kube, env_ns) == 5  # a rollback does not undo a scale
    explicit = deploy(kube, env_ns, "sentinel3:v0.2.0", executors=3)  # the operator says so
    assert ("scaled", f"Deployment/{EXECUTOR}") in explicit.changes
    assert replicas(kube, env_ns) == 3
    ex.scale(kube, env_ns, ENV, 4, stall=10)  # and the scaler can take it again
    assert deploy(kube, env_ns, "sentinel3:v0.2.0").action == "unchanged"
    assert replicas(kube, env_ns) == 4


def _watch_available(kube: Kube, namespace: str, stop: threading.Event,
                     seen: list[tuple[int, int]]) -> None:
    for event in kube.watch("apps/v1", "Deployment", namespace,
                            label_selector="app.kubernetes.io/component=executor", timeout=120):
        obj = event["object"]
        seen.append((obj["spec"].get("replicas", 0),
                     obj.get("status", {}).get("availableReplicas", 0)))
        if stop.is_set():
            return


def test_vscale_rolls_without_losing_executors_and_is_a_revision(
        kube: Kube, env_ns: str, image: str) -> None:
    deploy(kube, env_ns, executors=4)
    ex.scale(kube, env_ns, ENV, 6, stall=10)
    seen: list[tuple[int, int]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_available, args=(kube, env_ns, stop, seen),
                               daemon=True)
    watcher.start()
    time.sleep(0.5)
    revision = ex.vscale(kube, env_ns, ENV, ex.Resources("2", "8G"), timeout=120)
    time.sleep(1)
    stop.set()
    kube.patch("apps/v1", "Deployment", EXECUTOR, {"metadata": {"annotations": {
        "test/poke": "1"}}}, env_ns)  # one more event, so the watcher sees the stop
    watcher.join(timeout=30)
    assert revision == 2 and len(seen) > 3
    assert min(available for _, available in seen) >= 6, seen  # never below the desired 6
    live = kube.get("apps/v1", "Deployment", EXECUTOR, env_ns)
    assert live is not None and live["spec"]["replicas"] == 6
    assert ex.container_resources(live) == ex.Resources("2", "8G", "", "")
    history = environments.history(kube, env_ns, ENV)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"),
                                                               (2, "deployed")]
    assert history[-1]["note"] == "vscale 2/8G"
    environments.rollback_to(kube, env_ns, ENV, 1, timeout=120)
    live = kube.get("apps/v1", "Deployment", EXECUTOR, env_ns)
    assert live is not None and live["spec"]["replicas"] == 6
    assert ex.container_resources(live).cpu == "100m"  # the previous requests are back


def test_a_deploy_keeps_what_vscale_set_until_it_sets_them_itself(
        kube: Kube, env_ns: str, image: str) -> None:
    def deploy_with(image: str, **params: Any) -> Any:
        rendered = environments.render_environment(
            profile_for(env_ns), "htcondor-batch", image,
            params={"scratch": "1Gi", "executors": 2, **params})
        return environments.deploy(kube, rendered, timeout=180)

    def resources() -> tuple[str, str]:
        res = ex.container_resources(kube.get("apps/v1", "Deployment", EXECUTOR, env_ns))
        return res.cpu, res.memory

    deploy_with("sentinel3:v0.1.0")
    assert resources() == ("1", "2Gi")  # the profile's requests
    ex.vscale(kube, env_ns, ENV, ex.Resources("500m", "1Gi"), timeout=120)
    upgraded = deploy_with("sentinel3:v0.2.0")  # a new image, no resources given
    assert upgraded.action == "upgraded" and resources() == ("500m", "1Gi")
    assert upgraded.kept == [f"kept Deployment/{EXECUTOR}'s CPU and memory as vscale set "
                             "them (executor_cpu=500m, executor_memory=1Gi); --set "
                             "executor_cpu=... takes them back"]
    live = kube.get("apps/v1", "Deployment", EXECUTOR, env_ns)
    assert live["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "127.0.0.1")  # the upgrade did land
    # `env diff` of the same deploy shows nothing to change, and it stays unchanged.
    again = environments.render_environment(profile_for(env_ns), "htcondor-batch",
                                            "sentinel3:v0.2.0",
                                            params={"scratch": "1Gi", "executors": 2})
    assert environments.diff(kube, again) == []
    assert deploy_with("sentinel3:v0.2.0").action == "unchanged"
    # Setting one of them takes them back: the rest returns to the profile's.
    taken = deploy_with("sentinel3:v0.2.0", executor_memory="3Gi")
    assert taken.kept == [] and resources() == ("1", "3Gi")
    assert deploy_with("sentinel3:v0.2.0").kept == []
    assert resources() == ("1", "2Gi")


def test_a_vscale_the_nodes_cannot_hold_is_recorded_as_failed_and_undone(
        kube: Kube, env_ns: str, image: str) -> None:
    deploy(kube, env_ns, executors=2)
    with pytest.raises(KubeTimeout) as failed:  # 40 CPU: no simulated node has that many
        ex.vscale(kube, env_ns, ENV, ex.Resources("40", "1Gi"), timeout=10)
    assert "vscale 40/1Gi failed: " in failed.value.message
    assert failed.value.message.endswith("; undone, revision 1 is live again")
    live = kube.get("apps/v1", "Deployment", EXECUTOR, env_ns)
    assert live["spec"]["replicas"] == 2 and live["status"].get("readyReplicas") == 2
    assert ex.container_resources(live).cpu == "100m"
    history = environments.history(kube, env_ns, ENV)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "deployed"), (2, "failed")]
    assert history[-1]["note"].startswith("vscale 40/1Gi: ")
    # The next vscale starts from the live revision, not the failed one.
    assert ex.vscale(kube, env_ns, ENV, ex.Resources("200m", "256Mi"), timeout=120) == 3
    assert ex.container_resources(kube.get("apps/v1", "Deployment", EXECUTOR, env_ns)) \
        == ex.Resources("200m", "256Mi", "", "")


def _scheduler_pod(kube: Kube, namespace: str) -> str:
    pods = kube.list_objects("v1", "Pod", namespace, label_selector=(
        f"app.kubernetes.io/instance={ENV},app.kubernetes.io/component=scheduler"))
    return str(pods[0]["metadata"]["name"])


def _in_pod(kube: Kube, namespace: str, tmp_path: Path) -> str:
    pod = _scheduler_pod(kube, namespace)
    script = kube.get("v1", "ConfigMap", f"{ENV}-condor", namespace)["data"]["scaler.sh"]
    podexec.pod_root(kube, namespace, pod, tmp_path / "pod", files={"configs/scaler.sh": script},
                     service_account=f"{ENV}-scaler")
    return pod


def _exec(namespace: str, pod: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(build.binary_path("kubectl")), "--kubeconfig", str(local.kubeconfig_path()),
           "exec", "-n", namespace, pod, "-c", "sshd", "--", "./configs/scaler.sh", *args]
    deadline = time.monotonic() + 30
    while True:  # kwok picks up a new Exec within a moment
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if "no exec found" not in out.stderr or time.monotonic() > deadline:
            return out
        time.sleep(1)


def test_scaler_sh_in_the_scheduler_pod(kube: Kube, env_ns: str, image: str,
                                        tmp_path: Path) -> None:
    deploy(kube, env_ns, executors=2, executor_cpu="1", executor_memory="10G")
    pod = _in_pod(kube, env_ns, tmp_path)
    started = time.monotonic()
    out = _exec(env_ns, pod)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "Daemon is: off",
        "Cluster size: unknown (collector not answering)",
        "Environment size: 2",
        "Nodes are set for:",
        '    Requests: "1" CPU / "10G" RAM',
        '    Max: "" CPU / "10G" RAM',
    ]
    assert time.monotonic() - started < 40  # the pool's silence is bounded
    out = _exec(env_ns, pod, "vscale", "2", "8G")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == (
        "Scaling deployment vertically to CPU/RAM requests 2/8G and limits / ...")
    out = _exec(env_ns, pod, "scale", "5")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "Scaling deployment up from 2 to 5..."
    assert out.stdout.splitlines()[-1].startswith("Running 5, Pending 0")
    out = _exec(env_ns, pod, "scale", "401")
    # kubectl exits 1 for any failure in the container and names the command's own code.
    assert out.returncode == 1 and "exit status 2" in out.stderr, out.stderr
    assert "401 executors exceed the profile's limit of 400" in out.stderr
    out = _exec(env_ns, pod, "daemon", "on", "--min", "2", "--max", "40")
    assert out.returncode == 0 and out.stdout.startswith("Daemon is: on"), out.stderr
    status = _exec(env_ns, pod).stdout.splitlines()
    assert status[0] == "Daemon is: on" and status[2] == "Environment size: 5"
    assert status[4:] == ['    Requests: "2" CPU / "8G" RAM', '    Max: "" CPU / "" RAM']
    assert [h["note"] for h in environments.history(kube, env_ns, ENV)][-1] == "vscale 2/8G"


@pytest.fixture()
def scaler_identity(kube: Kube, env_ns: str, image: str, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Kube:
    """A connection as the scaler's service account, through the in-cluster code path."""
    deploy(kube, env_ns, executors=2)
    sa_dir = podexec.service_account_dir(kube, env_ns, f"{ENV}-scaler", tmp_path / "sa")
    for key, value in podexec.in_cluster_env(kube, sa_dir).items():
        monkeypatch.setenv(key, value)
    return Kube.in_cluster()


def test_the_scalers_token_can_do_its_job_and_nothing_else(
        kube: Kube, env_ns: str, scaler_identity: Kube, tmp_path: Path) -> None:
    me = scaler_identity
    assert me.namespace == env_ns
    me.scale("Deployment", EXECUTOR, 3, field_manager="mme-rep-scaler")
    me.patch("apps/v1", "Deployment", EXECUTOR, {"metadata": {"annotations": {"x": "y"}}})
    assert len(me.list_objects("v1", "Pod", env_ns)) > 0
    save_settings(me, env_ns, ENV, ScalerState(daemon=True, minimum=1, maximum=9))
    assert read_state(kube, env_ns, ENV).maximum == 9
    # Its status lines read the two objects `kubectl get` would; -o json also its pods.
    sent = me.requests_sent
    lines = ex.status(me, env_ns, ENV, MemoryPool(), pods=False)
    assert me.requests_sent - sent == 2
    assert (lines.environment_size, lines.daemon, lines.running) == (3, True, None)
    assert ex.status(me, env_ns, ENV, MemoryPool()).running is not None
    # As scaler.sh runs it: the pool asked from a forked child, the API read meanwhile.
    out = subprocess.run([sys.executable, "-m", "mmerep", "scaler", "--in-cluster", "--env",
                          ENV], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:3] == [
        "Daemon is: on", "Cluster size: unknown (collector not answering)",
        "Environment size: 3"]
    other = {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "other-executor", "namespace": env_ns},
             "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "other"}},
                      "template": {"metadata": {"labels": {"app": "other"}}, "spec": {
                          "containers": [{"name": "c", "image": "example.org/x:1"}]}}}}
    kube.apply(other)
    for attempt in (
        lambda: me.scale("Deployment", "other-executor", 2),
        lambda: me.patch("apps/v1", "Deployment", "other-executor", {"spec": {"replicas": 2}}),
        lambda: me.get("v1", "Secret", f"{ENV}-pool"),
        lambda: me.list_objects("v1", "Secret", env_ns),
        lambda: me.list_objects("v1", "Pod", "default"),
        lambda: me.list_objects("apps/v1", "Deployment", env_ns),  # only its own, by name
        lambda: me.patch("v1", "ConfigMap", f"{ENV}-condor", {"data": {"x": "y"}}),
    ):
        with pytest.raises(KubeForbidden):
            attempt()
    # The CLI turns a 403 into one line naming what is missing.
    out = subprocess.run([sys.executable, "-m", "mmerep", "scaler", "--in-cluster", "--env",
                          "other", "scale", "2"], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ))
    assert out.returncode == 1
    assert out.stderr.strip().startswith('error: not allowed: cannot get resource "deployments"')
    assert len(out.stderr.strip().splitlines()) == 1


def test_the_autoscaler_grows_with_the_queue_and_removes_only_idle_executors(
        kube: Kube, env_ns: str, image: str) -> None:
    deploy(kube, env_ns, executors=2)
    save_settings(kube, env_ns, ENV, ScalerState(daemon=True, minimum=1, maximum=30))
    pool = MemoryPool()
    clock = {"now": 1000.0}
    auto = Autoscaler(kube, env_ns, ENV, pool, interval=1, step=20, cooldown=60,
                      clock=lambda: clock["now"])

    def register() -> list[str]:
        ex.follow(kube, env_ns, ENV, replicas(kube, env_ns), stall=10)
        names = sorted(p["metadata"]["name"] for p in executor_pods(kube, env_ns))
        pool.set_executors(names, cpus=0.1, memory_mb=128)
        return names

    register()
    pool.submit(12, cpus=0.1, memory_mb=100)
    decision = auto.run_once()
    assert decision is not None and decision.reason.startswith("scale-up")
    assert replicas(kube, env_ns) == 12  # the queue jump reached the Deployment
    names = register()
    assert len(names) == 12 and pool.schedule() == 12
    # Jobs finish on 8 executors; 4 stay busy, the queue is empty.
    busy = {s.executor for s in pool.jobs()}
    done = [s.job_id for s in pool.jobs()][:8]
    pool.finish(done)
    busy = {s.executor for s in pool.jobs()}
    assert len(busy) == 4
    clock["now"] += 1
    first = auto.run_once()
    assert first is not None and first.reason.startswith("cool-down") and \
        replicas(kube, env_ns) == 12
    clock["now"] += 61
    down = auto.run_once()
    assert down is not None and down.reason.startswith("scale-down")
    assert set(down.remove) & busy == set() and len(down.remove) == 8
    # The marked pods may already be terminating or gone; none other carries the mark.
    marked = {p["metadata"]["name"] for p in kube.list_objects(
        "v1", "Pod", env_ns, label_selector=executor_selector(ENV))
        if (p["metadata"].get("annotations") or {}).get(DELETION_COST)}
    assert marked <= set(down.remove)
    assert set(pool.drained) == set(down.remove)  # drained before they go
    deadline = time.monotonic() + 60
    while True:  # the real ReplicaSet controller removes exactly the marked pods
        left = {p["metadata"]["name"] for p in executor_pods(kube, env_ns)}
        if len(left) == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == busy
    assert set(names) - left == set(down.remove)
    state = read_state(kube, env_ns, ENV)
    assert [d["reason"].split(":")[0] for d in state.decisions] == [
        "scale-up", "cool-down", "scale-down"]
    assert state.observed["busy"] == 4 and state.policy.last_down == clock["now"]
    line = environments.environment_status(kube, env_ns, ENV)["scaler"]
    assert line.startswith("scaler: daemon on (min 1, max 30); last decision ")
    assert "scale-down: 8 idle executors removed" in line
    # Off means off: nothing is decided or written.
    save_settings(kube, env_ns, ENV, ScalerState(daemon=False))
    pool.submit(30, cpus=0.1)
    def version() -> str:
        cm = kube.get("v1", "ConfigMap", state_name(ENV), env_ns)
        assert cm is not None
        return str(cm["metadata"]["resourceVersion"])

    written = version()
    dep = kube.get("apps/v1", "Deployment", f"{ENV}-executor", env_ns)
    assert dep is not None
    ready = int(dep.get("status", {}).get("readyReplicas", 0))
    assert auto.run_once() is None and replicas(kube, env_ns) == 4
    assert version() == written
    # ... yet its gauges still say what is there (the console and the dashboard plot them).
    value = auto.metrics.registry.get_sample_value
    assert value("mmerep_scaler_executors_current") == 4
    assert value("mmerep_scaler_executors_desired") == 4  # off: the Deployment's replicas
    assert value("mmerep_scaler_executors_ready") == ready
    assert value("mmerep_scaler_executors_busy") == 4
    assert value("mmerep_scaler_idle_jobs") == 30


def test_scale_and_the_autoscaler_wait_for_a_change_in_progress(
        kube: Kube, env_ns: str, image: str) -> None:
    from datetime import UTC, datetime

    from mmerep import envlock
    from mmerep.errors import EnvironmentBusy

    deploy(kube, env_ns, executors=2)
    save_settings(kube, env_ns, ENV, ScalerState(daemon=True, minimum=1, maximum=30))
    # A deploy on another machine holds the environment (a live lease, renewed just now).
    other = envlock.Holder("bob@elsewhere pid 77", "deploy sentinel3:v0.2.0", "elsewhere", 77)
    kube.create(envlock.lease_object(env_ns, ENV, other, datetime.now(UTC)))
    with pytest.raises(EnvironmentBusy, match="bob@elsewhere"):
        ex.scale(kube, env_ns, ENV, 5, lock_wait=0)
    pool = MemoryPool()
    pool.submit(12, cpus=0.1, memory_mb=100)
    auto = Autoscaler(kube, env_ns, ENV, pool, interval=1, step=20, cooldown=60)
    decision = auto.run_once()
    assert decision is not None and decision.replicas == 12
    assert replicas(kube, env_ns) == 2  # deferred, not applied under the deploy's feet
    # The deploy is done: the next interval scales.
    kube.delete("coordination.k8s.io/v1", "Lease", envlock.lease_name(ENV), env_ns,
                propagation="Background")
    assert auto.run_once() is not None and replicas(kube, env_ns) == 12
    assert ex.scale(kube, env_ns, ENV, 3, lock_wait=0, stall=5).before == 12
    assert kube.get("coordination.k8s.io/v1", "Lease", envlock.lease_name(ENV), env_ns) is None
