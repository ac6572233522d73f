"""Deploy, upgrade and roll back: the whole flow of ``env deploy`` in ``deploy`` below.

Inputs were validated when the environment was rendered; here the API server validates
the objects (dry run) and admission judges their pods before anything is written.
"""

from __future__ import annotations

import base64
import secrets

from mmerep import envlock, revisions, sshkeys, templates
from mmerep.environments.events import latest_warning, with_warnings
from mmerep.environments.model import (
    PSA_LABELS,
    RECORD_LABEL,
    DeployResult,
    Obj,
    OnPlan,
    OnWorkloadStatuses,
    Rendered,
    kind_and_name,
)
from mmerep.environments.parts import delete_environment, live_parts, prunable, prune
from mmerep.environments.records import (
    build_record,
    good_records,
    read_records,
    rendered_from_record,
    revision_of,
    supersede_deployed,
)
from mmerep.environments.replicas import settle_replicas
from mmerep.environments.storage import check_storage_classes
from mmerep.environments.vscaled import keep_vscaled, live_revision
from mmerep.errors import KubeConflict, KubeError, KubeTimeout, UsageError
from mmerep.kube import Kube


def deploy(kube: Kube, rendered: Rendered, *, timeout: float = 300.0, rollback: bool = True,
           force: bool = False, on_progress: OnWorkloadStatuses | None = None,
           on_plan: OnPlan | None = None, lock_wait: float = 0.0) -> DeployResult:
    """Validate on the server, apply what changed, wait; roll back a rollout that fails.

    ``force`` takes over fields another field manager owns (server-side apply's force),
    instead of failing with a conflict. ``lock_wait``: seconds to wait while another
    command changes the environment (see ``envlock``).
    """
    # 1. Where it goes, and what is there already (volumes' classes first: nothing made
    # when one is missing).
    check_storage_classes(kube, rendered)
    created_namespace = ensure_namespace(kube, rendered.namespace)
    # durability: one change per environment at a time; a true record of how it ended
    ns, env = rendered.namespace, rendered.env_name
    with envlock.hold(kube, ns, env, f"deploy {rendered.image}", wait=lock_wait), \
            revisions.outcome_recorded(kube, ns, env, "deploy"):
        revisions.settle_interrupted(kube, ns, env)
        # A command that held the lock before this one may have deployed since.
        created_namespace = created_namespace and not read_records(kube, ns, env)
        return _deploy_locked(kube, rendered, created_namespace, timeout=timeout,
                              rollback=rollback, force=force, on_progress=on_progress,
                              on_plan=on_plan)


def _deploy_locked(kube: Kube, rendered: Rendered, created_namespace: bool, *,
                   timeout: float, rollback: bool, force: bool,
                   on_progress: OnWorkloadStatuses | None,
                   on_plan: OnPlan | None) -> DeployResult:
    # What is there already, read once: the dry run compares with it, and the prune works
    # from it; a namespace just made holds nothing.
    parts = [] if created_namespace else live_parts(kube, rendered.namespace,
                                                   rendered.env_name)
    records = sorted((p for p in parts if p["metadata"].get("labels", {}).get(RECORD_LABEL)),
                     key=revision_of)
    current = revision_of(records[-1]) if records else 0
    live = {(p["kind"], p["metadata"]["name"]): p for p in parts}
    # CPU and memory a vscale set are kept unless this deploy sets them; see vscaled.py.
    rendered, kept = keep_vscaled(rendered, live_revision(records))
    generated = generated_secrets(kube, rendered, live=live)
    # Replicas someone else (the scaler) owns are left out; see replicas.py.
    objects, rescale = settle_replicas(kube, rendered, live=live)

    # 2. The API server and admission judge everything before anything is written.
    try:
        planned = [*generated, *with_revision(objects, max(current, 1))]
        # The two judgements are independent: both at once (the dry run's error first).
        dry, _ = kube.map(lambda judge: judge(), [
            lambda: kube.apply_all(planned, dry_run=True, force=force, live=live),
            lambda: check_pods_admitted(kube, rendered)])
    except KubeError:
        if created_namespace:  # leave nothing behind on bad input
            remove_namespace(kube, rendered.namespace)
        raise
    changes = [(r.action, kind_and_name(r.obj)) for r in dry if r.changed]
    # A part this revision no longer has is a change too (else "unchanged" would keep it).
    changes += [("deleted", kind_and_name(p)) for p in prunable(rendered, parts)]
    changes += [("scaled", f"Deployment/{name}") for name, _ in rescale]
    if on_plan:
        on_plan(changes)
    if not changes and records and records[-1]["data"]["status"] == "deployed":
        return DeployResult("unchanged", current, kept=kept)

    # 3. Apply the new revision and drop what it no longer has.
    revision = current + 1
    record = revisions.create(kube, build_record(rendered, revision, "deploying"))  # durability
    kube.apply_all([*generated, *with_revision(objects, revision)], compare=False,
                   force=force)
    for name, replicas in rescale:  # the operator said so explicitly: --set executors=N
        kube.scale("Deployment", name, replicas, rendered.namespace)
    prune(kube, rendered, parts)

    # 4. Wait; a rollout that does not become ready is undone (see recover_failed_rollout).
    try:
        kube.wait_for(rendered.workload_objects(), timeout=timeout,
                      on_progress=with_warnings(kube, rendered, on_progress))
    except KubeTimeout as exc:
        recover_failed_rollout(kube, rendered, revision, records, exc, rollback=rollback,
                               timeout=timeout, on_progress=on_progress)

    # 5. Record it.
    revisions.set_status(kube, record, "deployed")  # durability: before superseding the old
    supersede_deployed(kube, records)
    return DeployResult("installed" if current == 0 else "upgraded", revision, changes, kept)


def recover_failed_rollout(kube: Kube, rendered: Rendered, revision: int, records: list[Obj],
                           exc: KubeTimeout, *, rollback: bool, timeout: float,
                           on_progress: OnWorkloadStatuses | None) -> None:
    """Record the failure, then roll back to the last good revision (or remove a first
    install); always raises, saying what was done."""
    reason = exc.message + latest_warning(kube, rendered)
    revisions.set_status(kube, build_record(rendered, revision, "failed"), "failed",
                         reason)  # durability
    if not rollback:
        raise KubeTimeout(reason, hint="fix the cause and deploy again, or "
                          f"mme-rep env rollback {rendered.env_name}") from exc
    good = good_records(records)
    if not good:
        delete_environment(kube, rendered.namespace, rendered.env_name, purge=True)
        raise KubeTimeout(f"{reason}; first install removed",
                          hint="fix the cause and deploy again") from exc
    restored = rollback_to(kube, rendered.namespace, rendered.env_name,
                           revision_of(good[-1]), timeout=timeout, on_progress=on_progress)
    raise KubeTimeout(f"{reason}; rolled back to revision {revision_of(good[-1])} "
                      f"(now revision {restored})",
                      hint="fix the cause and deploy again") from exc


def rollback_to(kube: Kube, namespace: str, env_name: str, revision: int | None = None, *,
                timeout: float = 300.0, on_progress: OnWorkloadStatuses | None = None,
                lock_wait: float = 0.0) -> int:
    """Re-apply a recorded revision (default: the one before the current) as a new one."""
    # durability: one change per environment at a time; a true record of how it ended
    with envlock.hold(kube, namespace, env_name, f"rollback to {revision or 'previous'}",
                      wait=lock_wait), revisions.outcome_recorded(kube, namespace, env_name,
                                                                  "rollback"):
        revisions.settle_interrupted(kube, namespace, env_name)
        return _rollback_locked(kube, namespace, env_name, revision, timeout=timeout,
                                on_progress=on_progress)


def _rollback_locked(kube: Kube, namespace: str, env_name: str, revision: int | None, *,
                     timeout: float, on_progress: OnWorkloadStatuses | None) -> int:
    records = read_records(kube, namespace, env_name)
    if not records:
        raise UsageError(f"environment {env_name} has no history in namespace {namespace}",
                         hint="mme-rep env list shows what is deployed")
    current = revision_of(records[-1])
    if revision is None:
        good = good_records(records[:-1])
        if not good:
            raise UsageError(f"environment {env_name} has no earlier good revision")
        revision = revision_of(good[-1])
    chosen = next((r for r in records if revision_of(r) == revision), None)
    if chosen is None:
        raise UsageError(f"environment {env_name} has no revision {revision}",
                         hint=f"mme-rep env history {env_name}")
    rendered = rendered_from_record(chosen)
    new_revision = current + 1
    objects, _ = settle_replicas(kube, rendered)  # a rollback never undoes a scale
    record = revisions.create(kube, build_record(rendered, new_revision, "deploying",  # durability
                                                 f"rollback to {revision}"))
    kube.apply_all([*generated_secrets(kube, rendered),
                    *with_revision(objects, new_revision)], force=True)
    prune(kube, rendered)
    kube.wait_for(rendered.workload_objects(), timeout=timeout, on_progress=on_progress)
    revisions.set_status(kube, record, "deployed")  # durability: before superseding the old
    supersede_deployed(kube, records)
    return new_revision


# -- the steps ---------------------------------------------------------------------------

def namespace_object(namespace: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": dict(PSA_LABELS)}}


def ensure_namespace(kube: Kube, namespace: str) -> bool:
    """Create the namespace (Pod Security ``restricted``) if missing; True if it was made."""
    if kube.get("v1", "Namespace", namespace) is not None:
        return False
    try:
        kube.create(namespace_object(namespace))
    except KubeConflict:  # durability: another command made it at the same moment
        return False
    return True


def remove_namespace(kube: Kube, namespace: str) -> None:
    ns = namespace_object(namespace)
    kube.delete_all([ns])
    kube.wait_gone([ns], timeout=60)


def generated_secrets(kube: Kube | None, rendered: Rendered, *,
                      live: dict[tuple[str, str], Obj] | None = None) -> list[Obj]:
    """The template's secrets: random at first deploy, the same values ever after
    (``kube`` None: as at a first deploy, for rendering without a cluster; ``live``:
    the environment's objects the caller has just listed, so nothing is read again)."""
    out = []
    for short, keys in sorted(rendered.secrets.items()):
        name = f"{rendered.env_name}-{short}"
        if live is not None:
            existing = live.get(("Secret", name))
        else:
            existing = kube.get("v1", "Secret", name, rendered.namespace) if kube else None
        # SSH host keys (ssh_host_<type>_key) are key pairs made by ssh-keygen.
        data = sshkeys.fill_host_keys(dict((existing or {}).get("data") or {}), keys)
        for key in keys:
            if key not in data:
                data[key] = base64.b64encode(secrets.token_urlsafe(32).encode()).decode()
        kept = [k for k in data if k in keys or k.removesuffix(".pub") in keys]
        labels = templates.standard_labels(rendered.env_name, rendered.template, short)
        out.append({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": rendered.namespace, "labels": labels},
            "data": {k: data[k] for k in kept},
        })
        if any(sshkeys.is_host_key(k) for k in keys):
            out.append(sshkeys.known_hosts_configmap(
                rendered.env_name, rendered.namespace, data, _ssh_components(rendered),
                labels))
    return out + _authorized_keys(kube, rendered, live)


def _ssh_components(rendered: Rendered) -> list[str]:
    """Components whose Service has a port named ssh."""
    return sorted({o["metadata"]["labels"].get("app.kubernetes.io/component", "")
                   for o in rendered.objects if o["kind"] == "Service"
                   and any(p.get("name") == "ssh" for p in o["spec"].get("ports", []))})


def _authorized_keys(kube: Kube | None, rendered: Rendered,
                     live: dict[tuple[str, str], Obj] | None) -> list[Obj]:
    """Seeded from the parameter at first deploy; owned by `mme-rep ssh keys` after that."""
    if "authorized_keys" not in rendered.params:
        return []
    name = sshkeys.authorized_keys_name(rendered.env_name)
    if live is not None:
        existing = live.get(("ConfigMap", name))
    else:
        existing = kube.get("v1", "ConfigMap", name, rendered.namespace) if kube else None
    text = ((existing or {}).get("data") or {}).get("authorized_keys")
    if text is None:
        text = rendered.params.get("authorized_keys") or ""
        keys = [sshkeys.check_public_key(k) for k in sshkeys.parse_authorized_keys(text)]
    else:
        keys = sshkeys.parse_authorized_keys(text)
    return [sshkeys.authorized_keys_configmap(
        rendered.env_name, rendered.namespace, keys,
        templates.standard_labels(rendered.env_name, rendered.template, "ssh"))]


def with_revision(objects: list[Obj], revision: int) -> list[Obj]:
    out = []
    for obj in objects:
        meta = obj["metadata"]
        labels = {**meta.get("labels", {}), "mme-rep/revision": str(revision)}
        out.append({**obj, "metadata": {**meta, "labels": labels}})
    return out


def check_pods_admitted(kube: Kube, rendered: Rendered) -> None:
    """Dry-run each workload's pod: admission (Pod Security) judges pods, not Deployments,
    so without this a rejected pod would only show up as a rollout that never ends.

    Admission looks the pod's ServiceAccount up. One the environment brings does not
    exist before its first deploy; the pod is then checked as the namespace's ``default``
    one (its security does not depend on which), which the controller manager makes a
    moment after the namespace: that one is waited for, never assumed.
    """
    wanted = {o["spec"]["template"]["spec"].get("serviceAccountName") or "default"
              for o in rendered.workload_objects()}
    present = {name for name in wanted
               if kube.get("v1", "ServiceAccount", name, rendered.namespace) is not None}
    if wanted - present:
        kube.wait_exists("v1", "ServiceAccount", "default", rendered.namespace, timeout=60,
                         hint="kube-controller-manager makes it for every namespace; "
                         "is it running?")
    # Like the service account, a PriorityClass made with the rest may not exist yet.
    made = {o["metadata"]["name"] for o in rendered.objects if o["kind"] == "PriorityClass"}

    def check(obj: Obj) -> None:
        template = obj["spec"]["template"]
        spec = dict(template["spec"])
        if (spec.get("serviceAccountName") or "default") not in present:
            spec["serviceAccountName"] = "default"
        if spec.get("priorityClassName") in made:
            del spec["priorityClassName"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{obj['metadata']['name']}-admission-check",
                            "namespace": rendered.namespace,
                            "labels": template.get("metadata", {}).get("labels", {})},
               "spec": spec}
        kube.create(pod, dry_run=True)

    kube.map(check, rendered.workload_objects())
