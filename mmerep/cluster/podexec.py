"""Run commands "inside" a simulated pod: KWOK's exec routing to a local directory that
holds what the pod would have mounted (ConfigMap files, its service account's token).

KWOK never starts containers, so ``kubectl exec`` into a pod runs a local process. With
``pod_root`` that process finds the pod's files under a directory of its own and reaches
the API server with the pod's own service-account token through the in-cluster code
path (``KUBERNETES_SERVICE_HOST``/``PORT`` and a token directory), exactly as it would in
the pod. Used by the demo and by the tests of ``/configs/scaler.sh``.
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from mmerep.cluster import local


def _ca_bytes() -> bytes:
    cfg = yaml.safe_load(local.kubeconfig_path().read_text())
    cluster = cfg["clusters"][0]["cluster"]
    if cluster.get("certificate-authority-data"):
        return base64.b64decode(cluster["certificate-authority-data"])
    path = Path(cluster["certificate-authority"])
    if not path.is_absolute():
        path = local.kubeconfig_path().parent / path
    return path.read_bytes()


def service_account_token(kube: Any, namespace: str, account: str, pod: str | None = None,
                          seconds: int = 3600) -> str:
    """A token for ``account`` from the TokenRequest API (bound to ``pod`` when given)."""
    spec: dict[str, Any] = {"expirationSeconds": seconds}
    if pod:
        live = kube.get("v1", "Pod", pod, namespace)
        if live is not None:
            spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod,
                                      "uid": live["metadata"]["uid"]}
    answer = kube.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}"
                          "/token", body={"apiVersion": "authentication.k8s.io/v1",
                                          "kind": "TokenRequest", "spec": spec},
                          what=f"request a token for {account}")
    return str(answer["status"]["token"])


def service_account_dir(kube: Any, namespace: str, account: str, directory: Path,
                        pod: str | None = None) -> Path:
    """What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(service_account_token(kube, namespace, account, pod))
    (directory / "token").chmod(0o600)
    (directory / "ca.crt").write_bytes(_ca_bytes())
    (directory / "namespace").write_text(namespace)
    return directory


def in_cluster_env(kube: Any, sa_dir: Path) -> dict[str, str]:
    """The environment a process in the pod has, pointing at this cluster."""
    server = urlparse(kube.host)
    return {"KUBERNETES_SERVICE_HOST": server.hostname or "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(server.port or 443),
            "MMEREP_SA_DIR": str(sa_dir),
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def pod_root(kube: Any, namespace: str, pod: str, root: Path, *,
             files: dict[str, str], service_account: str | None = None) -> Path:
    """Route ``kubectl exec`` into ``pod`` to local processes working in ``root``, where
    ``files`` (path relative to the pod's /, text) are laid out; with the pod's service
    account's token when ``service_account`` is given."""
    root.mkdir(parents=True, exist_ok=True)
    for relative, text in files.items():
        path = root / relative.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755 if text.startswith("#!") else 0o644)
    envs: dict[str, str] = {}
    if service_account:
        sa_dir = service_account_dir(kube, namespace, service_account,
                                     root / "var/run/secrets/kubernetes.io/serviceaccount", pod)
        envs = in_cluster_env(kube, sa_dir)
    kube.apply({"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Exec",
                "metadata": {"name": pod, "namespace": namespace},
                "spec": {"execs": [{"local": {
                    "workDir": str(root),
                    "envs": [{"name": k, "value": v} for k, v in sorted(envs.items())]}}]}})
    return root
