"""Revision records that tell the truth, even about commands that did not finish.

A record (a ConfigMap, built by ``environments.build_record``) is *created* with status
``deploying`` before anything is applied, so two writers can never both write revision N
(the second create fails with 409). Afterwards only its status and note change, by a
merge patch of those two keys, never by rewriting the record. A command stopped by
Ctrl-C marks its record ``interrupted`` (and one that fails, ``failed``) with what
happened; a command killed outright leaves ``deploying``, which the next command (holding
the environment's lease, so the writer is certainly gone) turns into ``interrupted``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mmerep import envlock
from mmerep.errors import KubeConflict, KubeError, MmerepError

Obj = dict[str, Any]
RECORD_LABEL = "mme-rep/record"
# The status again, in the metadata: ``env list`` reads records' metadata only.
STATUS_ANNOTATION = "mme-rep/status"
KILLED_NOTE = ("the command that made this revision stopped before finishing (killed?); "
               "its objects may be partly applied; a later deploy or rollback replaced them")
SIGINT_NOTE = ("interrupted by {how} during {operation}; the objects may be partly "
               "applied: deploy again to finish, or roll back")


def create(kube: Any, record: Obj) -> Obj:
    """Create the record; a record of that revision already there is a conflict."""
    try:
        created: Obj = kube.create(record)
    except KubeConflict as exc:
        name = record["metadata"]["name"]
        raise KubeConflict(f"revision record {name} already exists: another command wrote "
                           "this revision meanwhile", hint="look at mme-rep env history and "
                           "deploy again", status=exc.status, reason=exc.reason) from None
    return created


def set_status(kube: Any, record: Obj, status: str, note: str | None = None) -> None:
    """Change only the record's status (and note)."""
    meta = record["metadata"]
    data = {"status": status} if note is None else {"status": status, "note": note}
    res = kube.resource("v1", "ConfigMap")
    body = {"data": data, "metadata": {"annotations": {STATUS_ANNOTATION: status}}}
    kube.request("PATCH", res.path(meta["namespace"], meta["name"]), body=body,
                 content_type="application/merge-patch+json",
                 what=f"mark revision {meta['name']} {status}")


def _records(kube: Any, namespace: str, env_name: str) -> list[Obj]:
    found = kube.list_objects("v1", "ConfigMap", namespace, label_selector=(
        f"{RECORD_LABEL}=true,app.kubernetes.io/instance={env_name}"))
    return sorted(found, key=lambda r: int(r.get("data", {}).get("revision", 0)))


def _in_progress(kube: Any, namespace: str, env_name: str) -> list[Obj]:
    return [r for r in _records(kube, namespace, env_name)
            if r.get("data", {}).get("status") == "deploying"]


def settle_interrupted(kube: Any, namespace: str, env_name: str) -> list[int]:
    """Repair what a killed command left; call it while holding the environment's lease.

    Records left ``deploying`` become ``interrupted``; of several ``deployed`` (killed
    between marking the new one and superseding the old), all but the newest become
    ``superseded``. Returns the revisions marked interrupted.
    """
    every = _records(kube, namespace, env_name)
    stale = [r for r in every if r.get("data", {}).get("status") == "deploying"]
    for record in stale:
        set_status(kube, record, "interrupted", KILLED_NOTE)
    deployed = [r for r in every if r.get("data", {}).get("status") == "deployed"]
    for record in deployed[:-1]:
        set_status(kube, record, "superseded")
    return [int(r["data"]["revision"]) for r in stale]


@contextmanager
def outcome_recorded(kube: Any, namespace: str, env_name: str, operation: str) -> Iterator[None]:
    """A record still ``deploying`` when the block ends by Ctrl-C or an error says so."""
    try:
        yield
    except KeyboardInterrupt as stop:
        how = getattr(stop, "how", "Ctrl-C (SIGINT)")
        _mark(kube, namespace, env_name, "interrupted",
              SIGINT_NOTE.format(how=how, operation=operation))
        raise
    except MmerepError as exc:
        _mark(kube, namespace, env_name, "failed", exc.message)
        raise


def _mark(kube: Any, namespace: str, env_name: str, status: str, note: str) -> None:
    try:
        for record in _in_progress(kube, namespace, env_name):
            set_status(kube, record, status, note)
    except KubeError:
        pass  # unreachable now: the next command marks it interrupted instead


def explain_in_progress(kube: Any, namespace: str, env_name: str,
                        rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History rows with a ``deploying`` revision told as it is: who is deploying it
    now, or ``interrupted`` when nobody holds the environment any more."""
    if not any(r["status"] == "deploying" for r in rows):
        return rows
    holder = envlock.current_holder(kube, namespace, env_name)
    for row in rows:
        if row["status"] != "deploying":
            continue
        if holder is None:
            row.update(status="interrupted", note=KILLED_NOTE)
        else:
            since = holder.since.strftime("%H:%M:%S UTC") if holder.since else "?"
            row["note"] = f"in progress: {holder.identity} ({holder.operation}) since {since}"
    return rows
