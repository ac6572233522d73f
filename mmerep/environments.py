"""Environments: render a template for a profile, deploy it with revisions, inspect, delete.

An environment is every object labelled ``app.kubernetes.io/instance=<env>`` and
``app.kubernetes.io/managed-by=mme-rep`` in a namespace. Each deploy that changes
something is recorded as a revision (a ConfigMap holding the inputs and the rendered
objects, never the pool secret), which ``history`` lists and ``rollback`` re-applies.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mmerep import templates
from mmerep.errors import KubeError, KubeTimeout, UsageError

Obj = dict[str, Any]
RECORD_LABEL = "mme-rep/record"
PSA_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
}
# What an environment can consist of; listed so delete and prune find every part.
MANAGED_KINDS = (
    ("apps/v1", "Deployment"), ("apps/v1", "DaemonSet"), ("apps/v1", "StatefulSet"),
    ("v1", "Service"), ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("networking.k8s.io/v1", "NetworkPolicy"), ("networking.k8s.io/v1", "Ingress"),
    ("v1", "PersistentVolumeClaim"),
)
CLUSTER_KINDS = (
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
)
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet")
IMAGE_NAME = re.compile(r"^(?:.*/)?([a-z0-9]+(?:[._-][a-z0-9]+)*)(?::[\w][\w.-]*)?(?:@.*)?$")


@dataclass
class Rendered:
    """A fully rendered environment: objects ready to apply, plus what produced them."""

    env_name: str
    namespace: str
    template: str
    image: str
    params: dict[str, Any]
    objects: list[Obj]
    workloads: tuple[str, ...] = ()
    secrets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    web: dict[str, Any] = field(default_factory=dict)
    explicit: tuple[str, ...] = ()  # parameters the operator set (not defaults)

    def workload_objects(self) -> list[Obj]:
        return [o for o in self.objects if o["kind"] in WORKLOAD_KINDS]


@dataclass
class DeployResult:
    action: str  # "installed", "upgraded", "unchanged", "rolled-back", "removed"
    revision: int
    changes: list[tuple[str, str]] = field(default_factory=list)  # (action, object)


def env_name_from_image(image: str) -> str:
    match = IMAGE_NAME.match(image)
    if not match:
        raise UsageError(f"cannot take an environment name from image {image!r}",
                         hint="give one with --name")
    return match.group(1).replace("_", "-").replace(".", "-")


def _cores(quantity: str) -> int:
    from mmerep.quantity import parse_cpu

    return max(1, int(parse_cpu(str(quantity), "cpu") + 0.999))


def _mebibytes(quantity: str) -> int:
    from mmerep.quantity import parse_memory

    return max(1, int(parse_memory(str(quantity), "memory")) // (1024 * 1024))


def render_environment(profile: Any, template_name: str, image: str, *, name: str | None = None,
                       params: dict[str, Any] | None = None, resolve: bool = True,
                       revision: int = 1) -> Rendered:
    """Validate every input and render; raises UsageError/RegistryError before any change."""
    from mmerep.profiles import image_reference, resolved_registry

    template = templates.load_template(template_name)
    env_name = templates.validate_env_name(name or env_name_from_image(image))
    values = templates.coerce_parameters(template, params or {})
    reference = image_reference(profile, template.name, image)
    if resolve:
        reference = pin_digest(reference)
    requests = dict(profile.requests or {})
    limits = dict(profile.limits or {})
    context = {
        **values,
        "name": env_name,
        "namespace": profile.namespace,
        "image": reference,
        "uid": templates.STANDARD_UID,
        "gid": templates.STANDARD_UID,
        "node_selector": dict(profile.node_selector or {}),
        "tolerations": list(profile.tolerations or []),
        "storage_classes": dict(profile.storage_classes or {}),
        "ssh_domain": profile.ssh_domain,
        "ingress_domain": profile.ingress_domain,
        "profile_limits": {"max_executors": profile.max_executors,
                           "max_cpu": profile.max_cpu, "max_memory": profile.max_memory},
        "registry": resolved_registry(profile) if resolve else profile.registry,
        "defaults": {"cpu": requests.get("cpu") or "1", "memory": requests.get("memory") or "2Gi",
                     "cpu_limit": limits.get("cpu") or None,
                     "memory_limit": limits.get("memory") or None},
    }
    objects = templates.render_manifests(template, context, filters={
        "cores": _cores, "mebibytes": _mebibytes})
    _check_limits(profile, values)
    templates.label_objects(objects, env_name, profile.namespace, template.name, revision)
    return Rendered(env_name, profile.namespace, template.name, reference, values, objects,
                    template.workloads, dict(template.secrets), dict(template.web),
                    tuple(sorted(params or {})))


def _check_limits(profile: Any, values: dict[str, Any]) -> None:
    executors = values.get("executors")
    if profile.max_executors is not None and isinstance(executors, int) \
            and executors > profile.max_executors:
        raise UsageError(f"{executors} executors exceed profile {profile.name}'s limit of "
                         f"{profile.max_executors}", hint="deploy fewer, or raise the limit "
                         "in the profile")


def pin_digest(reference: str) -> str:
    """``host/repo:tag`` -> ``host/repo:tag@sha256:...`` from the registry; as is if pinned."""
    from mmerep.registry import RegistryClient

    if "@sha256:" in reference:
        return reference
    host, _, rest = reference.partition("/")
    repo, _, tag = rest.rpartition(":")
    digest = RegistryClient(host).resolve(repo, tag)
    return f"{reference}@{digest}"


# -- records (revision history) ---------------------------------------------------------

def record_name(env_name: str, revision: int) -> str:
    return f"{env_name}-mmerep-r{revision}"


def _pack(objects: list[Obj]) -> str:
    return base64.b64encode(gzip.compress(json.dumps(objects).encode(), mtime=0)).decode()


def _unpack(data: str) -> list[Obj]:
    objects: list[Obj] = json.loads(gzip.decompress(base64.b64decode(data)))
    return objects


def build_record(rendered: Rendered, revision: int, status: str, note: str = "") -> Obj:
    labels = {**templates.standard_labels(rendered.env_name, rendered.template, "record"),
              RECORD_LABEL: "true", "mme-rep/revision": str(revision)}
    stored = [o for o in rendered.objects if o["kind"] != "Secret"]
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": record_name(rendered.env_name, revision),
                     "namespace": rendered.namespace, "labels": labels},
        "data": {"revision": str(revision), "status": status, "template": rendered.template,
                 "image": rendered.image, "params": json.dumps(rendered.params, sort_keys=True),
                 "workloads": json.dumps(list(rendered.workloads)),
                 "secrets": json.dumps({k: list(v) for k, v in rendered.secrets.items()}),
                 "web": json.dumps(rendered.web),
                 "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "note": note},
        "binaryData": {"objects.json.gz": _pack(stored)},
    }


def read_records(kube: Any, namespace: str, env_name: str) -> list[Obj]:
    """Revision records, oldest first."""
    found = kube.list_objects("v1", "ConfigMap", namespace, label_selector=(
        f"{RECORD_LABEL}=true,app.kubernetes.io/instance={env_name}"))
    return sorted(found, key=lambda r: int(r["data"]["revision"]))


def _set_record_status(kube: Any, record: Obj, status: str, note: str = "") -> None:
    record = {**record, "data": {**record["data"], "status": status, "note": note}}
    record["metadata"] = {k: v for k, v in record["metadata"].items()
                          if k in ("name", "namespace", "labels")}
    kube.apply(record, force=True)


def rendered_from_record(record: Obj) -> Rendered:
    data = record["data"]
    objects = _unpack(record["binaryData"]["objects.json.gz"])
    meta = record["metadata"]
    secrets = {k: tuple(v) for k, v in json.loads(data.get("secrets", "{}")).items()}
    return Rendered(meta["labels"]["app.kubernetes.io/instance"], meta["namespace"],
                    data["template"], data["image"], json.loads(data["params"]), objects,
                    tuple(json.loads(data.get("workloads", "[]"))), secrets,
                    json.loads(data.get("web", "{}")))


# -- deploy --------------------------------------------------------------------------------

def namespace_object(namespace: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": dict(PSA_LABELS)}}


def generated_secrets(kube: Any, rendered: Rendered) -> list[Obj]:
    """The template's secrets: random at first deploy, the same values ever after."""
    out = []
    for short, keys in sorted(rendered.secrets.items()):
        name = f"{rendered.env_name}-{short}"
        existing = kube.get("v1", "Secret", name, rendered.namespace) if kube else None
        data = dict((existing or {}).get("data") or {})
        for key in keys:
            if key not in data:
                data[key] = base64.b64encode(secrets.token_urlsafe(32).encode()).decode()
        out.append({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": rendered.namespace,
                         "labels": templates.standard_labels(rendered.env_name,
                                                             rendered.template, short)},
            "data": {k: data[k] for k in keys},
        })
    return out


def _with_revision(objects: list[Obj], revision: int) -> list[Obj]:
    out = []
    for obj in objects:
        meta = obj["metadata"]
        labels = {**meta.get("labels", {}), "mme-rep/revision": str(revision)}
        out.append({**obj, "metadata": {**meta, "labels": labels}})
    return out


Progress = Callable[[list[Any]], None]


def deploy(kube: Any, rendered: Rendered, *, timeout: float = 300.0, rollback: bool = True,
           on_progress: Progress | None = None,
           on_plan: Callable[[list[tuple[str, str]]], None] | None = None) -> DeployResult:
    """Validate on the server, apply what changed, wait; roll back a rollout that fails."""
    created_namespace = False
    if kube.get("v1", "Namespace", rendered.namespace) is None:
        kube.apply(namespace_object(rendered.namespace))
        created_namespace = True
    records = read_records(kube, rendered.namespace, rendered.env_name)
    current = int(records[-1]["data"]["revision"]) if records else 0
    generated = generated_secrets(kube, rendered)
    objects, rescale = settle_replicas(kube, rendered)
    planned = [*generated, *_with_revision(objects, max(current, 1))]
    try:
        dry = kube.apply_all(planned, dry_run=True)
        check_pods_admitted(kube, rendered)
    except KubeError:
        if created_namespace:  # leave nothing behind on bad input
            ns = namespace_object(rendered.namespace)
            kube.delete_all([ns])
            kube.wait_gone([ns], timeout=60)
        raise
    changes = [(r.action, _describe(r.obj)) for r in dry if r.changed]
    changes += [("scaled", f"Deployment/{name}") for name, _ in rescale]
    if on_plan:
        on_plan(changes)
    if not changes and records and records[-1]["data"]["status"] == "deployed":
        return DeployResult("unchanged", current)
    revision = current + 1
    kube.apply_all([*generated, *_with_revision(objects, revision)], compare=False)
    for name, replicas in rescale:  # the operator said so explicitly: --set executors=N
        kube.scale("Deployment", name, replicas, rendered.namespace)
    _prune(kube, rendered, revision)
    try:
        kube.wait_for(rendered.workload_objects(), timeout=timeout,
                      on_progress=_with_warnings(kube, rendered, on_progress))
    except KubeTimeout as exc:
        reason = exc.message + _latest_warning(kube, rendered)
        kube.apply(build_record(rendered, revision, "failed", reason))
        if not rollback:
            raise KubeTimeout(reason, hint="fix the cause and deploy again, or "
                              f"mme-rep env rollback {rendered.env_name}") from exc
        good = [r for r in records if r["data"]["status"] in ("deployed", "superseded")]
        if not good:
            delete_environment(kube, rendered.namespace, rendered.env_name, purge=True)
            raise KubeTimeout(f"{reason}; first install removed",
                              hint="fix the cause and deploy again") from exc
        restored = rollback_to(kube, rendered.namespace, rendered.env_name,
                               int(good[-1]["data"]["revision"]), timeout=timeout,
                               on_progress=on_progress)
        raise KubeTimeout(f"{reason}; rolled back to revision {good[-1]['data']['revision']} "
                          f"(now revision {restored})",
                          hint="fix the cause and deploy again") from exc
    for old in records:
        if old["data"]["status"] == "deployed":
            _set_record_status(kube, old, "superseded")
    kube.apply(build_record(rendered, revision, "deployed"))
    return DeployResult("installed" if current == 0 else "upgraded", revision, changes)


def check_pods_admitted(kube: Any, rendered: Rendered) -> None:
    """Dry-run each workload's pod: admission (Pod Security) judges pods, not Deployments,
    so without this a rejected pod would only show up as a rollout that never ends."""
    def check(obj: Obj) -> None:
        template = obj["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{obj['metadata']['name']}-admission-check",
                            "namespace": rendered.namespace,
                            "labels": template.get("metadata", {}).get("labels", {})},
               # The service account may not exist yet (it is applied with the rest);
               # admission of the pod's security does not depend on it.
               "spec": {k: v for k, v in template["spec"].items()
                        if k != "serviceAccountName"}}
        kube.create(pod, dry_run=True)

    kube.map(check, rendered.workload_objects())


def _describe(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _live_parts(kube: Any, namespace: str, env_name: str) -> list[Obj]:
    selector = f"app.kubernetes.io/instance={env_name},app.kubernetes.io/managed-by=mme-rep"
    cluster_selector = f"{selector},mme-rep/namespace={namespace}"

    def parts_of(kind: tuple[str, str]) -> list[Obj]:
        if kind in CLUSTER_KINDS:
            return kube.list_objects(kind[0], kind[1], label_selector=cluster_selector)
        return kube.list_objects(kind[0], kind[1], namespace, label_selector=selector)

    found = kube.map(parts_of, [*MANAGED_KINDS, *CLUSTER_KINDS])
    return [obj for objs in found for obj in objs]


def _prune(kube: Any, rendered: Rendered, revision: int) -> None:
    """Delete parts a previous revision had and this one has not (records and secret stay)."""
    keep = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects}
    for obj in _live_parts(kube, rendered.namespace, rendered.env_name):
        labels = obj["metadata"].get("labels", {})
        key = (obj["kind"], obj["metadata"]["name"])
        if key in keep or labels.get(RECORD_LABEL) or obj["kind"] in ("Secret",
                                                                      "PersistentVolumeClaim"):
            continue
        kube.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"],
                    obj["metadata"].get("namespace"), propagation="Background")


def _with_warnings(kube: Any, rendered: Rendered, on_progress: Progress | None,
                   after: float = 2.0, every: float = 2.0) -> Progress | None:
    """Progress that also carries each waiting workload's latest warning event.

    Events are read only once a rollout has taken ``after`` seconds, and then every
    ``every`` seconds, so a quick rollout costs no extra requests.
    """
    if on_progress is None:
        return None
    started = time.monotonic()
    state: dict[str, Any] = {"fetched": 0.0, "notes": {}}

    def progress(statuses: list[Any]) -> None:
        now = time.monotonic()
        waiting = [s for s in statuses if not s.ready]
        if waiting and now - started >= after and now - state["fetched"] >= every:
            state["fetched"] = now
            events = _warning_events(kube, rendered.namespace)
            for s in waiting:
                mine = [e for e in events if _belongs_to(e, s.name)]
                if mine:
                    state["notes"][s.name] = f"{mine[-1].get('reason')}: {mine[-1].get('message')}"
        on_progress([dataclasses.replace(s, note="" if s.ready else
                                         state["notes"].get(s.name, "")) for s in statuses])

    return progress


def _event_time(event: Obj) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or "")


def _warning_events(kube: Any, namespace: str) -> list[Obj]:
    """The namespace's warning events, oldest first."""
    events = kube.list_objects("v1", "Event", namespace, field_selector="type=Warning")
    return sorted(events, key=_event_time)


def _belongs_to(event: Obj, name: str) -> bool:
    """About ``name`` itself or one of its parts (``<name>-...``: pods, replica sets)."""
    about = event.get("involvedObject", {}).get("name", "")
    return bool(about == name or about.startswith(name + "-"))


def _latest_warning(kube: Any, rendered: Rendered) -> str:
    mine = [e for e in _warning_events(kube, rendered.namespace)
            if _belongs_to(e, rendered.env_name)]
    if not mine:
        return ""
    last = mine[-1]
    return f" (latest warning: {last['involvedObject']['name']}: {last.get('message', '')})"


def rollback_to(kube: Any, namespace: str, env_name: str, revision: int | None = None, *,
                timeout: float = 300.0, on_progress: Progress | None = None) -> int:
    """Re-apply a recorded revision (default: the one before the current) as a new one."""
    records = read_records(kube, namespace, env_name)
    if not records:
        raise UsageError(f"environment {env_name} has no history in namespace {namespace}",
                         hint="mme-rep env list shows what is deployed")
    current = int(records[-1]["data"]["revision"])
    if revision is None:
        good = [r for r in records[:-1] if r["data"]["status"] in ("deployed", "superseded")]
        if not good:
            raise UsageError(f"environment {env_name} has no earlier good revision")
        revision = int(good[-1]["data"]["revision"])
    chosen = next((r for r in records if int(r["data"]["revision"]) == revision), None)
    if chosen is None:
        raise UsageError(f"environment {env_name} has no revision {revision}",
                         hint=f"mme-rep env history {env_name}")
    rendered = rendered_from_record(chosen)
    new_revision = current + 1
    objects, _ = settle_replicas(kube, rendered)  # a rollback never undoes a scale
    kube.apply_all([*generated_secrets(kube, rendered),
                    *_with_revision(objects, new_revision)], force=True)
    _prune(kube, rendered, new_revision)
    kube.wait_for(rendered.workload_objects(), timeout=timeout, on_progress=on_progress)
    for old in records:
        if old["data"]["status"] == "deployed":
            _set_record_status(kube, old, "superseded")
    kube.apply(build_record(rendered, new_revision, "deployed", f"rollback to {revision}"))
    return new_revision


def history(kube: Any, namespace: str, env_name: str) -> list[dict[str, Any]]:
    records = read_records(kube, namespace, env_name)
    if not records:
        raise UsageError(f"environment {env_name} not found in namespace {namespace}",
                         hint="mme-rep env list shows what is deployed")
    deployed = [int(r["data"]["revision"]) for r in records if r["data"]["status"] == "deployed"]
    live = max(deployed, default=None)

    def status(r: Obj) -> str:
        # A revision written from inside the pool (vscale) cannot relabel older ones.
        st = str(r["data"]["status"])
        return "superseded" if st == "deployed" and int(r["data"]["revision"]) != live else st

    return [{"revision": int(r["data"]["revision"]), "status": status(r),
             "time": r["data"]["time"], "template": r["data"]["template"],
             "image": r["data"]["image"], "note": r["data"].get("note", "")} for r in records]


def delete_environment(kube: Any, namespace: str, env_name: str, *, purge: bool = False,
                       wait: bool = True, timeout: float = 120.0) -> list[str]:
    """Delete every part; data volumes (PVCs) stay unless ``purge``. Returns what went."""
    parts = [o for o in _live_parts(kube, namespace, env_name)
             if purge or o["kind"] != "PersistentVolumeClaim"]
    if not parts:
        raise UsageError(f"environment {env_name} not found in namespace {namespace}",
                         hint="mme-rep env list shows what is deployed")
    kube.delete_all(parts)
    if wait:
        kube.wait_gone(parts, timeout=timeout)
    return [_describe(o) for o in parts]


def _comparable(obj: Obj | None) -> Obj:
    if obj is None:
        return {}
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in (
        "managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def diff(kube: Any, rendered: Rendered) -> list[dict[str, Any]]:
    """What a deploy would change, from a server-side dry run: action and a unified diff."""
    import difflib

    import yaml

    records = read_records(kube, rendered.namespace, rendered.env_name)
    current = int(records[-1]["data"]["revision"]) if records else 1
    if kube.get("v1", "Namespace", rendered.namespace) is None:
        return [{"action": "created", "object": _describe(o), "diff": ""}
                for o in rendered.objects]
    objects, _ = settle_replicas(kube, rendered)
    planned = _with_revision(objects, current)
    out = []
    for result in kube.apply_all(planned, dry_run=True):
        if not result.changed:
            continue
        if result.obj["kind"] == "Secret":  # never show secret values
            out.append({"action": result.action, "object": _describe(result.obj), "diff": ""})
            continue
        old = yaml.safe_dump(_comparable(result.before), sort_keys=True).splitlines()
        new = yaml.safe_dump(_comparable(result.obj), sort_keys=True).splitlines()
        text = "\n".join(difflib.unified_diff(old, new, "live", "deploy", lineterm=""))
        out.append({"action": result.action, "object": _describe(result.obj), "diff": text})
    return out


def web_hint(profile: Any, rendered: Rendered) -> str:
    """How to reach a web environment: its address, or the port-forward that gets there."""
    service = f"{rendered.env_name}-{rendered.web.get('service', 'web')}"
    port = rendered.params.get("port") or rendered.web.get("port", 80)
    path = rendered.web.get("path", "/")
    secret = next(iter(rendered.secrets), None)
    token = (f"\nToken: kubectl -n {rendered.namespace} get secret "
             f"{rendered.env_name}-{secret} -o jsonpath='{{.data.{rendered.secrets[secret][0]}}}'"
             " | base64 -d") if secret else ""
    if profile.ingress_domain:
        return f"Web address: https://{rendered.env_name}.{profile.ingress_domain}{path}{token}"
    return (f"Web address (no ingress domain in profile {profile.name}): run\n"
            f"  kubectl -n {rendered.namespace} port-forward svc/{service} {port}:{port}\n"
            f"then open http://127.0.0.1:{port}{path}{token}")


# -- read ------------------------------------------------------------------------------------

def _age(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - then).total_seconds()


def list_environments(kube: Any, namespace: str | None) -> list[dict[str, Any]]:
    """Deployed environments (from their latest revision record)."""
    records = kube.list_objects("v1", "ConfigMap", namespace, label_selector=f"{RECORD_LABEL}=true",
                                all_namespaces=namespace is None)
    latest: dict[tuple[str, str], Obj] = {}
    for r in records:
        key = (r["metadata"]["namespace"], r["metadata"]["labels"]["app.kubernetes.io/instance"])
        if key not in latest or int(r["data"]["revision"]) > int(latest[key]["data"]["revision"]):
            latest[key] = r
    rows = []
    for (ns, env), r in sorted(latest.items()):
        rows.append({"namespace": ns, "name": env, "template": r["data"]["template"],
                     "revision": int(r["data"]["revision"]), "status": r["data"]["status"],
                     "image": r["data"]["image"], "updated": r["data"]["time"]})
    return rows


def environment_status(kube: Any, namespace: str, env_name: str) -> dict[str, Any]:
    """Components with their pods, restarts and ports; recent warning events."""
    from mmerep.kube import workload_status

    parts = _live_parts(kube, namespace, env_name)
    if not parts:
        raise UsageError(f"environment {env_name} not found in namespace {namespace}",
                         hint="mme-rep env list shows what is deployed")
    pods = kube.list_objects("v1", "Pod", namespace,
                             label_selector=f"app.kubernetes.io/instance={env_name}")
    services = {o["metadata"]["name"]: o for o in parts if o["kind"] == "Service"}
    components = []
    for obj in parts:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        st = workload_status(obj, obj)
        component = obj["metadata"]["labels"].get("app.kubernetes.io/component", "")
        mine = [p for p in pods if p["metadata"].get("labels", {}).get(
            "app.kubernetes.io/component") == component]
        restarts = sum(c.get("restartCount", 0) for p in mine
                       for c in p.get("status", {}).get("containerStatuses", []) or [])
        ages = [a for a in (_age(p["metadata"].get("creationTimestamp")) for p in mine)
                if a is not None]
        svc = services.get(obj["metadata"]["name"])
        ports = [f"{p['port']}/{p.get('protocol', 'TCP').lower()}"
                 for p in (svc or {}).get("spec", {}).get("ports", [])]
        containers = obj["spec"]["template"]["spec"]["containers"]
        components.append({
            "name": obj["metadata"]["name"], "kind": obj["kind"], "component": component,
            "state": "Active" if st.ready else "Progressing",
            "image": containers[0]["image"], "desired": st.desired, "ready": st.ready_pods,
            "pods": len(mine), "restarts": restarts,
            "age_seconds": int(min(ages)) if ages else None, "ports": ports,
            "revision": obj["metadata"]["labels"].get("mme-rep/revision"),
        })
    warnings = [
        {"object": f"{e['involvedObject'].get('kind')}/{e['involvedObject'].get('name')}",
         "reason": e.get("reason"), "message": e.get("message"),
         "time": _event_time(e) or None, "count": e.get("count", 1)}
        for e in _warning_events(kube, namespace) if _belongs_to(e, env_name)][-10:]
    data = {"namespace": namespace, "name": env_name, "components": components,
            "warnings": warnings}
    if any(c["component"] == "synclocal" for c in components):
        data["synclocal"] = _synclocal_line(kube)
    state = next((o for o in parts if o["kind"] == "ConfigMap"
                  and o["metadata"]["name"] == f"{env_name}-scaler-state"), None)
    if state is not None:
        data["scaler"] = scaler_line(state)
    return data


def scaler_line(state: Obj) -> str:
    """The autoscaler's switch, bounds and last decision, from its state ConfigMap."""
    data = state.get("data") or {}
    line = (f"scaler: daemon {data.get('daemon') or 'off'}"
            f" (min {data.get('min') or 0}, max {data.get('max') or 'profile limit'})")
    try:
        decisions = json.loads(data.get("decisions") or "[]")
    except ValueError:
        decisions = []
    if decisions:
        last = decisions[-1]
        when = datetime.fromtimestamp(float(last.get("time", 0)), UTC).strftime("%H:%M:%SZ")
        line += f"; last decision {when}: {last.get('reason', '')}"
    return line


def _synclocal_line(kube: Any) -> str:
    """Which staged datasets are complete on how many nodes (from synclocal's node notes)."""
    from mmerep.errors import KubeForbidden
    from mmerep.synclocal.node import status_line

    try:
        return status_line(kube.list_objects("v1", "Node"))
    except KubeForbidden:
        return "synclocal: nodes are not readable with these credentials"



# -- replica ownership (the HorizontalPodAutoscaler pattern) ------------------------------

# On a workload: the template parameter that sets its replicas (e.g. "executors").
REPLICAS_PARAM = "mme-rep/replicas-param"


def replicas_owned_elsewhere(live: Obj) -> bool:
    """True once anything but our own apply (the scaler, kubectl scale, an HPA) has set
    ``spec.replicas``: from then on the deploy leaves the count alone."""
    for entry in live.get("metadata", {}).get("managedFields") or []:
        fields = entry.get("fieldsV1", {}).get("f:spec", {})
        if "f:replicas" in fields and not (entry.get("manager") == "mme-rep"
                                           and entry.get("operation") == "Apply"):
            return True
    return False


def settle_replicas(kube: Any, rendered: Rendered) -> tuple[list[Obj], list[tuple[str, int]]]:
    """The objects to apply, without ``spec.replicas`` where someone else owns it, and the
    workloads to scale because the operator set their parameter explicitly."""
    objects, rescale = [], []
    for obj in rendered.objects:
        param = obj["metadata"].get("annotations", {}).get(REPLICAS_PARAM)
        if not param or "replicas" not in obj.get("spec", {}):
            objects.append(obj)
            continue
        live = kube.get(obj["apiVersion"], obj["kind"], obj["metadata"]["name"],
                        rendered.namespace)
        if live is None or not replicas_owned_elsewhere(live):
            objects.append(obj)
            continue
        objects.append({**obj, "spec": {k: v for k, v in obj["spec"].items()
                                        if k != "replicas"}})
        wanted = rendered.params.get(param)
        if param in rendered.explicit and isinstance(wanted, int) \
                and live["spec"].get("replicas") != wanted:
            rescale.append((obj["metadata"]["name"], wanted))
    return objects, rescale


def record_workload_change(kube: Any, namespace: str, env_name: str, kind: str, name: str,
                           change: Callable[[Obj], Obj], params: dict[str, Any], note: str, *,
                           timeout: float = 600.0, on_progress: Progress | None = None,
                           field_manager: str = "mme-rep") -> int:
    """Apply one changed workload of the current revision and record it as a new revision,
    so history shows it and rollback restores the previous one. Needs only: list and
    create ConfigMaps, and get/patch the workload (what the in-pod scaler may do)."""
    records = read_records(kube, namespace, env_name)
    if not records:
        raise UsageError(f"environment {env_name} not found in namespace {namespace}",
                         hint="mme-rep env list shows what is deployed")
    current = rendered_from_record(records[-1])
    key = (kind, name)
    found = [o for o in current.objects if (o["kind"], o["metadata"]["name"]) == key]
    if not found:
        raise UsageError(f"{kind}/{name} is not part of environment {env_name}")
    changed = change(found[0])
    revision = int(records[-1]["data"]["revision"]) + 1
    updated = dataclasses.replace(
        current, params={**current.params, **params},
        objects=[changed if (o["kind"], o["metadata"]["name"]) == key else o
                 for o in current.objects])
    settled, _ = settle_replicas(kube, dataclasses.replace(updated, objects=[changed]))
    kube.apply(_with_revision(settled, revision)[0], compare=False, field_manager=field_manager)
    kube.wait_for([changed], timeout=timeout, on_progress=on_progress)
    kube.create(build_record(updated, revision, "deployed", note), field_manager=field_manager)
    return revision
