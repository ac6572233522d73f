"""The monitor on the real API server with the in-memory pool: frozen jobs vacated then
held, a Running executor missing from the pool deleted and replaced by the real Deployment
controller (bounded per interval, never a busy one), all as the scheduler's own service
account; env repair and env reinstall."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmerep import environments
from mmerep.cluster import local, podexec, sample
from mmerep.condor import JobState, MemoryPool
from mmerep.environments.repair import reinstall, repair
from mmerep.errors import KubeForbidden
from mmerep.kube import Kube
from mmerep.monitor.detection import FrozenSettings
from mmerep.monitor.loop import Monitor, executor_selector
from mmerep.monitor.state import read_state
from mmerep.profiles import get_profile
from mmerep.ssh.manage import add_key, list_keys

pytestmark = pytest.mark.cluster
ENV = "sentinel3"
SMALL = {"executor_cpu": "100m", "executor_memory": "128Mi"}


@pytest.fixture(scope="module")
def image(cluster: local.ClusterInfo) -> str:
    sample.push_sample_image(cluster.registry, repo=f"mme-rep/htcondor-batch/{ENV}",
                             tag="v0.1.0", note="monitor")
    return "sentinel3:v0.1.0"


@pytest.fixture()
def env_ns(kube: Kube) -> Iterator[str]:
    name = f"mo-{uuid.uuid4().hex[:8]}"
    yield name
    kube.delete("v1", "Namespace", name, propagation="Background")


def deploy(kube: Kube, namespace: str, image: str, **params: Any) -> Any:
    profile = dataclasses.replace(get_profile("local"), namespace=namespace)
    rendered = environments.render_environment(profile, "htcondor-batch", image,
                                               params={**SMALL, **params})
    return environments.deploy(kube, rendered, timeout=180)


def as_scheduler(kube: Kube, namespace: str, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Kube:
    """A connection with the scheduler pod's service account, the way the sidecar has it."""
    sa_dir = podexec.service_account_dir(kube, namespace, f"{ENV}-scaler", tmp_path / "sa")
    for key, value in podexec.in_cluster_env(kube, sa_dir).items():
        monkeypatch.setenv(key, value)
    return Kube.in_cluster()


def running_executors(kube: Kube, namespace: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in kube.list_objects(
        "v1", "Pod", namespace, label_selector=executor_selector(ENV))
        if p.get("status", {}).get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp"))


def monitor_events(kube: Kube, namespace: str) -> list[dict]:
    return [e for e in kube.list_objects("v1", "Event", namespace)
            if e.get("source", {}).get("component") == "mme-rep-monitor"]


def test_a_frozen_job_is_vacated_then_held_and_a_busy_one_never(
        kube: Kube, env_ns: str, image: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    deploy(kube, env_ns, image, executors=2)
    me = as_scheduler(kube, env_ns, tmp_path, monkeypatch)
    pool = MemoryPool()
    pool.set_executors(running_executors(kube, env_ns), cpus=2)
    busy, frozen, marked = pool.submit(3)
    pool.update(marked, do_not_touch=True)
    assert pool.schedule() == 3
    clock = {"now": 10_000.0}
    pool.clock = lambda: clock["now"]
    monitor = Monitor(me, env_ns, ENV, pool, interval=30,
                      frozen=FrozenSettings(window=120, startup_grace=30, restart_budget=1),
                      clock=lambda: clock["now"], synclocal_urls=list)
    vacated_at = held_at = None
    for step in range(40):
        for job in pool.jobs():
            if job.status == JobState.RUNNING:  # every running job's wall clock goes on
                pool.update(job.job_id, wall_s=job.wall_s + 30,
                            cpu_user_s=job.cpu_user_s + (25 if job.job_id == busy else 0))
        monitor.run_once()
        actions = next(j for j in pool._jobs.values() if j.job_id == frozen).actions
        if actions and vacated_at is None:
            vacated_at = step
            pool.schedule()  # HTCondor starts it again (NumJobStarts grows)
        if len(actions) == 2:
            held_at = step
            break
        clock["now"] += 30
    assert vacated_at is not None and held_at is not None
    # Seen first at step 0: the window (120 s) has passed at step 4, so vacated then.
    assert vacated_at == 4
    jobs = {j.job_id: j for j in pool.jobs()}
    assert jobs[frozen].status == JobState.HELD and jobs[frozen].starts == 2
    assert jobs[busy].status == JobState.RUNNING and jobs[marked].status == JobState.RUNNING
    assert pool._jobs[busy].actions == [] and pool._jobs[marked].actions == []
    held_reason = pool._jobs[frozen].actions[1]
    assert "restarted 1 times already (budget 1), so held" in held_reason
    assert f"condor_release {frozen}" in held_reason
    # Events on the environment, findings in the state, and env status shows them.
    reasons = sorted(e["reason"] for e in monitor_events(kube, env_ns))
    assert reasons == ["FrozenJobHeld", "FrozenJobNotTouched", "FrozenJobVacated"]
    state = read_state(kube, env_ns, ENV)
    assert [(f["job"], f["action"]) for f in state.findings] == [
        (frozen, "vacate"), (marked, "none"), (frozen, "hold")]
    assert state.restarts == {frozen: 1}
    text = monitor.metrics.registry.get_sample_value
    assert text("mmerep_monitor_frozen_jobs_acted_total", {"action": "vacate"}) == 1
    assert text("mmerep_monitor_frozen_jobs_acted_total", {"action": "hold"}) == 1
    assert text("mmerep_monitor_job_restarts_total") == 1
    # A new monitor (the sidecar restarted) keeps the budget already spent.
    again = Monitor(me, env_ns, ENV, pool, clock=lambda: clock["now"], synclocal_urls=list)
    again.run_once()
    assert again.detector.restarts == {frozen: 1}
    status = environments.environment_status(kube, env_ns, ENV)
    assert status["monitor"]["line"].endswith("1 frozen-job restarts")
    assert "2 jobs running, 1 held" in status["monitor"]["line"]
    assert {w["reason"] for w in status["warnings"]} >= {"FrozenJobVacated", "FrozenJobHeld"}


def test_a_running_executor_missing_from_the_pool_is_replaced_within_the_bound(
        kube: Kube, env_ns: str, image: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    deploy(kube, env_ns, image, executors=6)
    me = as_scheduler(kube, env_ns, tmp_path, monkeypatch)
    first = running_executors(kube, env_ns)
    assert len(first) == 6
    registered, claimed, missing = first[0], first[1], first[2:]
    pool = MemoryPool()
    pool.add_executor(registered)
    # A job runs on `claimed` though its startd ad is gone (a collector hiccup): it stays.
    [job] = pool.submit(1)
    pool.start(job, claimed)
    clock = {"now": 50_000.0}
    monitor = Monitor(me, env_ns, ENV, pool, executor_grace=60, deletions_per_interval=2,
                      clock=lambda: clock["now"], synclocal_urls=list)
    monitor.run_once()
    assert running_executors(kube, env_ns) == first  # within the grace: nothing
    clock["now"] += 61
    monitor.run_once()
    state = read_state(kube, env_ns, ENV)
    deleted = [f["pod"] for f in state.findings if f["kind"] == "broken-executor"]
    assert deleted == missing[:2]  # the bound: two per interval, oldest first
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the real Deployment controller replaces them
        now_running = running_executors(kube, env_ns)
        if len(now_running) == 6 and not set(deleted) & set(now_running):
            break
        time.sleep(0.2)
    assert len(now_running) == 6 and not set(deleted) & set(now_running)
    fresh = sorted(set(now_running) - set(first))
    assert len(fresh) == 2
    clock["now"] += 30
    monitor.run_once()
    deleted = [f["pod"] for f in read_state(kube, env_ns, ENV).findings]
    assert deleted == missing[:4]  # the next two; the new pods have their whole grace
    assert registered in running_executors(kube, env_ns)
    assert claimed in running_executors(kube, env_ns)
    assert monitor.metrics.registry.get_sample_value(
        "mmerep_monitor_broken_executors_deleted_total") == 4
    events = [e for e in monitor_events(kube, env_ns) if e["reason"] == "BrokenExecutorDeleted"]
    assert len(events) == 4
    assert events[0]["involvedObject"]["name"] == f"{ENV}-executor"
    # The monitor's identity may do its job and not more.
    with pytest.raises(KubeForbidden):
        me.delete("apps/v1", "Deployment", f"{ENV}-executor", env_ns)
    with pytest.raises(KubeForbidden):
        me.patch("v1", "ConfigMap", f"{ENV}-condor", {"data": {"x": "y"}}, env_ns)
    with pytest.raises(KubeForbidden):
        me.get("v1", "Secret", f"{ENV}-pool", env_ns)


def test_a_pool_that_does_not_answer_deletes_nothing(kube: Kube, env_ns: str,
                                                    image: str) -> None:
    deploy(kube, env_ns, image, executors=2)
    pool = MemoryPool()
    pool.reachable = False
    clock = {"now": 1000.0}
    monitor = Monitor(kube, env_ns, ENV, pool, executor_grace=1, clock=lambda: clock["now"],
                      synclocal_urls=list)
    before = running_executors(kube, env_ns)
    for _ in range(3):
        monitor.run_once()
        clock["now"] += 10
    assert running_executors(kube, env_ns) == before
    line = environments.environment_status(kube, env_ns, ENV)["monitor"]["line"]
    assert line.startswith("monitor: pool not readable: ")


def _parts(kube: Kube, namespace: str) -> dict[str, str]:
    """Every live part of the environment with what a change would alter: everything but
    its status (controllers update that, e.g. a disruption budget's as pods come and go)."""
    from mmerep.environments.parts import live_parts

    def content(obj: dict) -> str:
        meta = {k: v for k, v in obj["metadata"].items()
                if k not in ("resourceVersion", "managedFields")}
        return json.dumps({**{k: v for k, v in obj.items() if k != "status"},
                           "metadata": meta}, sort_keys=True)

    return {f"{o['kind']}/{o['metadata']['name']}": content(o)
            for o in live_parts(kube, namespace, ENV)}


def test_repair_brings_back_what_was_deleted_by_hand_and_changes_nothing_else(
        kube: Kube, env_ns: str, image: str) -> None:
    deploy(kube, env_ns, image, executors=2)
    before = _parts(kube, env_ns)
    gone = {"Service/sentinel3-collector", "ConfigMap/sentinel3-condor",
            "Deployment/sentinel3-executor"}
    kube.delete("v1", "Service", f"{ENV}-collector", env_ns)
    kube.delete("v1", "ConfigMap", f"{ENV}-condor", env_ns)
    kube.delete("apps/v1", "Deployment", f"{ENV}-executor", env_ns)
    kube.wait_gone([{"apiVersion": "apps/v1", "kind": "Deployment",
                     "metadata": {"name": f"{ENV}-executor", "namespace": env_ns}}])
    assert not gone & set(_parts(kube, env_ns))
    report = repair(kube, env_ns, ENV, timeout=120)
    assert sorted(report.done) == sorted(("re-created", what) for what in gone)
    assert report.not_fixed == []
    after = _parts(kube, env_ns)
    assert set(after) == set(before)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == gone
    assert len(running_executors(kube, env_ns)) == 2
    # Again: nothing to do.
    assert repair(kube, env_ns, ENV, timeout=60).done == []


def test_repair_never_changes_the_pool_password_without_being_asked(
        kube: Kube, env_ns: str, image: str) -> None:
    deploy(kube, env_ns, image, executors=1)
    kube.delete("v1", "Secret", f"{ENV}-pool", env_ns)
    kube.wait_gone([{"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": f"{ENV}-pool", "namespace": env_ns}}])
    report = repair(kube, env_ns, ENV, timeout=60)
    assert report.done == [] and len(report.not_fixed) == 1
    assert "--new-pool-password" in report.not_fixed[0]
    assert kube.get("v1", "Secret", f"{ENV}-pool", env_ns) is None
    report = repair(kube, env_ns, ENV, new_pool_password=True, timeout=120)
    assert ("regenerated (new values)", f"Secret/{ENV}-pool") in report.done
    restarted = {o for a, o in report.done if a.startswith("restarted")}
    assert {p.split("/")[1].rsplit("-", 2)[0] for p in restarted} == {
        f"{ENV}-collector", f"{ENV}-scheduler", f"{ENV}-executor"}
    assert kube.get("v1", "Secret", f"{ENV}-pool", env_ns) is not None


# An ed25519 public key: its type, then 32 bytes of key.
KEY_BLOB = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + b"kept-across-a-reinstall-32-bytes"


def test_reinstall_keeps_the_pool_password_and_the_history(kube: Kube, env_ns: str,
                                                          image: str) -> None:
    deploy(kube, env_ns, image, executors=2)

    def generated() -> dict[str, dict]:  # the pool password (and host keys, where generated)
        return {s["metadata"]["name"]: s["data"] for s in kube.list_objects(
            "v1", "Secret", env_ns, label_selector=f"app.kubernetes.io/instance={ENV}")}

    secrets = generated()
    assert {f"{ENV}-pool", f"{ENV}-ssh-hostkeys"} <= set(secrets)
    # A key a scientist added after the deploy (`mme-rep ssh keys add`) survives too.
    added = ("ssh-ed25519 "
             f"{base64.b64encode(KEY_BLOB).decode()} scientist@laptop")
    assert add_key(kube, env_ns, ENV, added)
    uid = kube.get("apps/v1", "Deployment", f"{ENV}-scheduler", env_ns)["metadata"]["uid"]
    revision, kept = reinstall(kube, env_ns, ENV, timeout=120)
    assert kept == sorted([f"ConfigMap/{ENV}-ssh-authorized-keys",
                           *(f"Secret/{name}" for name in secrets)])
    assert generated() == secrets
    assert [k["comment"] for k in list_keys(kube, env_ns, ENV)] == ["scientist@laptop"]
    assert base64.b64decode(secrets[f"{ENV}-pool"]["password"])
    new = kube.get("apps/v1", "Deployment", f"{ENV}-scheduler", env_ns)
    assert new["metadata"]["uid"] != uid
    rows = environments.history(kube, env_ns, ENV)
    assert [r["revision"] for r in rows] == [1, revision] and revision == 2
    assert rows[-1]["note"] == "reinstall of revision 1" and rows[-1]["status"] == "deployed"
    assert len(running_executors(kube, env_ns)) == 2


POD_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "podmonitors.monitoring.coreos.com"},
    "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
             "names": {"plural": "podmonitors", "singular": "podmonitor",
                       "kind": "PodMonitor", "listKind": "PodMonitorList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object",
                                     "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def test_the_monitor_ships_a_pod_monitor_only_where_the_crd_exists(
        kube: Kube, env_ns: str, image: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    deploy(kube, env_ns, image, executors=1)
    me = as_scheduler(kube, env_ns, tmp_path, monkeypatch)
    pool = MemoryPool()
    crd = kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                   POD_MONITOR_CRD["metadata"]["name"])
    if crd is None:  # the cluster has no Prometheus Operator: annotations only
        assert Monitor(me, env_ns, ENV, pool, synclocal_urls=list).ensure_pod_monitor() is False
        kube.apply(POD_MONITOR_CRD)
    deadline = time.monotonic() + 30
    shipped = False
    while not shipped and time.monotonic() < deadline:  # until the CRD is served
        me = Kube.in_cluster()  # a fresh discovery
        shipped = Monitor(me, env_ns, ENV, pool, synclocal_urls=list).ensure_pod_monitor()
        time.sleep(0.5)
    assert shipped
    found = kube.get("monitoring.coreos.com/v1", "PodMonitor", f"{ENV}-metrics", env_ns)
    assert found is not None
    ports = [e["port"] for e in found["spec"]["podMetricsEndpoints"]]
    assert ports == ["monitor-metrics", "metrics"]
    scheduler = kube.get("apps/v1", "Deployment", f"{ENV}-scheduler", env_ns)
    assert found["metadata"]["ownerReferences"][0]["uid"] == scheduler["metadata"]["uid"]
    # It goes with the environment (the real garbage collector follows the owner).
    environments.delete_environment(kube, env_ns, ENV, timeout=60)
    deadline = time.monotonic() + 30
    while kube.get("monitoring.coreos.com/v1", "PodMonitor", f"{ENV}-metrics", env_ns) \
            and time.monotonic() < deadline:
        time.sleep(0.3)
    assert kube.get("monitoring.coreos.com/v1", "PodMonitor", f"{ENV}-metrics", env_ns) is None


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmerep", *args], capture_output=True,
                          text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)


def test_repair_and_reinstall_from_the_command_line(kube: Kube, env_ns: str, image: str,
                                                    tmp_path: Path) -> None:
    deploy(kube, env_ns, image, executors=1)
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(yaml.safe_dump({"profiles": {"dev-s3": {
        "context": "mmerep-local", "kubeconfig": str(local.kubeconfig_path()),
        "namespace": env_ns, "registry": local.registry_address(), "project": "mme-rep"}}}))
    env = {**os.environ, "MMEREP_PROFILES": str(profiles), "COLUMNS": "200"}
    pool = MemoryPool()
    pool.set_executors(running_executors(kube, env_ns))
    pool.submit(2)
    pool.schedule()
    Monitor(kube, env_ns, ENV, pool, synclocal_urls=list).run_once()
    out = _cli(env, "monitor", "status", "-F", "dev-s3", ENV, "-o", "json")
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)["observed"]
    assert (seen["jobs"], seen["running"], seen["executors"], seen["missing"]) == (2, 1, 1, 0)
    out = _cli(env, "monitor", "status", "-F", "dev-s3", ENV)
    assert "2 jobs (1 running, 0 held), 1 executors (1 busy, 0 missing)" in out.stdout
    kube.delete("v1", "Service", f"{ENV}-collector", env_ns)
    out = _cli(env, "env", "repair", "-F", "dev-s3", ENV, "-o", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["done"] == [{"action": "re-created",
                                               "object": f"Service/{ENV}-collector"}]
    out = _cli(env, "env", "repair", "-F", "dev-s3", ENV)
    assert out.returncode == 0 and "is intact; nothing to repair" in out.stdout
    # No terminal and no --yes: one line, exit 2, nothing deleted.
    uid = kube.get("apps/v1", "Deployment", f"{ENV}-scheduler", env_ns)["metadata"]["uid"]
    out = _cli(env, "env", "reinstall", "-F", "dev-s3", ENV)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: reinstalling {ENV} deletes every pod and running job (confirm with --yes)"]
    assert kube.get("apps/v1", "Deployment", f"{ENV}-scheduler", env_ns)["metadata"][
        "uid"] == uid
    out = _cli(env, "env", "reinstall", "-F", "dev-s3", ENV, "--yes")
    assert out.returncode == 0, out.stderr
    assert f"{ENV} reinstalled: revision 1 deployed again as revision 2; kept " \
           f"ConfigMap/{ENV}-ssh-authorized-keys, Secret/{ENV}-pool, " \
           f"Secret/{ENV}-ssh-hostkeys" in out.stdout
    out = _cli(env, "env", "repair", "-F", "dev-s3", "nosuch")
    assert out.returncode == 2 and out.stderr.startswith("error: environment nosuch has no "
                                                          "deployed revision")
