"""Warning events of an environment: the latest one of a waiting workload, and the live
view's notes."""

from __future__ import annotations

import dataclasses
import time

from mmerep.environments.model import Obj, OnWorkloadStatuses, Rendered
from mmerep.kube import Kube, WorkloadStatus


def event_time(event: Obj) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or "")


def warning_events(kube: Kube, namespace: str) -> list[Obj]:
    """The namespace's warning events, oldest first."""
    events = kube.list_objects("v1", "Event", namespace, field_selector="type=Warning")
    return sorted(events, key=event_time)


def belongs_to(event: Obj, name: str) -> bool:
    """About ``name`` itself or one of its parts (``<name>-...``: pods, replica sets)."""
    about = event.get("involvedObject", {}).get("name", "")
    return bool(about == name or about.startswith(name + "-"))


def latest_warning(kube: Kube, rendered: Rendered) -> str:
    """`` (latest warning: <object>: <message>)``, or "" when there is none."""
    mine = [e for e in warning_events(kube, rendered.namespace)
            if belongs_to(e, rendered.env_name)]
    if not mine:
        return ""
    last = mine[-1]
    return f" (latest warning: {last['involvedObject']['name']}: {last.get('message', '')})"


def started_counts(kube: Kube, rendered: Rendered, names: list[str]) -> dict[str, int]:
    """Per waiting workload, its pods that started (running, past the start-up probe):
    "started" but not "ready" means the service itself does not answer yet."""
    from mmerep.workload_policy import pod_started

    pods = kube.list_objects("v1", "Pod", rendered.namespace,
                             label_selector=f"app.kubernetes.io/instance={rendered.env_name}")
    return {name: sum(1 for p in pods if belongs_to({"involvedObject": p["metadata"]}, name)
                      and pod_started(p)) for name in names}


def with_warnings(kube: Kube, rendered: Rendered, on_progress: OnWorkloadStatuses | None,
                  after: float = 2.0, every: float = 2.0) -> OnWorkloadStatuses | None:
    """Progress that also carries each waiting workload's latest warning event.

    Events are read only once a rollout has taken ``after`` seconds, and then every
    ``every`` seconds, so a quick rollout costs no extra requests.
    """
    if on_progress is None:
        return None
    started = time.monotonic()
    fetched = 0.0
    notes: dict[str, str] = {}
    started_pods: dict[str, int] = {}

    def progress(statuses: list[WorkloadStatus]) -> None:
        nonlocal fetched
        now = time.monotonic()
        waiting = [s for s in statuses if not s.ready]
        if waiting and now - started >= after and now - fetched >= every:
            fetched = now
            events = warning_events(kube, rendered.namespace)
            for s in waiting:
                mine = [e for e in events if belongs_to(e, s.name)]
                if mine:
                    notes[s.name] = f"{mine[-1].get('reason')}: {mine[-1].get('message')}"
            started_pods.update(started_counts(kube, rendered, [s.name for s in waiting]))
        on_progress([dataclasses.replace(s, note="" if s.ready else notes.get(s.name, ""),
                                         started=s.ready_pods if s.ready else
                                         started_pods.get(s.name)) for s in statuses])

    return progress
