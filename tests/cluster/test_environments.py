"""Environments on the local cluster and its real registry, end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmerep import environments
from mmerep.cluster import local, sample
from mmerep.errors import (
    KubeAdmissionDenied,
    KubeConflict,
    KubeForbidden,
    KubeTimeout,
    RegistryError,
)
from mmerep.kube import Kube
from mmerep.profiles import get_profile

pytestmark = pytest.mark.cluster
SELECTOR = "app.kubernetes.io/managed-by=mme-rep"


@pytest.fixture()
def fresh_ns(kube: Kube) -> Iterator[str]:
    """A namespace name that does not exist yet: deploy must create it."""
    name = f"env-{uuid.uuid4().hex[:8]}"
    yield name
    kube.delete("v1", "Namespace", name, propagation="Background")


@pytest.fixture(scope="module")
def images(cluster: local.ClusterInfo) -> dict[str, str]:
    digests = {}
    for flavour in ("htcondor-batch", "interactive", "jupyter"):
        for tag in ("v0.1.0", "v0.2.0"):
            digests[tag] = sample.push_sample_image(
                cluster.registry, repo=f"mme-rep/{flavour}/sentinel3", tag=tag, note=tag)
    return digests


def profile_for(namespace: str, **changes: Any) -> Any:
    return dataclasses.replace(get_profile("local"), namespace=namespace, **changes)


def ours(kube: Kube, namespace: str) -> list[str]:
    found = []
    for api_version, kind in environments.MANAGED_KINDS:
        found += [f"{kind}/{o['metadata']['name']}" for o in kube.list_objects(
            api_version, kind, namespace, label_selector=SELECTOR)]
    for api_version, kind in environments.CLUSTER_KINDS:
        found += [f"{kind}/{o['metadata']['name']}" for o in kube.list_objects(
            api_version, kind, label_selector=f"{SELECTOR},mme-rep/namespace={namespace}")]
    return found


def running_pods(kube: Kube, namespace: str) -> list[dict]:
    return [p for p in kube.list_objects("v1", "Pod", namespace,
                                         label_selector="app.kubernetes.io/instance=sentinel3")
            if p["status"].get("phase") == "Running"]


def test_htcondor_batch_lifecycle(kube: Kube, fresh_ns: str, images: dict[str, str]) -> None:
    profile = profile_for(fresh_ns)
    rendered = environments.render_environment(profile, "htcondor-batch", "sentinel3:v0.1.0")
    assert rendered.image.endswith("@" + images["v0.1.0"])  # tag pinned to the real digest
    result = environments.deploy(kube, rendered, timeout=120)
    assert (result.action, result.revision) == ("installed", 1)

    ns = kube.get("v1", "Namespace", fresh_ns)
    assert ns is not None
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    status = environments.environment_status(kube, fresh_ns, "sentinel3")
    comps = {c["name"]: c for c in status["components"]}
    assert comps["sentinel3-executor"]["ready"] == 2
    assert comps["sentinel3-collector"]["ready"] == 1
    assert comps["sentinel3-scheduler"]["ports"] == ["22/tcp", "9618/tcp"]
    assert comps["sentinel3-synclocal"]["ready"] == 4  # one per simulated node
    assert all(c["state"] == "Active" for c in comps.values())
    assert status["synclocal"] == "synclocal: no node has reported staged data"
    assert len(running_pods(kube, fresh_ns)) == 2 + 1 + 1 + 4
    secret = kube.get("v1", "Secret", "sentinel3-pool", fresh_ns)
    assert secret is not None
    password = secret["data"]["password"]

    again = environments.deploy(kube, environments.render_environment(
        profile, "htcondor-batch", "sentinel3:v0.1.0"), timeout=120)
    assert (again.action, again.revision, again.changes) == ("unchanged", 1, [])
    changes = environments.diff(kube, environments.render_environment(
        profile, "htcondor-batch", "sentinel3:v0.1.0", params={"executors": "3"}))
    assert [(c["action"], c["object"]) for c in changes] == [
        ("configured", "Deployment/sentinel3-executor")]
    assert "-  replicas: 2\n+  replicas: 3" in changes[0]["diff"]

    upgraded = environments.deploy(kube, environments.render_environment(
        profile, "htcondor-batch", "sentinel3:v0.2.0"), timeout=120)
    assert (upgraded.action, upgraded.revision) == ("upgraded", 2)
    live = kube.get("apps/v1", "Deployment", "sentinel3-executor", fresh_ns)
    assert live is not None
    image = live["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith("@" + images["v0.2.0"])
    kept = kube.get("v1", "Secret", "sentinel3-pool", fresh_ns)
    assert kept is not None and kept["data"]["password"] == password  # kept on re-deploy

    assert [h["status"] for h in environments.history(kube, fresh_ns, "sentinel3")] == [
        "superseded", "deployed"]
    rows = environments.list_environments(kube, fresh_ns)
    assert [(r["name"], r["revision"], r["status"]) for r in rows] == [
        ("sentinel3", 2, "deployed")]
    # env list reads the records' metadata only: it says what their data says
    full = kube.list_objects("v1", "ConfigMap", fresh_ns, label_selector="mme-rep/record=true")
    for record in full:
        del record["metadata"]["annotations"]
    assert rows == environments.environment_rows(full)

    assert f"ClusterRole/mmerep-{fresh_ns}-sentinel3-synclocal" in ours(kube, fresh_ns)
    gone = environments.delete_environment(kube, fresh_ns, "sentinel3")
    assert "Deployment/sentinel3-executor" in gone
    assert ours(kube, fresh_ns) == []
    assert running_pods(kube, fresh_ns) == []


def test_a_rollout_that_cannot_get_ready_is_rolled_back(
        kube: Kube, fresh_ns: str, images: dict[str, str]) -> None:
    good = profile_for(fresh_ns)
    environments.deploy(kube, environments.render_environment(
        good, "htcondor-batch", "sentinel3:v0.1.0", params={"synclocal": "false"}), timeout=120)
    nowhere = profile_for(fresh_ns, node_selector={"mme-rep/no-such-node": "true"})
    bad = environments.render_environment(nowhere, "htcondor-batch", "sentinel3:v0.2.0",
                                          params={"synclocal": "false"})
    seen: list[Any] = []
    with pytest.raises(KubeTimeout) as info:
        environments.deploy(kube, bad, timeout=8, on_progress=seen.extend)
    assert "rolled back to revision 1" in info.value.message
    notes = {s.name: s.note for s in seen if s.note}
    assert "FailedScheduling" in notes.get("sentinel3-executor", ""), notes  # live view
    assert re.search(r"\(latest warning: sentinel3-(?:collector|scheduler|executor)-[a-z0-9-]+: "
                     r"0/\d+ nodes are available: \d+ node\(s\) didn't match Pod's node "
                     r"affinity/selector", info.value.message), info.value.message
    statuses = [h["status"] for h in environments.history(kube, fresh_ns, "sentinel3")]
    assert statuses == ["superseded", "failed", "deployed"]
    status = environments.environment_status(kube, fresh_ns, "sentinel3")
    for comp in status["components"]:  # the previous revision is serving again
        assert comp["state"] == "Active", comp
        assert comp["image"].endswith("@" + images["v0.1.0"])


def test_a_failed_first_install_is_removed(kube: Kube, fresh_ns: str, images: dict) -> None:
    nowhere = profile_for(fresh_ns, node_selector={"mme-rep/no-such-node": "true"})
    bad = environments.render_environment(nowhere, "interactive", "sentinel3:v0.1.0")
    with pytest.raises(KubeTimeout) as info:
        environments.deploy(kube, bad, timeout=5)
    assert "first install removed" in info.value.message
    assert ours(kube, fresh_ns) == []


def test_jupyter_and_interactive_deploy(kube: Kube, fresh_ns: str, images: dict) -> None:
    profile = profile_for(fresh_ns)
    for template in ("jupyter", "interactive"):
        rendered = environments.render_environment(
            profile, template, f"{local.registry_address()}/mme-rep/htcondor-batch/"
            "sentinel3:v0.1.0", name=f"s3-{template}")
        assert environments.deploy(kube, rendered, timeout=120).action == "installed"
    assert kube.get("v1", "Secret", "s3-jupyter-token", fresh_ns) is not None
    names = {p["metadata"]["labels"]["app.kubernetes.io/instance"]
             for p in kube.list_objects("v1", "Pod", fresh_ns) if p["status"]["phase"] == "Running"}
    assert names == {"s3-jupyter", "s3-interactive"}


# -- bad input: one clear error and nothing in the cluster ---------------------------------

def test_missing_tag_in_the_registry_applies_nothing(kube: Kube, fresh_ns: str,
                                                    images: dict) -> None:
    with pytest.raises(RegistryError) as info:
        environments.render_environment(profile_for(fresh_ns), "htcondor-batch",
                                        "sentinel3:v9.9.9")
    assert "sentinel3:v9.9.9 not found" in info.value.message
    assert kube.get("v1", "Namespace", fresh_ns) is None


def test_unreachable_registry_applies_nothing(kube: Kube, fresh_ns: str) -> None:
    profile = profile_for(fresh_ns, registry="127.0.0.1:9")
    with pytest.raises(RegistryError) as info:
        environments.render_environment(profile, "htcondor-batch", "sentinel3:v0.1.0")
    assert "unreachable" in info.value.message
    assert kube.get("v1", "Namespace", fresh_ns) is None


def test_a_pod_that_psa_rejects_is_refused_before_anything_is_applied(
        kube: Kube, fresh_ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        images: dict) -> None:
    site = tmp_path / "rootly"
    (site / "manifests").mkdir(parents=True)
    (site / "template.yaml").write_text("name: rootly\ndescription: runs as root\n"
                                        "workloads: [main]\n")
    (site / "manifests" / "main.yaml.j2").write_text(yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "{{ name }}-main", "labels": {"app.kubernetes.io/component": "m"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/component": "m"}},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/component": "m"}},
                              "spec": {"containers": [{"name": "c", "image": "{{ image }}",
                                                       "securityContext": {"runAsUser": 0}}]}}},
    }))
    monkeypatch.setenv("MMEREP_TEMPLATE_PATH", str(tmp_path))
    rendered = environments.render_environment(profile_for(fresh_ns), "rootly",
                                               "sentinel3:v0.1.0", resolve=False)
    with pytest.raises(KubeAdmissionDenied) as info:
        environments.deploy(kube, rendered, timeout=30)
    assert 'violates PodSecurity "restricted:latest"' in info.value.message
    assert kube.get("v1", "Namespace", fresh_ns) is None  # the namespace it made is gone


def _sa_kubeconfig(kube: Kube, namespace: str, tmp_path: Path) -> Path:
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "outsider", "namespace": namespace}})
    token = kube.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/outsider/token",
                         body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                               "spec": {"expirationSeconds": 600}})["status"]["token"]
    cfg = yaml.safe_load(local.kubeconfig_path().read_text())
    cfg["users"] = [{"name": "outsider", "user": {"token": token}}]
    cfg["contexts"][0]["context"]["user"] = "outsider"
    path = tmp_path / "outsider.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_namespace_forbidden_to_the_user_applies_nothing(
        kube: Kube, fresh_ns: str, tmp_path: Path, images: dict) -> None:
    kubeconfig = _sa_kubeconfig(kube, fresh_ns, tmp_path)
    profile = profile_for(fresh_ns, kubeconfig=str(kubeconfig))
    outsider = Kube.from_kubeconfig(kubeconfig, "mmerep-local")
    rendered = environments.render_environment(profile, "htcondor-batch", "sentinel3:v0.1.0")
    with pytest.raises(KubeForbidden) as info:
        environments.deploy(outsider, rendered, timeout=30)
    assert type(info.value) is KubeForbidden  # RBAC, not admission
    assert f'User "system:serviceaccount:{fresh_ns}:outsider" cannot' in info.value.message
    assert ours(kube, fresh_ns) == []


def test_an_unreachable_api_server_is_a_clear_error(tmp_path: Path, images: dict) -> None:
    cfg = yaml.safe_load(local.kubeconfig_path().read_text())
    cfg["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    path = tmp_path / "dead.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "MMEREP_PROFILES": str(tmp_path / "profiles.yaml")}
    (tmp_path / "profiles.yaml").write_text(yaml.safe_dump({"profiles": {"dead": {
        "context": "mmerep-local", "kubeconfig": str(path), "namespace": "x",
        "registry": local.registry_address(), "project": "mme-rep"}}}))
    out = subprocess.run([sys.executable, "-m", "mmerep", "env", "list", "-F", "dead"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1
    assert "cannot reach the API server at https://127.0.0.1:9" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_deploy_prints_the_table_users_know(kube: Kube, fresh_ns: str, tmp_path: Path,
                                                images: dict) -> None:
    (tmp_path / "profiles.yaml").write_text(yaml.safe_dump({"profiles": {"dev-s3": {
        "context": "mmerep-local", "kubeconfig": str(local.kubeconfig_path()),
        "namespace": fresh_ns, "registry": local.registry_address(), "project": "mme-rep",
        "requests": {"cpu": "1", "memory": "10G"}}}}))
    env = {**os.environ, "MMEREP_PROFILES": str(tmp_path / "profiles.yaml"), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "mmerep", "env", "deploy", "-F", "dev-s3", "htcondor-batch",
           "sentinel3:v0.1.0"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    for line in ("sentinel3-collector", "sentinel3-executor", "sentinel3-scheduler",
                 "sentinel3-synclocal", "22/tcp"):
        assert line in out.stdout
    assert out.stdout.count("Active") == 4
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "nothing changed" in again.stderr
    listed = subprocess.run([sys.executable, "-m", "mmerep", "env", "list", "-F", "dev-s3",
                             "-o", "json"], capture_output=True, text=True, env=env, timeout=60)
    assert [r["name"] for r in json.loads(listed.stdout)] == ["sentinel3"]
    password = kube.get("v1", "Secret", "sentinel3-pool", fresh_ns)["data"]["password"]
    assert password not in out.stdout + out.stderr + again.stdout + again.stderr
    narrow = subprocess.run([sys.executable, "-m", "mmerep", "env", "status", "sentinel3",
                             "-F", "dev-s3"], capture_output=True, text=True,
                            env={**env, "COLUMNS": "80"}, timeout=60)
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0] == f"environment sentinel3 in namespace {fresh_ns}"
    assert lines[1].startswith(".../mme-rep/htcondor-batch/sentinel3:v0.1.0@sha256:",
                               len("image "))
    roles = [line.split()[1] for line in lines if line.startswith("│ ")]
    assert sorted(roles) == ["collector", "executor", "scheduler", "synclocal"]  # one line each


def test_pods_are_judged_on_a_namespace_made_a_moment_ago(kube: Kube) -> None:
    """The newcomer's race: admission looks up a ServiceAccount that the controller
    manager makes only after the namespace exists; the check waits for it."""
    for _ in range(5):
        namespace = f"env-{uuid.uuid4().hex[:8]}"
        rendered = environments.render_environment(profile_for(namespace), "htcondor-batch",
                                                   "sentinel3:v0.1.0", resolve=False)
        kube.apply(environments.namespace_object(namespace))
        try:
            environments.check_pods_admitted(kube, rendered)  # raised "not found" before
        finally:
            kube.delete("v1", "Namespace", namespace, propagation="Background")


def test_fields_another_tool_set_stop_a_deploy_unless_forced(
        kube: Kube, fresh_ns: str, images: dict) -> None:
    profile = profile_for(fresh_ns)
    params = {"synclocal": "false"}
    environments.deploy(kube, environments.render_environment(
        profile, "htcondor-batch", "sentinel3:v0.1.0", params=params), timeout=120)
    # The executors' count may be set by others (the scaler: see test_scaler.py); any other
    # field another tool takes, here the collector's count, stops a deploy.
    kube.request(  # someone scales with kubectl apply --server-side --force-conflicts
        "PATCH", f"/apis/apps/v1/namespaces/{fresh_ns}/deployments/sentinel3-collector",
        body={"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "sentinel3-collector"}, "spec": {"replicas": 3}},
        content_type="application/apply-patch+yaml",
        query={"fieldManager": "kubectl", "force": "true"})
    upgrade = environments.render_environment(profile, "htcondor-batch", "sentinel3:v0.2.0",
                                              params=params)
    with pytest.raises(KubeConflict) as info:
        environments.deploy(kube, upgrade, timeout=120)
    assert 'conflict with "kubectl"' in info.value.message
    assert info.value.hint and info.value.hint.endswith("mme-rep env deploy --force")
    live = kube.get("apps/v1", "Deployment", "sentinel3-collector", fresh_ns)
    assert live is not None and live["spec"]["replicas"] == 3  # nothing changed
    assert environments.deploy(kube, upgrade, timeout=120, force=True).action == "upgraded"
    live = kube.get("apps/v1", "Deployment", "sentinel3-collector", fresh_ns)
    assert live is not None and live["spec"]["replicas"] == 1
