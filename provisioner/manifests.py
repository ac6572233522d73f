"""What ``mme-rep provisioner install`` applies, built as data: namespace, accounts and
least-privilege RBAC, the controller Deployment (two replicas, one leads), the agent
DaemonSet, the CSIDriver and the two StorageClasses (Delete and Retain).

The agent is the one container that runs as root: it must create directories owned by
the pods' users and remove what they leave. It keeps only CHOWN, FOWNER and
DAC_OVERRIDE, never escalates, and has a read-only root file system; its namespace is
therefore labelled ``privileged`` for Pod Security Admission (hostPath).
"""

from __future__ import annotations

from typing import Any

from provisioner import DEFAULT_NAME
from provisioner import objects as o

Obj = dict[str, Any]
CLASS_DELETE = "mmerep-local-ssd"
CLASS_RETAIN = "mmerep-local-ssd-retain"
APP = "mmerep-local-ssd"


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "mme-rep"}


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> Obj:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def _rbac(namespace: str, who: str, cluster_rules: list[Obj], ns_rules: list[Obj]) -> list[Obj]:
    name = f"{APP}-{who}"
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": namespace, "labels": _labels(who)}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name, "labels": _labels(who)}, "rules": cluster_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name, "labels": _labels(who)}, "subjects": subject,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": name}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name, "namespace": namespace, "labels": _labels(who)},
         "rules": ns_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": namespace, "labels": _labels(who)},
         "subjects": subject,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}},
    ]


def _container(name: str, image: str, args: list[str], **extra: Any) -> Obj:
    return {"name": name, "image": image, "args": ["provisioner", "run", *args],
            "ports": [{"name": "metrics", "containerPort": 9110}],
            "resources": {"requests": {"cpu": "50m", "memory": "96Mi"},
                          "limits": {"memory": "256Mi"}}, **extra}


def install_objects(namespace: str, image: str, *, name: str = DEFAULT_NAME,
                    root: str = "/mnt/local-ssd", node_selector: dict[str, str] | None = None,
                    node_grace: int = 300) -> list[Obj]:
    selector = node_selector if node_selector is not None else {"mme-rep/local-ssd": "true"}
    common = ["--namespace", namespace, "--name", name, "--metrics-port", "9110"]
    objs: list[Obj] = [{
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {
            **_labels("namespace"), "pod-security.kubernetes.io/enforce": "privileged"}}}]
    objs += _rbac(namespace, "controller", [
        _rule([""], ["persistentvolumeclaims"], ["get", "list", "watch", "patch", "create",
                                                 "delete"]),
        _rule([""], ["persistentvolumes"], ["get", "list", "watch", "create", "delete"]),
        _rule([""], ["nodes"], ["get", "list", "watch"]),
        _rule([""], ["pods"], ["list", "delete"]),
        _rule([""], ["events"], ["create", "patch"]),
        _rule(["storage.k8s.io"], ["storageclasses"], ["get", "list", "watch"]),
        _rule(["storage.k8s.io"], ["csidrivers"], ["get", "create", "patch"]),
    ], [
        _rule([""], ["configmaps"], ["get", "list", "watch", "create", "update", "delete"]),
        _rule(["coordination.k8s.io"], ["leases"], ["get", "create", "update"]),
        _rule(["storage.k8s.io"], ["csistoragecapacities"], ["get", "create", "patch",
                                                             "delete"]),
    ])
    objs += _rbac(namespace, "agent", [
        _rule([""], ["persistentvolumes"], ["get", "list", "watch", "delete"]),
        _rule([""], ["events"], ["create"]),
    ], [
        _rule([""], ["configmaps"], ["get", "create", "patch"]),
    ])
    restricted = {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False,
                  "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
                  "seccompProfile": {"type": "RuntimeDefault"}}
    objs.append({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{APP}-controller", "namespace": namespace,
                     "labels": _labels("controller")},
        "spec": {"replicas": 2, "selector": {"matchLabels": _labels("controller")},
                 "template": {"metadata": {"labels": _labels("controller")}, "spec": {
                     "serviceAccountName": f"{APP}-controller",
                     "containers": [_container("controller", image, [
                         "controller", *common, "--node-grace", str(node_grace)],
                         securityContext=restricted)]}}}})
    agent_sc = {"runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True, "seccompProfile": {"type": "RuntimeDefault"},
                "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "FOWNER", "DAC_OVERRIDE"]}}
    objs.append({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": f"{APP}-agent", "namespace": namespace,
                     "labels": _labels("agent")},
        "spec": {"selector": {"matchLabels": _labels("agent")},
                 "updateStrategy": {"type": "RollingUpdate"},
                 "template": {"metadata": {"labels": _labels("agent")}, "spec": {
                     "serviceAccountName": f"{APP}-agent",
                     "nodeSelector": selector,
                     "tolerations": [{"operator": "Exists"}],
                     "priorityClassName": "system-node-critical",
                     "containers": [_container(
                         "agent", image, ["agent", *common, "--root", root],
                         securityContext=agent_sc,
                         env=[{"name": "NODE_NAME", "valueFrom": {
                             "fieldRef": {"fieldPath": "spec.nodeName"}}}],
                         volumeMounts=[{"name": "disks", "mountPath": root,
                                        "mountPropagation": "HostToContainer"}])],
                     "volumes": [{"name": "disks", "hostPath": {
                         "path": root, "type": "Directory"}}]}}}})
    objs.append(o.csi_driver(name))
    objs.append(o.storage_class(CLASS_DELETE, "Delete", name))
    objs.append(o.storage_class(CLASS_RETAIN, "Retain", name))
    return objs
