"""Reading environments: the list of them, and one environment's components and warnings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from mmerep.environments.model import RECORD_LABEL, WORKLOAD_KINDS, Obj, record_summary, selector
from mmerep.errors import UsageError
from mmerep.kube import Kube, workload_status

STATUS_KINDS = (("apps/v1", "Deployment"), ("apps/v1", "DaemonSet"), ("apps/v1", "StatefulSet"),
                ("v1", "Service"))


def _age(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - then).total_seconds()


def list_environments(kube: Kube, namespace: str | None) -> list[dict[str, Any]]:
    """Deployed environments (from their latest revision record). The records' metadata
    carries what the list shows: only that is read (a record's data holds its rendered
    objects), unless a record written by an older version lacks it."""
    records = kube.list_metadata("v1", "ConfigMap", namespace,
                                 label_selector=f"{RECORD_LABEL}=true",
                                 all_namespaces=namespace is None)
    if any(record_summary(r) is None for r in records):
        records = kube.list_objects("v1", "ConfigMap", namespace,
                                    label_selector=f"{RECORD_LABEL}=true",
                                    all_namespaces=namespace is None)
    return environment_rows(records)


def environment_rows(records: list[Obj]) -> list[dict[str, Any]]:
    """One row per environment from its revision records (the latest one); pure, so the
    console builds the same rows from what its watch holds."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        key = (r["metadata"]["namespace"], r["metadata"]["labels"]["app.kubernetes.io/instance"])
        d = r.get("data") or {}
        summary = record_summary(r) or {
            "revision": int(d["revision"]), "template": d["template"], "status": d["status"],
            "image": d["image"], "time": d["time"]}
        if key not in latest or summary["revision"] > latest[key]["revision"]:
            latest[key] = summary
    return [{"namespace": ns, "name": env, "template": s["template"], "revision": s["revision"],
             "status": s["status"], "image": s["image"], "updated": s["time"]}
            for (ns, env), s in sorted(latest.items())]


def environment_status(kube: Kube, namespace: str, env_name: str) -> dict[str, Any]:
    """Components with their pods, restarts and ports; recent warning events."""
    # here, not above: ``env list`` imports this module and needs none of them
    from mmerep.environments.events import belongs_to, event_time, warning_events
    from mmerep.environments.synclocal_nodes import synclocal_line
    from mmerep.workload_policy import pod_health

    # What the status shows: workloads and services, pods, warning events, the
    # autoscaler's and the monitor's state, and synclocal's node notes (kept only for an
    # environment with a synclocal component; read anyway, beside the others, as waiting
    # for the parts first would add a round trip). Nine requests over three connections:
    # each thread and its connection (a TLS handshake) costs CPU, most of a request's.
    ours = selector(env_name)
    reads = [*(lambda k=k: kube.list_objects(k[0], k[1], namespace, label_selector=ours)
               for k in STATUS_KINDS),
             lambda: kube.list_objects("v1", "Pod", namespace,
                                       label_selector=f"app.kubernetes.io/instance={env_name}"),
             lambda: warning_events(kube, namespace),
             lambda: kube.get("v1", "ConfigMap", f"{env_name}-scaler-state", namespace),
             lambda: kube.get("v1", "ConfigMap", f"{env_name}-monitor-state", namespace),
             lambda: synclocal_line(kube)]
    *found, pods, events, scaler, monitor, synclocal = kube.map(lambda read: read(), reads,
                                                                workers=3)
    parts = [obj for objs in found for obj in objs]
    if not parts:
        raise UsageError(f"environment {env_name} not found in namespace {namespace}",
                         hint="mme-rep env list shows what is deployed")
    services = {o["metadata"]["name"]: o for o in parts if o["kind"] == "Service"}
    components = []
    stopped: list[dict[str, Any]] = []  # pods Kubernetes evicted or failed, with the reason
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
        health = pod_health(mine)
        stopped.extend({"component": component, **s} for s in health.pop("stopped"))
        components.append({
            "name": obj["metadata"]["name"], "kind": obj["kind"], "component": component,
            "state": "Active" if st.ready else "Starting" if (
                health["started"] >= st.desired > health["serving"]) else "Progressing",
            **health,
            "image": containers[0]["image"], "desired": st.desired, "ready": st.ready_pods,
            "pods": len(mine), "restarts": restarts,
            "age_seconds": int(min(ages)) if ages else None, "ports": ports,
            "revision": obj["metadata"]["labels"].get("mme-rep/revision"),
        })
    warnings = [
        {"object": f"{e['involvedObject'].get('kind')}/{e['involvedObject'].get('name')}",
         "reason": e.get("reason"), "message": e.get("message"),
         "time": event_time(e) or None, "count": e.get("count", 1)}
        for e in events if belongs_to(e, env_name)][-10:]
    data: dict[str, Any] = {"namespace": namespace, "name": env_name,
                            "components": components, "warnings": warnings,
                            "stopped": stopped}
    if any(c["component"] == "synclocal" for c in components):
        data["synclocal"] = synclocal
    if scaler is not None:
        data["scaler"] = scaler_line(scaler)
    if monitor is not None:
        data["monitor"] = monitor_findings(monitor)
    return data


def monitor_findings(state: Obj) -> dict[str, Any]:
    """The monitor's last observation and findings (frozen jobs, broken executors), from
    its state ConfigMap."""
    data = state.get("data") or {}

    def load(key: str, default: Any) -> Any:
        try:
            return json.loads(data.get(key) or "null") or default
        except ValueError:
            return default

    findings = load("findings", [])
    observed = load("observed", {})
    restarts = load("restarts", {})
    if not observed:
        line = "monitor: no interval recorded yet"
    elif observed.get("error"):
        line = f"monitor: pool not readable: {observed['error']}"
    else:
        when = datetime.fromtimestamp(float(observed.get("time", 0)), UTC).strftime("%H:%M:%SZ")
        line = (f"monitor ({when}): {observed.get('running', 0)} jobs running, "
                f"{observed.get('held', 0)} held; {observed.get('executors', 0)} executors in "
                f"the pool, {observed.get('missing', 0)} missing; "
                f"{sum(restarts.values()) if isinstance(restarts, dict) else 0} frozen-job "
                f"restarts")
    return {"line": line, "findings": findings[-5:], "observed": observed}


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
