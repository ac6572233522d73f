"""Self-healing from the operator's shell: ``repair`` (put the current revision back as it
was recorded) and ``reinstall`` (delete and deploy it again, keeping generated secrets and
data volumes).

Repair compares the live objects with the current revision through a server-side dry run,
re-applies only what drifted or was deleted, regenerates a deleted secret the template
generates (never the pool password unless asked: every pool daemon would need the new one),
and restarts pods stuck in CrashLoopBackOff or image-pull errors once their cause is fixed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mmerep import envlock, revisions, sshkeys
from mmerep.environments.deploy_flow import generated_secrets, with_revision
from mmerep.environments.model import RECORD_LABEL, Obj, OnWorkloadStatuses, Rendered, kind_and_name
from mmerep.environments.parts import live_parts
from mmerep.environments.records import (
    build_record,
    read_records,
    rendered_from_record,
    revision_of,
    supersede_deployed,
)
from mmerep.environments.replicas import settle_replicas
from mmerep.errors import UsageError
from mmerep.kube import Kube

# Waiting reasons of a container that will not get better by itself.
STUCK_REASONS = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                 "CreateContainerConfigError", "CreateContainerError")
# Generated secrets a running pool depends on: a new value is never made without asking.
GUARDED_SECRETS = ("pool",)


@dataclass
class RepairReport:
    env_name: str
    revision: int
    done: list[tuple[str, str]] = field(default_factory=list)  # (action, Kind/name)
    not_fixed: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.not_fixed


def current_revision(kube: Kube, namespace: str, env_name: str) -> tuple[Rendered, int,
                                                                          list[Obj]]:
    records = read_records(kube, namespace, env_name)
    deployed = [r for r in records if r["data"]["status"] == "deployed"]
    if not deployed:
        raise UsageError(f"environment {env_name} has no deployed revision in namespace "
                         f"{namespace}", hint="mme-rep env list shows what is deployed; "
                         "mme-rep env deploy installs it")
    return rendered_from_record(deployed[-1]), revision_of(deployed[-1]), records


def _secrets(kube: Kube, rendered: Rendered, report: RepairReport,
             new_pool_password: bool) -> set[str]:
    """Regenerate deleted generated secrets (keys kept where they exist); the names of
    those that now hold new values."""
    renewed: set[str] = set()
    wanted = {o["metadata"]["name"]: o for o in generated_secrets(kube, rendered)}
    for short, keys in sorted(rendered.secrets.items()):
        name = f"{rendered.env_name}-{short}"
        live = kube.get("v1", "Secret", name, rendered.namespace)
        missing = [k for k in keys if k not in ((live or {}).get("data") or {})]
        if not missing:
            continue
        if short in GUARDED_SECRETS and not new_pool_password:
            report.not_fixed.append(
                f"Secret/{name} is {'gone' if live is None else 'missing ' + ', '.join(missing)}:"
                " the pool password cannot be recovered; run env repair again with "
                "--new-pool-password to make a new one (every pool pod restarts)")
            continue
        kube.apply(wanted[name], force=True)
        report.done.append(("regenerated (new values)", f"Secret/{name}"))
        renewed.add(name)
    return renewed


def _uses_secret(pod: Obj, names: set[str]) -> bool:
    for volume in pod.get("spec", {}).get("volumes") or []:
        if (volume.get("secret") or {}).get("secretName") in names:
            return True
    return any(((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") in names
               for c in pod.get("spec", {}).get("containers") or [] for env in c.get("env") or [])


def stuck_reason(pod: Obj) -> str | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        reason = ((status.get("state") or {}).get("waiting") or {}).get("reason")
        if reason in STUCK_REASONS:
            return str(reason)
    return None


def repair(kube: Kube, namespace: str, env_name: str, *, new_pool_password: bool = False,
           timeout: float = 300.0, on_progress: OnWorkloadStatuses | None = None,
           lock_wait: float = 0.0) -> RepairReport:
    """Put the current revision back; returns what was done and what could not be."""
    current_revision(kube, namespace, env_name)  # a clear error before taking the lock
    with envlock.hold(kube, namespace, env_name, "repair", wait=lock_wait):
        return _repair_locked(kube, namespace, env_name, new_pool_password=new_pool_password,
                              timeout=timeout, on_progress=on_progress)


def _repair_locked(kube: Kube, namespace: str, env_name: str, *, new_pool_password: bool,
                   timeout: float, on_progress: OnWorkloadStatuses | None) -> RepairReport:
    rendered, revision, _ = current_revision(kube, namespace, env_name)
    report = RepairReport(env_name, revision)
    renewed = _secrets(kube, rendered, report, new_pool_password)
    objects, _ = settle_replicas(kube, rendered)  # a repair never undoes a scale
    planned = with_revision(objects, revision)
    drifted = {kind_and_name(r.obj): r.action for r in
               kube.apply_all(planned, dry_run=True, force=True) if r.changed}
    if drifted:
        kube.apply_all([o for o in planned if kind_and_name(o) in drifted], force=True,
                       compare=False)
        report.done += [("re-created" if action == "created" else "re-applied (drifted)", what)
                        for what, action in sorted(drifted.items())]
    pods = kube.list_objects("v1", "Pod", namespace,
                             label_selector=f"app.kubernetes.io/instance={env_name}")
    for pod in pods:
        name = pod["metadata"]["name"]
        reason = stuck_reason(pod)
        if reason or (renewed and _uses_secret(pod, renewed)):
            kube.delete("v1", "Pod", name, namespace, propagation="Background")
            report.done.append((f"restarted ({reason or 'new secret values'})", f"Pod/{name}"))
    kube.wait_for(rendered.workload_objects(), timeout=timeout, on_progress=on_progress)
    return report


def reinstall(kube: Kube, namespace: str, env_name: str, *, timeout: float = 300.0,
              on_progress: OnWorkloadStatuses | None = None,
              lock_wait: float = 0.0) -> tuple[int, list[str]]:
    """Delete every part but the generated secrets, the authorized SSH keys, the data
    volumes (PVCs) and the history, then deploy the current revision again (recorded as
    a new revision). Returns the new revision and what was kept."""
    current_revision(kube, namespace, env_name)
    with envlock.hold(kube, namespace, env_name, "reinstall", wait=lock_wait), \
            revisions.outcome_recorded(kube, namespace, env_name, "reinstall"):
        return _reinstall_locked(kube, namespace, env_name, timeout=timeout,
                                 on_progress=on_progress)


def _reinstall_locked(kube: Kube, namespace: str, env_name: str, *, timeout: float,
                      on_progress: OnWorkloadStatuses | None) -> tuple[int, list[str]]:
    rendered, revision, records = current_revision(kube, namespace, env_name)
    secret_names = {f"{env_name}-{short}" for short in rendered.secrets}
    # Keys added with `mme-rep ssh keys add` live only there: a reinstall keeps them.
    keys_name = sshkeys.authorized_keys_name(env_name)

    def kept(obj: Obj) -> bool:
        return bool(obj["kind"] == "PersistentVolumeClaim"
                    or (obj["kind"] == "Secret" and obj["metadata"]["name"] in secret_names)
                    or (obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == keys_name)
                    or obj["metadata"].get("labels", {}).get(RECORD_LABEL))

    parts = live_parts(kube, namespace, env_name)
    doomed = [o for o in parts if not kept(o)]
    kube.delete_all(doomed)
    kube.wait_gone(doomed, timeout=timeout)
    new_revision = revision_of(records[-1]) + 1
    fresh = dataclasses.replace(rendered, explicit=())
    record = revisions.create(kube, build_record(fresh, new_revision, "deploying",
                                                 f"reinstall of revision {revision}"))
    kube.apply_all([*generated_secrets(kube, fresh), *with_revision(fresh.objects, new_revision)],
                   force=True, compare=False)
    kube.wait_for(fresh.workload_objects(), timeout=timeout, on_progress=on_progress)
    revisions.set_status(kube, record, "deployed")
    supersede_deployed(kube, records)
    return new_revision, sorted(kind_and_name(o) for o in parts if kept(o)
                                and not o["metadata"].get("labels", {}).get(RECORD_LABEL))
