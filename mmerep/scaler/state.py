"""The scaler's state ConfigMap ``<env>-scaler-state``: daemon on/off, bounds, the profile's
limits (written by the deploy), the policy's memory and its last decisions.

The deploy owns the key ``limits``; the scaler writes every other key with server-side
apply as its own field manager, so neither ever conflicts with the other and a restart
of the daemon (or a new deploy) keeps what was decided.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

FIELD_MANAGER = "mme-rep-scaler"
LOOP_FIELD_MANAGER = "mme-rep-autoscaler"
KEEP_DECISIONS = 20


def state_name(env_name: str) -> str:
    return f"{env_name}-scaler-state"


def executor_name(env_name: str) -> str:
    return f"{env_name}-executor"


def executor_selector(env_name: str) -> str:
    return f"app.kubernetes.io/instance={env_name},app.kubernetes.io/component=executor"


@dataclass(frozen=True)
class PolicyState:
    """What the policy (``mmerep.scaler.policy``) remembers between intervals, kept here
    with the rest of the state: the status reads it without loading the policy."""

    last_up: float | None = None
    last_down: float | None = None
    low_since: float | None = None  # demand below the current size since then


@dataclass(frozen=True)
class Limits:
    """The profile's limits, as the deploy recorded them for the in-pod scaler."""

    max_executors: int | None = None
    max_cpu: str | None = None
    max_memory: str | None = None


@dataclass
class ScalerState:
    daemon: bool = False
    minimum: int | None = None
    maximum: int | None = None
    interval: float | None = None
    limits: Limits = field(default_factory=Limits)
    policy: PolicyState = field(default_factory=PolicyState)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    observed: dict[str, Any] = field(default_factory=dict)
    exists: bool = True


def _json(data: dict[str, str], key: str, default: Any) -> Any:
    try:
        return json.loads(data[key]) if data.get(key) else default
    except ValueError:
        return default


def parse_state(obj: dict[str, Any] | None) -> ScalerState:
    if obj is None:
        return ScalerState(exists=False)
    data = obj.get("data") or {}
    limits = _json(data, "limits", {}) or {}
    policy = _json(data, "policy", {}) or {}

    def number(key: str) -> int | None:
        value = data.get(key, "")
        return int(value) if value.isdigit() else None

    return ScalerState(
        daemon=data.get("daemon") == "on", minimum=number("min"), maximum=number("max"),
        interval=float(data["interval"]) if data.get("interval") else None,
        limits=Limits(**{k: limits.get(k) for k in ("max_executors", "max_cpu", "max_memory")}),
        policy=PolicyState(**{k: policy.get(k) for k in ("last_up", "last_down", "low_since")}),
        decisions=list(_json(data, "decisions", [])), observed=dict(_json(data, "observed", {})))


def read_state(kube: Any, namespace: str, env_name: str) -> ScalerState:
    return parse_state(kube.get("v1", "ConfigMap", state_name(env_name), namespace))


def state_patch(namespace: str, env_name: str, values: dict[str, Any]) -> dict[str, Any]:
    """The apply body for exactly these keys. Server-side apply drops a key its manager
    applied before and leaves out now, so each writer always sends all of its keys."""
    data: dict[str, str] = {}
    for key, value in values.items():
        if key == "daemon":
            data["daemon"] = "on" if value else "off"
        elif key in ("min", "max", "interval"):
            data[key] = "" if value is None else str(value)
        elif key == "policy":
            data["policy"] = json.dumps(asdict(value), sort_keys=True)
        else:
            data[key] = json.dumps(value, sort_keys=True)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": state_name(env_name), "namespace": namespace}, "data": data}


def save_settings(kube: Any, namespace: str, env_name: str, state: ScalerState) -> None:
    """What the operator sets (``daemon on|off --min --max``): manager mme-rep-scaler."""
    kube.apply(state_patch(namespace, env_name, {
        "daemon": state.daemon, "min": state.minimum, "max": state.maximum,
        "interval": state.interval}), force=True, compare=False, field_manager=FIELD_MANAGER)


def save_progress(kube: Any, namespace: str, env_name: str, state: ScalerState) -> None:
    """What the loop learns each interval: its own manager, so it never overwrites a
    concurrent ``daemon off``."""
    kube.apply(state_patch(namespace, env_name, {
        "policy": state.policy, "decisions": state.decisions[-KEEP_DECISIONS:],
        "observed": state.observed}), force=True, compare=False,
        field_manager=LOOP_FIELD_MANAGER)
