"""Every kubeconfig auth form on the real API server, resolved once and then from the cache.

Each "command" here is a fresh Python process, as a user's command is: the first resolves
the kubeconfig with the official client, later ones reuse what it resolved and never
import the client at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from mmerep.kube import Kube

pytestmark = pytest.mark.cluster

PROBE = textwrap.dedent("""
    import json, sys
    from mmerep.kube import Kube
    kube = Kube.from_kubeconfig(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    names = [n["metadata"]["name"] for n in kube.list_objects("v1", "ConfigMap")]
    print(json.dumps({"names": names, "client_imported": "kubernetes" in sys.modules,
                      "namespace": kube.namespace}))
""")


def command(tmp_path: Path, kubeconfig: Path, context: str | None = None) -> dict:
    env = {**os.environ, "MMEREP_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", PROBE, str(kubeconfig),
                          *([context] if context else [])],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _sa_token(kube: Kube, namespace: str, name: str, seconds: int = 3600) -> str:
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace}})
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": f"{name}-view", "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "view"},
                "subjects": [{"kind": "ServiceAccount", "name": name,
                              "namespace": namespace}]})
    token: str = kube.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": seconds}})["status"]["token"]
    return token


def _kubeconfig(kube: Kube, path: Path, namespace: str, user: dict) -> Path:
    ca = Path(kube.connection.ca_file or "").read_text()
    (path.parent / "ca.crt").write_text(ca)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "c", "cluster": {"server": kube.host,
                                               "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u",
                                               "namespace": namespace}}]}))
    return path


def _marker(namespace: str, kube: Kube) -> None:
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "marker", "namespace": namespace}})


def test_client_certificate_kubeconfig_is_resolved_once(
        kube: Kube, namespace: str, tmp_path: Path) -> None:
    from mmerep.cluster import local

    _marker(namespace, kube)
    # The local cluster's kubeconfig authenticates with an inline client certificate.
    config = tmp_path / "config"
    data = yaml.safe_load(local.kubeconfig_path().read_text())
    for ctx in data["contexts"]:
        ctx["context"]["namespace"] = namespace
    config.write_text(yaml.safe_dump(data))
    first = command(tmp_path, config, local.CONTEXT)
    second = command(tmp_path, config, local.CONTEXT)
    assert "marker" in first["names"] and first["names"] == second["names"]
    assert first["client_imported"] is True
    assert second["client_imported"] is False
    assert second["namespace"] == namespace
    # Any change to the kubeconfig is seen: the next command resolves it again.
    for ctx in data["contexts"]:
        ctx["context"]["namespace"] = "default"
    config.write_text(yaml.safe_dump(data))
    third = command(tmp_path, config, local.CONTEXT)
    assert third["client_imported"] is True and third["namespace"] == "default"


def test_token_kubeconfig(kube: Kube, namespace: str, tmp_path: Path) -> None:
    _marker(namespace, kube)
    config = _kubeconfig(kube, tmp_path / "config", namespace,
                         {"token": _sa_token(kube, namespace, "reader")})
    assert "marker" in command(tmp_path, config)["names"]
    second = command(tmp_path, config)
    assert "marker" in second["names"] and second["client_imported"] is False


def _exec_plugin(tmp_path: Path, token: str, expires: datetime | None) -> dict:
    calls = tmp_path / "calls"
    status: dict = {"token": token}
    if expires is not None:
        status["expirationTimestamp"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    credential = json.dumps({"apiVersion": "client.authentication.k8s.io/v1",
                             "kind": "ExecCredential", "status": status})
    plugin = tmp_path / "plugin.sh"
    plugin.write_text(f"#!/bin/sh\necho call >> {calls}\ncat <<'EOF'\n{credential}\nEOF\n")
    plugin.chmod(0o755)
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
                     "interactiveMode": "Never"}}


def test_exec_plugin_token_is_reused_until_it_expires(
        kube: Kube, namespace: str, tmp_path: Path) -> None:
    _marker(namespace, kube)
    token = _sa_token(kube, namespace, "oidc-user")
    later = datetime.now(UTC) + timedelta(hours=1)
    config = _kubeconfig(kube, tmp_path / "config", namespace,
                         _exec_plugin(tmp_path, token, later))
    for _ in range(3):
        assert "marker" in command(tmp_path, config)["names"]
    assert (tmp_path / "calls").read_text().count("call") == 1


def test_exec_plugin_without_expiry_runs_every_time(
        kube: Kube, namespace: str, tmp_path: Path) -> None:
    _marker(namespace, kube)
    token = _sa_token(kube, namespace, "oidc-user")
    config = _kubeconfig(kube, tmp_path / "config", namespace,
                         _exec_plugin(tmp_path, token, None))
    for _ in range(2):
        result = command(tmp_path, config)
        assert "marker" in result["names"] and result["client_imported"] is True
    assert (tmp_path / "calls").read_text().count("call") == 2


def _wait_refused(kube: Kube) -> None:
    import time

    from mmerep.errors import KubeError

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            kube.list_objects("v1", "ConfigMap")
        except KubeError as exc:
            if exc.status == 401:
                return
        time.sleep(0.1)
    raise AssertionError("the revoked token was still accepted after 30 s")


def test_a_refused_cached_token_is_resolved_again(
        kube: Kube, namespace: str, tmp_path: Path) -> None:
    """A token revoked after it was cached: the next command gets 401, asks the plugin
    again (which now hands out a valid token), and succeeds."""
    _marker(namespace, kube)
    kube.apply({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "binding", "namespace": namespace}})
    _sa_token(kube, namespace, "rotating")
    bound = kube.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/rotating/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 3600, "boundObjectRef": {
                  "apiVersion": "v1", "kind": "Secret", "name": "binding"}}})["status"]["token"]
    later = datetime.now(UTC) + timedelta(hours=1)
    config = _kubeconfig(kube, tmp_path / "config", namespace,
                         _exec_plugin(tmp_path, bound, later))
    assert "marker" in command(tmp_path, config)["names"]
    kube.delete("v1", "Secret", "binding", namespace)  # revokes the bound token
    old = Kube.from_url(kube.host, token=bound, ca_file=kube.connection.ca_file)
    _wait_refused(old)
    fresh = _sa_token(kube, namespace, "rotating")
    _exec_plugin(tmp_path, fresh, later)  # the plugin now answers with a valid token
    result = command(tmp_path, config)
    assert "marker" in result["names"] and result["client_imported"] is True
    assert (tmp_path / "calls").read_text().count("call") == 2
