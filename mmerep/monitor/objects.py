"""Objects the monitor builds (pure): its PodMonitor, for clusters that run the
Prometheus Operator."""

from __future__ import annotations

from typing import Any

from mmerep.templates import standard_labels

POD_MONITOR = ("monitoring.coreos.com/v1", "PodMonitor")


def pod_monitor(env_name: str, namespace: str, template: str = "htcondor-batch",
                owner: dict[str, Any] | None = None, interval: str = "60s") -> dict[str, Any]:
    """Scrape the environment's metrics ports: the monitor and the autoscaler in the
    scheduler pod, synclocal on every node. Owned by the scheduler Deployment, so it goes
    when the environment goes."""
    meta: dict[str, Any] = {"name": f"{env_name}-metrics", "namespace": namespace,
                            "labels": standard_labels(env_name, template, "monitor")}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": owner["metadata"]["name"],
                                    "uid": owner["metadata"]["uid"]}]
    return {
        "apiVersion": POD_MONITOR[0], "kind": POD_MONITOR[1], "metadata": meta,
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/instance": env_name}},
            "podMetricsEndpoints": [
                {"port": "monitor-metrics", "path": "/metrics", "interval": interval},
                {"port": "metrics", "path": "/metrics", "interval": interval},
            ],
        },
    }
