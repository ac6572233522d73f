"""The local cluster survives its components crashing, and goes back to a snapshot.

These tests kill a cluster's processes with SIGKILL and bring it back with ``cluster
up``, as a user would: on a private cluster of their own (own state directory, ports and
processes), so the session's cluster, which every other test uses, is left alone.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mmerep import environments, envlock
from mmerep.cluster import local, sample
from mmerep.kube import Kube
from mmerep.profiles import get_profile
from testkit.private_cluster import private_cluster

pytestmark = pytest.mark.cluster
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                 "kwok-controller")


@pytest.fixture(scope="module")
def cluster() -> Iterator[local.ClusterInfo]:
    with private_cluster("mmerep-durability-"):
        yield local.up(local.ClusterSpec(nodes=2))


@pytest.fixture()
def kube(cluster: local.ClusterInfo) -> Kube:
    return local.connect()  # type: ignore[no-any-return]


@pytest.fixture()
def fresh_ns(kube: Kube) -> Iterator[str]:
    name = f"dur-{uuid.uuid4().hex[:8]}"
    yield name
    local.connect().delete("v1", "Namespace", name, propagation="Background")


def deploy(kube: Kube, namespace: str, env: str) -> environments.Rendered:
    sample.push_sample_image(local.registry_address(), repo=f"mme-rep/htcondor-batch/{env}",
                             tag="v1")
    profile = dataclasses.replace(get_profile("local"), namespace=namespace)
    rendered = environments.render_environment(profile, "htcondor-batch", f"{env}:v1",
                                               params={"executors": 2})
    environments.deploy(kube, rendered, timeout=120)
    return rendered


def assert_healthy(namespace: str, rendered: environments.Rendered, secret: str) -> None:
    """Everything still there: records, parts, the pool secret's value, and ready pods."""
    kube = local.connect()
    kube.wait_for(rendered.workload_objects(), timeout=120)
    status = environments.environment_status(kube, namespace, rendered.env_name)
    assert {c["state"] for c in status["components"]} == {"Active"}
    assert len(status["components"]) == 4
    history = environments.history(kube, namespace, rendered.env_name)
    assert [h["status"] for h in history] == ["deployed"]
    got = kube.get("v1", "Secret", f"{rendered.env_name}-pool", namespace)
    assert got is not None and got["data"]["password"] == secret


def kill(names: tuple[str, ...]) -> None:
    states = local.component_states()
    for name in names:
        if name == "registry":
            os.kill(local._read_state()["registry_pid"], signal.SIGKILL)
        else:
            pid = states[name][0]
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(states.get(n, (0, False))[1] for n in names if n != "registry"):
        assert time.monotonic() < deadline, f"{names} still alive after SIGKILL"
        time.sleep(0.05)
        states = local.component_states()


def test_killed_components_come_back_with_every_object(kube: Kube, fresh_ns: str,
                                                       cluster: local.ClusterInfo) -> None:
    assert set(local.component_states()) == set(CONTROL_PLANE)
    rendered = deploy(kube, fresh_ns, "keep")
    secret = kube.get("v1", "Secret", "keep-pool", fresh_ns)["data"]["password"]
    everything = (*CONTROL_PLANE, "registry")
    for victims in [(name,) for name in CONTROL_PLANE] + [everything]:
        kill(victims)
        status = local.status()
        down = {c["name"] for c in status["components"] if c["state"] != "running"}
        assert not status["running"] and set(victims) <= down | {"kube-apiserver (API)"}
        shown = subprocess.run([sys.executable, "-m", "mmerep", "cluster", "status"],
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 1
        assert all(v in shown.stderr for v in victims), shown.stderr
        info = local.up(local.ClusterSpec(nodes=cluster.nodes))
        assert set(info.restarted) == set(victims) - {"registry"}, info
        assert info.server == cluster.server and info.registry == cluster.registry
        assert local.status()["running"]
        assert_healthy(fresh_ns, rendered, secret)
    # A deploy after all that works, and the image is still in the registry.
    sample.push_sample_image(cluster.registry, repo="mme-rep/htcondor-batch/keep", tag="v2",
                             note="v2")
    upgraded = environments.render_environment(
        dataclasses.replace(get_profile("local"), namespace=fresh_ns), "htcondor-batch",
        "keep:v2", params={"executors": 2})
    assert environments.deploy(local.connect(), upgraded, timeout=120).revision == 2


def test_api_server_killed_mid_deploy_then_the_rerun_converges(
        kube: Kube, fresh_ns: str, tmp_path: Path, cluster: local.ClusterInfo) -> None:
    sample.push_sample_image(cluster.registry, repo="mme-rep/htcondor-batch/mid", tag="v1")
    (tmp_path / "profiles.yaml").write_text(yaml.safe_dump({"profiles": {"t": {
        "context": local.CONTEXT, "kubeconfig": str(local.kubeconfig_path()),
        "namespace": fresh_ns, "registry": cluster.registry, "project": "mme-rep"}}}))
    env = {**os.environ, "MMEREP_PROFILES": str(tmp_path / "profiles.yaml")}
    cmd = [sys.executable, "-m", "mmerep", "env", "deploy", "-F", "t", "htcondor-batch",
           "mid:v1", "--timeout", "120"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not [r for r in environments.read_records(kube, fresh_ns, "mid")
               if r["data"]["status"] == "deploying"]:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    kill(("kube-apiserver",))
    rc = proc.wait(timeout=120)
    err = proc.stderr.read() if proc.stderr else ""
    assert rc == 1 and "cannot reach the API server" in err and "Traceback" not in err, err
    local.up(local.ClusterSpec(nodes=cluster.nodes))
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    kube = local.connect()
    history = environments.read_records(kube, fresh_ns, "mid")
    assert [r["data"]["status"] for r in history] in (["interrupted", "deployed"],
                                                      ["failed", "deployed"])
    live = kube.get("apps/v1", "Deployment", "mid-executor", fresh_ns)
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == \
        history[-1]["data"]["image"]
    assert kube.get("coordination.k8s.io/v1", "Lease", envlock.lease_name("mid"),
                    fresh_ns) is None


@pytest.mark.timeout(1500)  # the first restore builds etcdutl
def test_snapshot_restore_brings_back_a_deleted_environment(
        kube: Kube, fresh_ns: str, tmp_path: Path, cluster: local.ClusterInfo) -> None:
    rendered = deploy(kube, fresh_ns, "snap")
    secret = kube.get("v1", "Secret", "snap-pool", fresh_ns)["data"]["password"]
    file = tmp_path / "known-good.db"
    saved = subprocess.run([sys.executable, "-m", "mmerep", "cluster", "snapshot", "save",
                            str(file)], capture_output=True, text=True, timeout=120)
    assert saved.returncode == 0, saved.stderr
    assert file.stat().st_size > 100_000
    environments.delete_environment(kube, fresh_ns, "snap", purge=True)
    later = f"dur-later-{uuid.uuid4().hex[:6]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": later}})
    with pytest.raises(Exception, match="not found"):
        environments.history(kube, fresh_ns, "snap")
    restored = subprocess.run([sys.executable, "-m", "mmerep", "cluster", "snapshot",
                               "restore", str(file)], capture_output=True, text=True,
                              timeout=1400)
    assert restored.returncode == 0, restored.stderr
    assert_healthy(fresh_ns, rendered, secret)
    assert local.connect().get("v1", "Namespace", later) is None  # made after the snapshot
    bad = tmp_path / "not-a-snapshot.db"
    bad.write_bytes(b"hello")
    refused = subprocess.run([sys.executable, "-m", "mmerep", "cluster", "snapshot",
                              "restore", str(bad)], capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "not a usable etcd snapshot" in refused.stderr
    assert local.status()["running"]
