"""The monitor's state ConfigMap ``<env>-monitor-state``: its last findings, the restart
budget already spent per job, and what it saw last. The template creates the ConfigMap
(so it belongs to the environment); the monitor writes its keys as its own field manager.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

FIELD_MANAGER = "mme-rep-monitor"
KEEP_FINDINGS = 30


def state_name(env_name: str) -> str:
    return f"{env_name}-monitor-state"


@dataclass
class MonitorState:
    findings: list[dict[str, Any]] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)


def _json(data: dict[str, str], key: str, default: Any) -> Any:
    try:
        return json.loads(data[key]) if data.get(key) else default
    except ValueError:
        return default


def parse_state(obj: dict[str, Any] | None) -> MonitorState:
    data = (obj or {}).get("data") or {}
    restarts = _json(data, "restarts", {})
    return MonitorState(list(_json(data, "findings", [])),
                        {str(k): int(v) for k, v in restarts.items()}
                        if isinstance(restarts, dict) else {},
                        dict(_json(data, "observed", {})))


def read_state(kube: Any, namespace: str, env_name: str) -> MonitorState:
    return parse_state(kube.get("v1", "ConfigMap", state_name(env_name), namespace))


def save_state(kube: Any, namespace: str, env_name: str, state: MonitorState) -> None:
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": state_name(env_name), "namespace": namespace},
                "data": {"findings": json.dumps(state.findings[-KEEP_FINDINGS:], sort_keys=True),
                         "restarts": json.dumps(state.restarts, sort_keys=True),
                         "observed": json.dumps(state.observed, sort_keys=True)}},
               force=True, compare=False, field_manager=FIELD_MANAGER)
