"""Real OpenSSH end to end: ssh, scp and rsync through `mme-rep ssh proxy` and the API server.

The scheduler pod is simulated (KWOK), so its port-forward is routed by KWOK's PortForward
resource to a real sshd on 127.0.0.1 that runs unprivileged with the environment's own
sshd_config, host keys and authorized keys (mmerep/cluster/podsshd.py). The client is
the real `ssh` with the config and known_hosts that `mme-rep ssh config --write` produced.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmerep import environments
from mmerep.cluster import build, local
from mmerep.cluster.podsshd import Sshd, route_port
from mmerep.kube import Kube
from mmerep.profiles import validate
from testkit.scripted_http import scripted_server

pytestmark = pytest.mark.cluster
ENV = "sentinel3"
HOST = "sentinel3-scheduler.local.mmerep-local"


@dataclass
class Setup:
    kube: Kube
    namespace: str
    tmp: Path
    profiles: Path
    config: Path
    key: Path
    sshd: Sshd
    profile: Any

    def mme_rep(self, *args: str, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mmerep", *args],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, **(env or {})})

    def ssh(self, *args: str, host: str = HOST, key: Path | None = None,
            env: dict[str, str] | None = None, timeout: float = 60,
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", "-F", str(self.config), "-i", str(key or self.key), "-o", "BatchMode=yes",
             "-o", "IdentitiesOnly=yes", "-l", self.sshd.user.pw_name, host, *args],
            capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})

    def route(self, sshd: Sshd | None = None) -> str:
        """Route the scheduler pod's ssh port to the local sshd (KWOK's PortForward)."""
        pod = scheduler_pod(self.kube, self.namespace)
        (sshd or self.sshd).route(self.kube, self.namespace, pod, 2222)
        return pod


def scheduler_pod(kube: Kube, namespace: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        pods = [p for p in kube.list_objects(
            "v1", "Pod", namespace,
            label_selector=f"app.kubernetes.io/instance={ENV},app.kubernetes.io/component=scheduler")
            if not p["metadata"].get("deletionTimestamp")
            and p.get("status", {}).get("phase") == "Running"]
        if len(pods) == 1:
            return str(pods[0]["metadata"]["name"])
        assert time.monotonic() < deadline, f"no single running scheduler pod: {pods}"
        time.sleep(0.2)


def write_profiles(path: Path, namespace: str, **more: dict[str, Any]) -> None:
    base = {"context": local.CONTEXT, "kubeconfig": str(local.kubeconfig_path()),
            "namespace": namespace, "registry": "local", "project": "mme-rep",
            "ssh_domain": "mmerep-local"}
    profiles = {"local": base, **{k: {**base, **v} for k, v in more.items()}}
    path.write_text(yaml.safe_dump({"profiles": profiles}))


def deploy(kube: Kube, profile: Any, **params: Any) -> environments.DeployResult:
    rendered = environments.render_environment(profile, "htcondor-batch", "sentinel3:v0.1.0",
                                               resolve=False, params=params)
    return environments.deploy(kube, rendered, timeout=120)


@pytest.fixture()
def setup(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[Setup]:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@test",
                    "-f", str(tmp_path / "id")], check=True)
    profiles = tmp_path / "profiles.yaml"
    write_profiles(profiles, namespace)
    profile = validate("local", yaml.safe_load(profiles.read_text())["profiles"]["local"])
    deploy(kube, profile, authorized_keys=(tmp_path / "id.pub").read_text(), executors=1)
    sshd = Sshd.for_environment(kube, namespace, ENV).start()
    config = tmp_path / "ssh" / "config"
    s = Setup(kube, namespace, tmp_path, profiles, config, tmp_path / "id", sshd, profile)
    out = s.mme_rep("ssh", "config", "--profiles", str(profiles), "--write",
                    "--ssh-config", str(config))
    assert out.returncode == 0, out.stderr
    s.route()
    try:
        yield s
    finally:
        sshd.stop()


def test_ssh_runs_a_command_through_the_api_server(setup: Setup) -> None:
    out = setup.ssh("echo", "ok")
    assert (out.returncode, out.stdout) == (0, "ok\n"), out.stderr
    # The key OpenSSH checked is the environment's, from its Secret, through known_hosts.
    known = (setup.config.parent / "mme-rep" / "local.known_hosts").read_text()
    assert known.count(HOST) == 2 and "ssh-ed25519" in known and "ecdsa-sha2" in known
    # Writing the config again leaves one block, and the known_hosts as it was.
    again = setup.mme_rep("ssh", "config", "--profiles", str(setup.profiles), "--write",
                          "--ssh-config", str(setup.config))
    assert again.returncode == 0, again.stderr
    assert setup.config.read_text().count("# >>> mme-rep ssh: profile local") == 1
    assert (setup.config.parent / "mme-rep" / "local.known_hosts").read_text() == known


def test_the_kubectl_fallback_carries_the_same_session(setup: Setup) -> None:
    out = setup.ssh("echo", "via-kubectl", env={
        "MMEREP_SSH_VIA": "kubectl", "MMEREP_KUBECTL": str(build.binary_path("kubectl"))})
    assert (out.returncode, out.stdout) == (0, "via-kubectl\n"), out.stderr


def test_an_unauthorised_key_is_refused_until_added_with_ssh_keys(setup: Setup) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bob@test",
                    "-f", str(setup.tmp / "bob")], check=True)
    refused = setup.ssh("true", key=setup.tmp / "bob")
    assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr
    added = setup.mme_rep("ssh", "keys", "add", ENV, str(setup.tmp / "bob.pub"),
                          "--profiles", str(setup.profiles))
    assert added.returncode == 0 and "added: SHA256:" in added.stdout, added.stderr
    listed = setup.mme_rep("ssh", "keys", "list", ENV, "--profiles", str(setup.profiles),
                           "-o", "json")
    assert sorted(k["comment"] for k in __import__("json").loads(listed.stdout)) == [
        "alice@test", "bob@test"]
    # The kubelet syncs the ConfigMap into the pod; here we copy it to the sshd.
    keys = setup.kube.get("v1", "ConfigMap", f"{ENV}-ssh-authorized-keys", setup.namespace)
    setup.sshd.set_authorized_keys(keys["data"]["authorized_keys"])
    assert setup.ssh("echo", "bob", key=setup.tmp / "bob").stdout == "bob\n"
    # A later deploy (with a different parameter) neither drops nor fights over them.
    result = deploy(setup.kube, setup.profile, authorized_keys="", executors=2)
    assert result.action == "upgraded"
    after = setup.kube.get("v1", "ConfigMap", f"{ENV}-ssh-authorized-keys", setup.namespace)
    assert after["data"] == keys["data"]
    removed = setup.mme_rep("ssh", "keys", "remove", ENV, "bob@test",
                            "--profiles", str(setup.profiles))
    assert removed.returncode == 0, removed.stderr
    keys = setup.kube.get("v1", "ConfigMap", f"{ENV}-ssh-authorized-keys", setup.namespace)
    setup.sshd.set_authorized_keys(keys["data"]["authorized_keys"])
    assert setup.ssh("true", key=setup.tmp / "bob").returncode == 255


def test_a_changed_host_key_is_refused_by_the_client(setup: Setup) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(setup.tmp / "impostor")], check=True)
    cfg = setup.kube.get("v1", "ConfigMap", f"{ENV}-ssh", setup.namespace)["data"]
    impostor = Sshd(cfg["sshd_config"].replace("HostKey /etc/mme-rep/ssh-host/ssh_host_ecdsa_key\n",
                                               ""),
                    {"ssh_host_ed25519_key": (setup.tmp / "impostor").read_text()},
                    (setup.tmp / "id.pub").read_text()).start()
    try:
        setup.route(impostor)
        out = setup.ssh("echo", "ok")
        assert out.returncode == 255 and out.stdout == ""
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in out.stderr
    finally:
        impostor.stop()


def test_redeploy_and_pod_restart_keep_the_host_key(setup: Setup) -> None:
    before = setup.kube.get("v1", "Secret", f"{ENV}-ssh-hostkeys", setup.namespace)["data"]
    assert deploy(setup.kube, setup.profile, executors=3).action == "upgraded"
    old_pod = scheduler_pod(setup.kube, setup.namespace)
    setup.kube.delete("v1", "Pod", old_pod, setup.namespace, propagation="Background")
    deadline = time.monotonic() + 60
    while scheduler_pod(setup.kube, setup.namespace) == old_pod:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    after = setup.kube.get("v1", "Secret", f"{ENV}-ssh-hostkeys", setup.namespace)["data"]
    assert after == before
    restarted = Sshd.for_environment(setup.kube, setup.namespace, ENV).start()
    try:
        setup.route(restarted)
        out = setup.ssh("echo", "same-key")
        assert (out.returncode, out.stdout) == (0, "same-key\n"), out.stderr
    finally:
        restarted.stop()


def test_scp_and_rsync_carry_files_intact(setup: Setup) -> None:
    src = setup.tmp / "data.bin"
    with open(src, "wb") as fh:
        for _ in range(100):
            fh.write(os.urandom(1024 * 1024))
    user = setup.sshd.user.pw_name
    remote = f"{setup.sshd.dir}/data.bin"
    out = subprocess.run(["scp", "-F", str(setup.config), "-i", str(setup.key), "-o",
                          "BatchMode=yes", "-o", "IdentitiesOnly=yes", str(src),
                          f"{user}@{HOST}:{remote}"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert setup.ssh("sha256sum", remote).stdout.split()[0] == digest
    back = setup.tmp / "back"
    ssh_cmd = (f"ssh -F {setup.config} -i {setup.key} -o BatchMode=yes "
               "-o IdentitiesOnly=yes")
    out = subprocess.run(["rsync", "-a", "-e", ssh_cmd, f"{user}@{HOST}:{remote}", str(back)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest


def test_failures_are_one_line_from_the_proxy(setup: Setup, tmp_path: Path) -> None:
    kube, ns = setup.kube, setup.namespace
    out = setup.ssh("true", host="nope-scheduler.local.mmerep-local")
    assert out.returncode == 255
    assert f"no environment nope in namespace {ns} (profile local)" in out.stderr
    # A pod the scheduler cannot place.
    kube.apply({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "stuck", "namespace": ns, "labels": {
                    "app.kubernetes.io/instance": "stuck",
                    "app.kubernetes.io/component": "scheduler"}},
                "spec": {"nodeSelector": {"no-such": "node"},
                         "containers": [{"name": "c", "image": "example.org/none:1"}]}})
    deadline = time.monotonic() + 30
    while True:
        out = setup.ssh("true", host="stuck-scheduler.local.mmerep-local")
        if "Unschedulable" in out.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "stuck-scheduler: pod stuck is Pending: Unschedulable: 0/4 nodes are available" \
        in out.stderr
    # A user who may list pods but not port-forward.
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "viewer", "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "viewer", "namespace": ns}})
    kube.apply(role)
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "viewer", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": "viewer"},
                "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": ns}]})
    token = kube.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/viewer/token",
                         body={"apiVersion": "authentication.k8s.io/v1",
                               "kind": "TokenRequest", "spec": {}})["status"]["token"]
    admin = yaml.safe_load(local.kubeconfig_path().read_text())
    viewer = tmp_path / "viewer.kubeconfig"
    viewer.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "viewer",
        "clusters": admin["clusters"],
        "users": [{"name": "viewer", "user": {"token": token}}],
        "contexts": [{"name": "viewer", "context": {
            "cluster": admin["clusters"][0]["name"], "user": "viewer", "namespace": ns}}]}))
    write_profiles(setup.profiles, ns, viewer={"kubeconfig": str(viewer), "context": "viewer"})
    # `mme-rep ssh ENV -- ssh-args` runs the same ssh through the same proxy.
    out = setup.mme_rep("ssh", ENV, "-F", "viewer", "--profiles", str(setup.profiles), "--",
                        "-i", str(setup.key), "-o", "BatchMode=yes", "-l",
                        setup.sshd.user.pw_name, "true")
    assert out.returncode == 255
    ours = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1, out.stderr
    assert re.search(r'cannot (create|get) resource "pods/portforward"', ours[0]), ours[0]


def test_env_open_forwards_a_web_environment_with_its_token(
        kube: Kube, namespace: str, tmp_path: Path) -> None:
    import urllib.request

    profiles = tmp_path / "profiles.yaml"
    write_profiles(profiles, namespace)
    profile = validate("local", yaml.safe_load(profiles.read_text())["profiles"]["local"])
    rendered = environments.render_environment(profile, "jupyter", "notebooks:v1",
                                               resolve=False)
    environments.deploy(kube, rendered, timeout=120)
    pod = next(p["metadata"]["name"] for p in kube.list_objects(
        "v1", "Pod", namespace, label_selector="app.kubernetes.io/instance=notebooks"))
    with scripted_server() as (lab, script):
        script.answers = [(200, "jupyterlab behind the pod", {})]
        route_port(kube, namespace, pod, 8888, int(lab.rsplit(":", 1)[1]))
        proc = subprocess.Popen([sys.executable, "-m", "mmerep", "env", "open", "notebooks",
                                 "--profiles", str(profiles)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().split(": ", 1)[1].strip()
            assert url.startswith("http://127.0.0.1:") and "/lab?token=" in url
            with urllib.request.urlopen(url, timeout=20) as resp:
                assert resp.read() == b"jupyterlab behind the pod"
            token = kube.get("v1", "Secret", "notebooks-token", namespace)["data"]["token"]
            import base64
            assert script.seen == [f"GET /lab?token={base64.b64decode(token).decode()}"]
        finally:
            proc.terminate()
            proc.wait(10)
