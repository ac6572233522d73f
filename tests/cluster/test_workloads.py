"""Probes, disruption budgets, egress, priorities and scratch space on the local cluster."""

from __future__ import annotations

import copy
import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mmerep import environments
from mmerep.cluster import local, sample
from mmerep.errors import KubeDisruptionRefused
from mmerep.kube import Kube
from mmerep.profiles import get_profile

pytestmark = pytest.mark.cluster
ENDPOINTS = {"bulk": ["10.20.0.0/16:2049"], "datalake": ["192.0.2.10/32:443,9000"]}
NEW_KINDS = ("PodDisruptionBudget", "PriorityClass")


@pytest.fixture()
def namespace(kube: Kube) -> Iterator[str]:
    name = f"wl-{uuid.uuid4().hex[:8]}"
    yield name
    kube.delete("v1", "Namespace", name, propagation="Background")
    for pc in kube.list_objects("scheduling.k8s.io/v1", "PriorityClass",
                                label_selector=f"mme-rep/namespace={name}"):
        kube.delete("scheduling.k8s.io/v1", "PriorityClass", pc["metadata"]["name"])


@pytest.fixture(scope="module")
def image(cluster: local.ClusterInfo) -> str:
    sample.push_sample_image(cluster.registry, repo="mme-rep/htcondor-batch/sentinel3",
                             tag="v0.1.0", note="workloads")
    return "sentinel3:v0.1.0"


def profile_for(namespace: str) -> Any:
    return dataclasses.replace(get_profile("local"), namespace=namespace,
                               egress={"endpoints": ENDPOINTS})


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def pods_of(kube: Kube, namespace: str, component: str) -> list[dict[str, Any]]:
    return kube.list_objects("v1", "Pod", namespace, label_selector=(
        f"app.kubernetes.io/instance=sentinel3,app.kubernetes.io/component={component}"))


def running(kube: Kube, namespace: str, component: str) -> list[dict[str, Any]]:
    return [p for p in pods_of(kube, namespace, component)
            if p["status"].get("phase") == "Running" and not p["metadata"].get(
                "deletionTimestamp")]


def budget(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    pdb = kube.get("policy/v1", "PodDisruptionBudget", name, namespace)
    assert pdb is not None
    return dict(pdb.get("status") or {})


def test_probes_egress_and_priorities_are_admitted(kube: Kube, namespace: str,
                                                   image: str) -> None:
    rendered = environments.render_environment(profile_for(namespace), "htcondor-batch", image)
    assert environments.deploy(kube, rendered, timeout=120).action == "installed"

    live = kube.get("apps/v1", "Deployment", "sentinel3-collector", namespace)
    assert live is not None
    collector = live["spec"]["template"]["spec"]["containers"][0]
    assert collector["startupProbe"]["tcpSocket"]["port"] == 9618  # kept by the API server
    assert collector["imagePullPolicy"] == "IfNotPresent" and "@sha256:" in collector["image"]
    egress = kube.get("networking.k8s.io/v1", "NetworkPolicy", "sentinel3-egress", namespace)
    assert egress is not None
    cidrs = [r["to"][0]["ipBlock"]["cidr"] for r in egress["spec"]["egress"]
             if "ipBlock" in r.get("to", [{}])[0]]
    assert cidrs == ["10.20.0.0/16", "192.0.2.10/32"]
    # Admission resolved our classes into the pods' priorities.
    [collector_pod] = running(kube, namespace, "collector")
    [executor_pod, _] = running(kube, namespace, "executor")
    assert collector_pod["spec"]["priority"] == 100000
    assert executor_pod["spec"]["priority"] == 1000
    assert executor_pod["spec"]["preemptionPolicy"] == "Never"

    status = environments.environment_status(kube, namespace, "sentinel3")
    for comp in status["components"]:
        assert comp["state"] == "Active", comp
        assert comp["serving"] == comp["started"] == comp["desired"], comp
    assert status["stopped"] == []

    environments.delete_environment(kube, namespace, "sentinel3")
    assert kube.list_objects("scheduling.k8s.io/v1", "PriorityClass",
                             label_selector=f"mme-rep/namespace={namespace}") == []


def test_budgets_follow_scale_and_refuse_an_eviction_that_breaks_them(
        kube: Kube, namespace: str, image: str) -> None:
    rendered = environments.render_environment(profile_for(namespace), "htcondor-batch", image,
                                               params={"synclocal": "false"})
    environments.deploy(kube, rendered, timeout=120)

    def healthy(expected: int, desired: int) -> Callable[[], bool]:
        def check() -> bool:
            st = budget(kube, namespace, "sentinel3-executor")
            return (st.get("expectedPods"), st.get("desiredHealthy"),
                    st.get("currentHealthy")) == (expected, desired, expected)
        return check

    assert eventually(healthy(2, 1)), budget(kube, namespace, "sentinel3-executor")
    kube.scale("Deployment", "sentinel3-executor", 20, namespace)
    # 10% of 20 may go at once: 18 must stay.
    assert eventually(healthy(20, 18)), budget(kube, namespace, "sentinel3-executor")
    assert budget(kube, namespace, "sentinel3-executor")["disruptionsAllowed"] == 2
    kube.scale("Deployment", "sentinel3-executor", 2, namespace)
    assert eventually(healthy(2, 1)), budget(kube, namespace, "sentinel3-executor")

    # The single collector is not taken by a drain.
    assert eventually(lambda: budget(kube, namespace, "sentinel3-collector").get(
        "currentHealthy") == 1)
    [collector] = running(kube, namespace, "collector")
    with pytest.raises(KubeDisruptionRefused) as info:
        kube.evict(collector["metadata"]["name"], namespace)
    assert "disruption budget" in info.value.message
    assert kube.get("v1", "Pod", collector["metadata"]["name"], namespace) is not None

    # Executors: one may go (10% of 2, rounded up); the next is refused until it is back.
    assert eventually(lambda: budget(kube, namespace, "sentinel3-executor").get(
        "disruptionsAllowed") == 1)
    first, second = running(kube, namespace, "executor")
    # As `kubectl drain` does, the nodes are cordoned first: the evicted executor's
    # replacement cannot start, so it cannot restore the budget between the two evictions
    # (simulated pods are Ready within milliseconds).
    nodes = [n["metadata"]["name"] for n in kube.list_objects("v1", "Node")]
    cordon(kube, nodes, True)
    try:
        kube.evict(first["metadata"]["name"], namespace)
        with pytest.raises(KubeDisruptionRefused):
            kube.evict(second["metadata"]["name"], namespace)
    finally:
        cordon(kube, nodes, False)
    # Once the replacement serves, the budget allows an eviction again.
    assert eventually(lambda: budget(kube, namespace, "sentinel3-executor").get(
        "disruptionsAllowed") == 1)


def cordon(kube: Kube, nodes: list[str], unschedulable: bool) -> None:
    for name in nodes:
        kube.request("PATCH", f"/api/v1/nodes/{name}",
                     body={"spec": {"unschedulable": unschedulable}},
                     content_type="application/merge-patch+json")


def test_a_pod_evicted_for_its_scratch_space_is_reported_with_the_reason(
        kube: Kube, namespace: str, image: str) -> None:
    rendered = environments.render_environment(profile_for(namespace), "htcondor-batch", image,
                                               params={"synclocal": "false", "scratch": "5Gi"})
    environments.deploy(kube, rendered, timeout=120)
    victim = running(kube, namespace, "executor")[0]
    name = victim["metadata"]["name"]
    message = ("Pod ephemeral local storage usage exceeds the total limit of containers 5Gi. ")
    # What the kubelet writes when it evicts a pod over its ephemeral-storage limit.
    kube.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/status",
                 content_type="application/merge-patch+json", body={"status": {
                     "phase": "Failed", "reason": "Evicted", "message": message,
                     "conditions": [{"type": "DisruptionTarget", "status": "True",
                                     "reason": "TerminationByKubelet", "message": message},
                                    {"type": "Ready", "status": "False"}]}})

    def reported() -> list[dict[str, Any]]:
        stopped: list[dict[str, Any]] = environments.environment_status(
            kube, namespace, "sentinel3")["stopped"]
        return stopped

    stopped = eventually(reported)
    assert stopped == [{"component": "executor", "pod": name, "reason": "Evicted",
                        "message": message}]
    # The Deployment replaces it; the evicted pod stays listed until it is cleaned up.
    status = environments.environment_status(kube, namespace, "sentinel3")
    executor = next(c for c in status["components"] if c["component"] == "executor")
    assert eventually(lambda: len(running(kube, namespace, "executor")) == 2)
    assert executor["desired"] == 2


def without_this_issue(rendered: environments.Rendered) -> environments.Rendered:
    """The same environment as the previous mme-rep rendered it: no budgets, egress
    policies, priority classes, probes, scratch requests or spread."""
    objects = []
    for obj in copy.deepcopy(rendered.objects):
        name = obj["metadata"]["name"]
        if obj["kind"] in NEW_KINDS or name.endswith(("-egress", "-egress-api")):
            continue
        if obj["kind"] in environments.WORKLOAD_KINDS:
            spec = obj["spec"]["template"]["spec"]
            spec.pop("priorityClassName", None)
            spec.pop("topologySpreadConstraints", None)
            for c in spec["containers"]:
                for key in ("startupProbe", "readinessProbe", "livenessProbe",
                            "imagePullPolicy"):
                    c.pop(key, None)
                for part in c["resources"].values():
                    part.pop("ephemeral-storage", None)
            for volume in spec["volumes"]:
                if volume["name"] == "execute":
                    volume["emptyDir"] = {}
        objects.append(obj)
    return dataclasses.replace(rendered, objects=objects)


def test_env_diff_on_an_existing_environment_shows_exactly_these_changes(
        kube: Kube, namespace: str, image: str) -> None:
    rendered = environments.render_environment(profile_for(namespace), "htcondor-batch", image)
    environments.deploy(kube, without_this_issue(rendered), timeout=120)
    changes = {c["object"]: c for c in environments.diff(kube, rendered)}
    assert {name: c["action"] for name, c in changes.items()} == {
        "PodDisruptionBudget/sentinel3-executor": "created",
        "PodDisruptionBudget/sentinel3-collector": "created",
        "PodDisruptionBudget/sentinel3-scheduler": "created",
        "NetworkPolicy/sentinel3-egress": "created",
        "NetworkPolicy/sentinel3-egress-api": "created",
        f"PriorityClass/mmerep-{namespace}-sentinel3-control": "created",
        f"PriorityClass/mmerep-{namespace}-sentinel3-executor": "created",
        "Deployment/sentinel3-collector": "configured",
        "Deployment/sentinel3-scheduler": "configured",
        "Deployment/sentinel3-executor": "configured",
        "DaemonSet/sentinel3-synclocal": "configured",
    }
    executor = changes["Deployment/sentinel3-executor"]["diff"]
    for added in ("+        startupProbe:", "+            ephemeral-storage: 20Gi",
                  "+      topologySpreadConstraints:", "+      priorityClassName:",
                  "+          sizeLimit: 20Gi"):
        assert added in executor, (added, executor)
    changed = [line for line in executor.splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    # Only additions, but for the scratch emptyDir that now has a size limit.
    assert [line for line in changed if line.startswith("-")] == ["-      - emptyDir: {}"]
    assert not [line for line in changed if "replicas" in line or "image:" in line]
    assert not [line for line in changed if "imagePullPolicy" in line]  # already the default


def test_env_status_tells_started_from_serving(kube: Kube, namespace: str, image: str) -> None:
    rendered = environments.render_environment(profile_for(namespace), "htcondor-batch", image,
                                               params={"synclocal": "false"})
    environments.deploy(kube, rendered, timeout=120)
    [pod] = running(kube, namespace, "collector")
    name = pod["metadata"]["name"]
    containers = [{**c, "ready": False, "started": True}
                  for c in pod["status"]["containerStatuses"]]
    # What the kubelet reports while the start-up probe passed but readiness fails.
    kube.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/status",
                 content_type="application/strategic-merge-patch+json", body={"status": {
                     "conditions": [{"type": "Ready", "status": "False",
                                     "reason": "ContainersNotReady"},
                                    {"type": "ContainersReady", "status": "False",
                                     "reason": "ContainersNotReady"}],
                     "containerStatuses": containers}})

    def collector() -> dict[str, Any]:
        status = environments.environment_status(kube, namespace, "sentinel3")
        comp: dict[str, Any] = next(c for c in status["components"]
                                    if c["component"] == "collector")
        return comp

    comp = eventually(lambda: (c := collector())["state"] == "Starting" and c)
    assert comp, collector()
    assert (comp["started"], comp["serving"], comp["desired"]) == (1, 0, 1)


def test_scratch_on_a_local_ssd_volume_is_admitted(kube: Kube, namespace: str,
                                                    image: str) -> None:
    profile = dataclasses.replace(profile_for(namespace), scratch_volume=None,
                                  storage_classes={"local-ssd": "mmerep-local-ssd"})
    rendered = environments.render_environment(profile, "htcondor-batch", image,
                                               params={"scratch": "300Gi"})
    kube.apply(environments.namespace_object(namespace))
    # The controller manager makes it; right after the cluster starts that can take a while.
    assert eventually(lambda: kube.get("v1", "ServiceAccount", "default", namespace),
                      timeout=120)
    results = kube.apply_all(rendered.objects, dry_run=True)  # the API server's validation
    environments.check_pods_admitted(kube, rendered)  # and admission of the pods
    executor = next(r.obj for r in results if r.obj["metadata"]["name"] == "sentinel3-executor"
                    and r.obj["kind"] == "Deployment")
    volume = next(v for v in executor["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == "execute")
    claim = volume["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "mmerep-local-ssd"
    assert claim["resources"]["requests"]["storage"] == "300Gi"
