"""What rides along with the cluster: the registry, and kwok's exec and port-forward."""

from __future__ import annotations

import subprocess
import time
import urllib.request

import pytest

from mmerep.cluster import build, local, sample
from mmerep.cluster.podsshd import route_port
from mmerep.errors import RegistryError
from mmerep.kube import Kube
from mmerep.registry import RegistryClient
from testkit.scripted_http import scripted_server

pytestmark = pytest.mark.cluster


def test_up_again_is_a_no_op(cluster: local.ClusterInfo) -> None:
    again = local.up(local.ClusterSpec(nodes=4))
    assert again.already_running
    assert again.server == cluster.server and again.nodes == 4


def test_status_lists_components_and_nodes(cluster: local.ClusterInfo) -> None:
    data = local.status()
    assert data["running"]
    names = {c["name"] for c in data["components"]}
    assert {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
            "kwok-controller", "registry"} <= names
    assert sorted(n["name"] for n in data["nodes"]) == [f"mmerep-node-{i}" for i in range(1, 5)]
    assert all(n["ready"] == "Ready" and n["cpu"] == "16" and n["memory"] == "64Gi"
               for n in data["nodes"])


def test_the_registry_pins_a_pushed_image_by_digest(cluster: local.ClusterInfo) -> None:
    digest = sample.push_sample_image(cluster.registry, tag="t1")
    client = RegistryClient(cluster.registry)
    assert client.resolve(sample.SAMPLE_REPO, "t1") == digest
    assert "t1" in client.tags(sample.SAMPLE_REPO)
    newer = sample.push_sample_image(cluster.registry, tag="t1", note="-rebuilt")
    assert newer != digest and client.resolve(sample.SAMPLE_REPO, "t1") == newer
    with pytest.raises(RegistryError) as info:
        client.resolve(sample.SAMPLE_REPO, "no-such-tag")
    assert "not found" in info.value.message


def _running_pod(kube: Kube, namespace: str, name: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
           "spec": {"containers": [{"name": "main", "image": "example.org/none:1"}]}}
    kube.apply(pod)
    kube.wait_for([pod], timeout=60)


def _kubectl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(build.binary_path("kubectl")), "--kubeconfig",
                           str(local.kubeconfig_path()), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_exec_into_a_simulated_pod_runs_locally(kube: Kube, namespace: str) -> None:
    kube.apply({"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Exec",
                "metadata": {"name": "shell", "namespace": namespace},
                "spec": {"execs": [{"local": {"envs": [{"name": "MMEREP_POD",
                                                         "value": "shell"}]}}]}})
    _running_pod(kube, namespace, "shell")
    deadline = time.monotonic() + 30
    while True:
        out = _kubectl("exec", "-n", namespace, "shell", "--", "sh", "-c", "echo $MMEREP_POD")
        if out.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "shell"


def test_port_forward_to_a_simulated_pod_reaches_a_local_server(
        kube: Kube, namespace: str) -> None:
    with scripted_server() as (hello, script):
        script.answers = [(200, "hello from behind the pod", {})]
        route_port(kube, namespace, "web", 8080, int(hello.rsplit(":", 1)[1]))
        _running_pod(kube, namespace, "web")
        proc = subprocess.Popen(
            [str(build.binary_path("kubectl")), "--kubeconfig", str(local.kubeconfig_path()),
             "port-forward", "-n", namespace, "pod/web", ":8080"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # "Forwarding from 127.0.0.1:NNNN -> 8080"
            local_port = int(line.split("127.0.0.1:")[1].split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{local_port}/", timeout=10) as r:
                assert r.read() == b"hello from behind the pod"
        finally:
            proc.terminate()
            proc.wait(10)
