"""The local cluster is a real Kubernetes: scheduling, admission and RBAC all bite."""

from __future__ import annotations

import collections
import json
import logging
import time
from pathlib import Path

import pytest
import yaml

from mmerep.errors import KubeAdmissionDenied, KubeConflict, KubeForbidden
from mmerep.kube import Kube

pytestmark = pytest.mark.cluster

RESTRICTED_SECURITY = {
    "runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
}


def deployment(name: str, namespace: str, replicas: int, **pod_spec: object) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "containers": [{"name": "main", "image": "example.org/none:1",
                                     "securityContext": RESTRICTED_SECURITY}],
                     **pod_spec}}},
    }


def test_ten_replicas_run_spread_over_the_simulated_nodes(kube: Kube, namespace: str) -> None:
    spread = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
               "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels":
                                                                        {"app": "ten"}}}]
    obj = deployment("ten", namespace, 10, topologySpreadConstraints=spread)
    kube.apply(obj)
    statuses = kube.wait_for([obj], timeout=120)
    assert statuses[0].ready_pods == 10
    pods = kube.list_objects("v1", "Pod", namespace, label_selector="app=ten")
    assert len(pods) == 10
    assert all(p["status"]["phase"] == "Running" for p in pods)
    per_node = collections.Counter(p["spec"]["nodeName"] for p in pods)
    assert len(per_node) == 4, per_node  # the scheduler really ran and honoured the spread
    assert max(per_node.values()) - min(per_node.values()) <= 1


def test_pod_security_admission_restricted_rejects_a_root_pod(kube: Kube, namespace: str) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": namespace, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root", "namespace": namespace},
           "spec": {"containers": [{"name": "main", "image": "example.org/none:1",
                                    "securityContext": {"runAsUser": 0, "privileged": True}}]}}
    with pytest.raises(KubeAdmissionDenied) as info:
        kube.apply(bad)
    assert 'violates PodSecurity "restricted' in info.value.message
    assert kube.get("v1", "Pod", "root", namespace) is None
    good = {**bad, "metadata": {"name": "fine", "namespace": namespace},
            "spec": {"containers": [{"name": "main", "image": "example.org/none:1",
                                     "securityContext": RESTRICTED_SECURITY}]}}
    assert kube.apply(good).action == "created"


def _token_kube(kube: Kube, namespace: str, sa: str) -> Kube:
    token = kube.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 600}})["status"]["token"]
    cfg = kube.api_client.configuration
    return Kube.from_url(cfg.host, token=token, ca_file=cfg.ssl_ca_cert, namespace=namespace)


def test_a_service_account_without_a_role_binding_may_not_list_pods(
        kube: Kube, namespace: str) -> None:
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "nobody", "namespace": namespace}})
    as_sa = _token_kube(kube, namespace, "nobody")
    with pytest.raises(KubeForbidden) as info:
        as_sa.list_objects("v1", "Pod", namespace)
    assert f"system:serviceaccount:{namespace}:nobody" in info.value.message
    # The same token works once RBAC allows it: the refusal above was RBAC, not a bad token.
    kube.apply_all([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "pod-reader", "namespace": namespace},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "nobody-reads", "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "pod-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": namespace}]},
    ])
    # The API server's authorizer learns of the binding through its own watch: a moment.
    deadline = time.monotonic() + 30
    while True:
        try:
            assert as_sa.list_objects("v1", "Pod", namespace) == []
            break
        except KubeForbidden:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_apply_is_idempotent(kube: Kube, namespace: str) -> None:
    objs = [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "cfg", "namespace": namespace}, "data": {"a": "1"}},
            deployment("web", namespace, 2)]
    first = kube.apply_all(objs)
    assert [r.action for r in first] == ["created", "created"]
    second = kube.apply_all(objs)
    assert [r.action for r in second] == ["unchanged", "unchanged"]
    changed = [{**objs[0], "data": {"a": "2"}}, objs[1]]
    assert [r.action for r in kube.apply_all(changed)] == ["configured", "unchanged"]


def test_a_conflicting_field_manager_is_reported(kube: Kube, namespace: str) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "shared", "namespace": namespace}, "data": {"owner": "kubectl"}}
    kube.request("PATCH", f"/api/v1/namespaces/{namespace}/configmaps/shared", body=cm,
                 content_type="application/apply-patch+yaml",
                 query={"fieldManager": "kubectl"})
    ours = {**cm, "data": {"owner": "mme-rep"}}
    with pytest.raises(KubeConflict) as info:
        kube.apply(ours)
    assert 'conflict with "kubectl"' in info.value.message
    assert info.value.hint and info.value.hint.endswith("mme-rep env deploy --force")
    live = kube.get("v1", "ConfigMap", "shared", namespace)
    assert live is not None and live["data"] == {"owner": "kubectl"}  # nothing changed
    assert kube.apply(ours, force=True).obj["data"] == {"owner": "mme-rep"}


def test_scale_subresource_and_delete_in_reverse_order(kube: Kube, namespace: str) -> None:
    obj = deployment("scaled", namespace, 1)
    kube.apply(obj)
    kube.scale("Deployment", "scaled", 3, namespace)
    assert kube.get_scale("Deployment", "scaled", namespace)["spec"]["replicas"] == 3
    kube.wait_for([obj], timeout=60)
    assert len(kube.list_objects("v1", "Pod", namespace, label_selector="app=scaled")) == 3
    assert kube.delete_all([obj]) == [obj]
    kube.wait_gone([obj], timeout=60)
    assert kube.get("apps/v1", "Deployment", "scaled", namespace) is None
    assert kube.list_objects("v1", "Pod", namespace, label_selector="app=scaled") == []
    assert kube.delete_all([obj]) == []


def test_kubeconfig_is_ours_and_not_the_users(cluster: object) -> None:
    from mmerep.cluster import local

    cfg = yaml.safe_load(Path(local.kubeconfig_path()).read_text())
    assert cfg["current-context"] == "mmerep-local"
    assert (Path(local.kubeconfig_path()).stat().st_mode & 0o777) == 0o600
    server = cfg["clusters"][0]["cluster"]["server"]
    assert server.startswith("https://127.0.0.1:")


def test_in_cluster_config_from_a_service_account_directory(
        kube: Kube, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a pod (e.g. the in-pod scaler) does, with the token files in a test directory."""
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "scaler", "namespace": namespace}})
    token = kube.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/scaler/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 600}})["status"]["token"]
    cfg = kube.api_client.configuration
    (tmp_path / "token").write_text(token)
    (tmp_path / "ca.crt").write_text(Path(cfg.ssl_ca_cert).read_text())
    (tmp_path / "namespace").write_text(namespace)
    host, port = cfg.host.removeprefix("https://").rsplit(":", 1)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    in_pod = Kube.in_cluster(tmp_path)
    assert in_pod.namespace == namespace
    with pytest.raises(KubeForbidden) as info:  # authenticated as the SA, and nothing more
        in_pod.list_objects("v1", "Pod")
    assert f"system:serviceaccount:{namespace}:scaler" in info.value.message


def test_watch_lists_first_then_streams_changes(kube: Kube, namespace: str) -> None:
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "before", "namespace": namespace}, "data": {"a": "1"}})
    seen = []
    for event in kube.watch("v1", "ConfigMap", namespace, timeout=15):
        name = event["object"]["metadata"]["name"]
        if name == "kube-root-ca.crt":
            continue
        seen.append((event["type"], name, (event["object"].get("data") or {}).get("a")))
        if seen == [("ADDED", "before", "1")]:
            # Between the list and the watch request: the watch starts from the list's
            # resourceVersion, so these changes arrive although they came first.
            kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "before", "namespace": namespace},
                        "data": {"a": "2"}})
            kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "after", "namespace": namespace}})
        if name == "after":
            break
    assert seen == [("ADDED", "before", "1"), ("MODIFIED", "before", "2"),
                    ("ADDED", "after", None)]


def _pod_template(name: str, namespace: str, image: str = "example.org/none:1") -> dict:
    return {"apiVersion": "v1", "kind": "PodTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "template": {"spec": {"containers": [{"name": "main", "image": image}]}}}


def _watch_answer(kube: Kube, namespace: str, version: str) -> str:
    """The first event of a watch from ``version``: its type, and its code for an ERROR."""
    resp = kube.request("GET", f"/api/v1/namespaces/{namespace}/podtemplates", query={
        "watch": "true", "resourceVersion": version, "timeoutSeconds": 2}, stream=True)
    try:
        first = json.loads(next(iter(resp)))
    finally:
        resp.release_conn()
    return f"{first['type']} {first['object'].get('code', '')}".strip()


def test_a_watch_whose_history_is_compacted_lists_again_and_loses_nothing(
        kube: Kube, namespace: str, caplog: pytest.LogCaptureFixture) -> None:
    kube.apply(_pod_template("pt-0", namespace))
    kept = kube.list_raw("v1", "PodTemplate", namespace)["metadata"]["resourceVersion"]
    for i in (1, 2):  # changes after the version a client kept
        kube.apply(_pod_template(f"pt-{i}", namespace))
    assert _watch_answer(kube, namespace, kept) == "ADDED"  # the history is still there
    # The local cluster's etcd compacts its history every 5 s (see kwokctl_config); wait
    # until the real API server says that history is gone.
    deadline = time.monotonic() + 60
    while (answer := _watch_answer(kube, namespace, kept)) != "ERROR 410":
        assert time.monotonic() < deadline, f"no compaction in 60 s (last answer: {answer})"
        time.sleep(0.5)
    caplog.set_level(logging.INFO, logger="mmerep.kube")
    seen = []
    for event in kube.watch("v1", "PodTemplate", namespace, timeout=30,
                            resource_version=kept):
        obj = event["object"]
        seen.append((event["type"], obj["metadata"]["name"],
                     obj["template"]["spec"]["containers"][0]["image"]))
        if len(seen) == 3:  # listed again after the 410; a change now comes as an event
            kube.apply(_pod_template("pt-1", namespace, image="example.org/none:2"))
        if event["type"] == "MODIFIED":
            break
    assert seen == [("ADDED", "pt-0", "example.org/none:1"),
                    ("ADDED", "pt-1", "example.org/none:1"),
                    ("ADDED", "pt-2", "example.org/none:1"),
                    ("MODIFIED", "pt-1", "example.org/none:2")]
    assert [r.getMessage() for r in caplog.records if "410" in r.getMessage()] == [
        f"watch podtemplates from resourceVersion {kept}: 410 Gone (history compacted); "
        "listing again"]
