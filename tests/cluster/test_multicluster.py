"""Two local clusters side by side: placement by free capacity, --on, a member that is
down, finding an environment on its member, and `env list --all` across them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmerep.cluster import local
from mmerep.kube import Kube

pytestmark = pytest.mark.cluster
IMAGE = "127.0.0.1:5999/mme-rep/htcondor-batch/sentinel3:v0.1.0"


def mme(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmerep", *args], capture_output=True,
                          text=True, env={**env, "COLUMNS": "200"}, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def second(cluster: object) -> Iterator[Path]:
    """The local cluster "b" (2 nodes), beside the session's cluster; its kubeconfig."""
    env = dict(os.environ)
    try:
        up = mme("cluster", "up", "--name", "b", "--nodes", "2", env=env, timeout=600)
        if up.returncode != 0:
            # On a loaded machine the controller-manager may give up waiting for the API
            # server; `cluster up` starts the components that stopped again.
            up = mme("cluster", "up", "--name", "b", "--nodes", "2", env=env, timeout=600)
        assert up.returncode == 0, up.stderr
        state = local.state_dir()
        kubeconfig = state.with_name(f"{state.name}-b") / "kubeconfig"
        assert kubeconfig.exists() and kubeconfig != local.kubeconfig_path()
        yield kubeconfig
    finally:
        down = mme("cluster", "down", "--name", "b", env=env, timeout=120)
        assert down.returncode == 0, down.stderr


def member(kubeconfig: Path, namespace: str) -> dict[str, Any]:
    return {"kubeconfig": str(kubeconfig), "context": "mmerep-local", "namespace": namespace,
            "registry": "127.0.0.1:5999", "project": "mme-rep",
            "requests": {"cpu": "1", "memory": "2Gi"},
            "node_selector": {"mme-rep/processing": "true"}}


def fill(kube: Kube, namespace: str, replicas: int, cpu: str) -> None:
    """Pods that hold ``cpu`` each on the session cluster, bound to nodes."""
    kube.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "filler", "namespace": namespace},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "filler"}},
                         "template": {"metadata": {"labels": {"app": "filler"}},
                                      "spec": {"containers": [{
                                          "name": "c", "image": "filler:1",
                                          "resources": {"requests": {"cpu": cpu,
                                                                     "memory": "1Gi"}}}]}}}})
    kube.wait_for([{"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "filler", "namespace": namespace}}], timeout=120)


def test_placement_across_two_local_clusters(kube: Kube, namespace: str, second: Path,
                                             tmp_path: Path) -> None:
    dead = yaml.safe_load(local.kubeconfig_path().read_text())
    dead["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    (tmp_path / "dead.kubeconfig").write_text(yaml.safe_dump(dead))
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(yaml.safe_dump({
        "profiles": {"a": member(local.kubeconfig_path(), namespace),
                     "b": {**member(second, namespace),
                           "flocking": {"address": "{env}.{namespace}.b.example.org:9618"}},
                     "gone": member(tmp_path / "dead.kubeconfig", namespace)},
        "groups": {"pair": {"members": ["a", "b"]}, "trio": {"members": ["gone", "a", "b"]}}}))
    env = {**os.environ, "MMEREP_PROFILES": str(profiles)}
    # The session cluster has 4 nodes of 16 CPU, b has 2: with nothing else a has more room.
    fill(kube, namespace, replicas=4, cpu="14")  # a keeps at most 2 CPU a node

    deploy = ["env", "deploy", "-F", "pair", "htcondor-batch", IMAGE, "--no-resolve",
              "--set", "synclocal=false"]
    out = mme(*deploy, env=env)
    assert out.returncode == 0, out.stderr
    assert "b chosen: most room after it:" in out.stderr
    b_kube = Kube.from_kubeconfig(second, "mmerep-local")
    assert b_kube.get("apps/v1", "Deployment", "sentinel3-executor", namespace) is not None
    assert kube.get("apps/v1", "Deployment", "sentinel3-executor", namespace) is None

    # Later commands find it on its member.
    status = mme("env", "status", "-F", "pair", "sentinel3", "-o", "json", env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["name"] == "sentinel3"
    scaler = mme("scaler", "-F", "pair", "sentinel3", "--pool-timeout", "1", "-o", "json",
                 env=env)
    assert scaler.returncode == 0, scaler.stderr
    assert json.loads(scaler.stdout)["namespace"] == namespace
    assert json.loads(scaler.stdout)["environment_size"] == int(
        b_kube.get("apps/v1", "Deployment", "sentinel3-executor", namespace)["spec"]["replicas"])
    keys = mme("ssh", "keys", "list", "-F", "pair", "sentinel3", "-o", "json", env=env)
    assert keys.returncode == 0, keys.stderr
    assert json.loads(keys.stdout) == []  # found on b: its keys ConfigMap, empty
    unknown = mme("scaler", "-F", "pair", "nosuch", "--pool-timeout", "1", env=env)
    assert unknown.returncode != 0
    assert "environment nosuch is on no member of the group (a, b)" in unknown.stderr

    # --on overrides the choice (a small one fits in what a has left).
    on = mme(*deploy, "--name", "small", "--set", "executors=0", "--on", "a", env=env)
    assert on.returncode == 0, on.stderr
    assert "a chosen: --on a (chosen by hand" in on.stderr
    assert kube.get("apps/v1", "Deployment", "small-collector", namespace) is not None

    # A member that is down is reported and skipped.
    skipped = mme(*deploy[:3], "trio", *deploy[4:], "--name", "third", "--campaign", "olci",
                  env=env)
    assert skipped.returncode == 0, skipped.stderr
    assert "down: cannot reach the API server at https://127.0.0.1:9" in skipped.stderr
    assert "b chosen" in skipped.stderr

    # env list --all: both clusters, and the dead one on its own line.
    listed = mme("env", "list", "--all", "-o", "json", env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    where = {(r["profile"], r["name"]) for r in rows}
    assert {("a", "small"), ("b", "sentinel3"), ("b", "third")} <= where
    assert [r["status"] for r in rows if r["profile"] == "gone"] == ["unreachable"]

    # Flocking: a new environment on a flocks to sentinel3 on b, sharing b's pool password;
    # one that has its own password already is refused, unchanged.
    password = b_kube.get("v1", "Secret", "sentinel3-pool", namespace)["data"]["password"]
    own = kube.get("v1", "Secret", "small-pool", namespace)["data"]["password"]
    flock = mme(*deploy[:3], "a", *deploy[4:], "--name", "small", "--set", "executors=0",
                "--flock-with", "sentinel3@b", env=env)
    assert flock.returncode == 2 and "already has its own pool password" in flock.stderr
    assert kube.get("v1", "Secret", "small-pool", namespace)["data"]["password"] == own
    fresh = mme(*deploy[:3], "a", *deploy[4:], "--name", "fl", "--set", "executors=0",
                "--flock-with", "sentinel3@b", env=env)
    assert fresh.returncode == 0, fresh.stderr
    assert kube.get("v1", "Secret", "fl-pool", namespace)["data"]["password"] == password
    conf = kube.get("v1", "ConfigMap", "fl-condor", namespace)["data"]["00-common.conf"]
    assert f"FLOCK_TO = sentinel3.{namespace}.b.example.org:9618" in conf
    assert password not in flock.stdout + flock.stderr + fresh.stdout + fresh.stderr

    # campaign status: third's 2 executors (1 CPU / 2Gi: 1 slot each) serve the campaign.
    progress = mme("campaign", "status", "olci", "-F", "trio", "--jobs", "100", "--done",
                   "40", "--cpu-time", "1h", "--memory", "1Gi", "--now", "2027-01-01",
                   "-o", "json", env=env)
    assert progress.returncode == 0, progress.stderr
    data = json.loads(progress.stdout)
    assert [(r["member"], r.get("environment"), r.get("executors")) for r in
            data["environments"]] == [("gone", None, None), ("b", "third", 2)]
    assert data["slots_serving"] == 2
    assert data["projected_finish"] == "2027-01-02T06:00:00+00:00"  # 60 jobs / 2 slots: 30 h

    # campaign plan with room and deployed executors read live from both clusters.
    plan = mme("campaign", "plan", "-F", "trio", "--jobs", "1000", "--cpu-time", "1h",
               "--memory", "1Gi", "--deadline", "2099-01-01", "-o", "json", env=env)
    assert plan.returncode == 0, plan.stderr
    shares = {m["name"]: m for m in json.loads(plan.stdout)["members"]}
    assert set(shares) == {"a", "b"}
    assert json.loads(plan.stdout)["skipped"]["gone"].startswith("down: cannot reach")
    # b: 2 nodes of 16 CPU; sentinel3 and third request 2.85 CPU each (collector 250m,
    # scheduler 600m, 2 executors of 1), so floor(32 - 5.7) = 26 more 1-CPU executors.
    assert (shares["b"]["deployed"], shares["b"]["available"]) == (4, 4 + 26)
    assert shares["b"]["available"] > shares["a"]["available"]

    gone = mme("env", "delete", "-F", "pair", "sentinel3", env=env)
    assert gone.returncode == 0, gone.stderr
    assert b_kube.get("apps/v1", "Deployment", "sentinel3-executor", namespace) is None
