"""What production clusters expect of an environment's pods, from the profile.

Pure functions: the profile's identity (UID/GID), scratch-space default, egress
endpoints and priority settings are checked here (``profile_fields``) and turned into the
template context (``policy_context``); ``pod_health`` reads pods back for ``env status``
and the live view ("started" versus "serving", pods Kubernetes evicted and why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from mmerep.grammar.names import DNS_SUBDOMAIN
from mmerep.templates import STANDARD_UID

if TYPE_CHECKING:  # profiles imports this module for its checks
    from mmerep.profiles import Profile

DEFAULT_SCRATCH = "20Gi"
# A site's policy may demand high UIDs; Linux caps IDs below 2^31 in user namespaces.
MAX_ID = 2**31 - 1
EGRESS_KEYS = ("open", "endpoints", "api_server")
PRIORITY_ROLES = ("control", "executor")
# Ports the API server commonly answers on, when the profile does not say where it is.
API_SERVER_PORTS = (443, 6443)
PROFILE_FIELDS = ("uid", "gid", "scratch", "scratch_volume", "egress", "cluster_objects",
                  "priority_classes")

Fail = Callable[..., NoReturn]


def parse_endpoint(text: Any, where: str, fail: Fail) -> dict[str, Any]:
    """``CIDR`` or ``CIDR:PORT[,PORT...]`` (e.g. ``10.20.0.0/16:2049``) as cidr and ports."""
    forms = "use CIDR[:PORT[,PORT]], e.g. 10.20.0.0/16:2049 or 192.0.2.10/32:443,9000"
    if not isinstance(text, str) or "/" not in text:
        fail(f"{where} '{text}' is not CIDR[:PORTS]", hint=forms)
    network, slash, rest = text.partition("/")
    prefix, colon, ports_text = rest.partition(":")
    try:
        import ipaddress  # here: only a profile with egress rules needs it

        cidr = str(ipaddress.ip_network(f"{network}{slash}{prefix}", strict=False))
    except ValueError:
        fail(f"{where} '{text}' has no valid network address", hint=forms)
    ports: list[int] = []
    for item in ports_text.split(",") if colon else []:
        if not item.isdigit() or not 1 <= int(item) <= 65535:
            fail(f"{where} '{text}': port '{item}' is not 1-65535", hint=forms)
        ports.append(int(item))
    return {"cidr": cidr, "ports": ports}


def _id(raw: dict[str, Any], key: str, fail: Fail) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        fail(f"{key} '{value}' is not a non-root numeric ID (1 to {MAX_ID})",
             hint=f"e.g. {key}: 1000, or your site's high ID such as 100000")
    return value


def _bool(raw: dict[str, Any], key: str, fail: Fail) -> bool | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, bool):
        fail(f"{key} must be true or false, not '{value}'")
    return value


def _egress(raw: dict[str, Any], fail: Fail) -> dict[str, Any]:
    value = raw.get("egress")
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail("egress must be a mapping", hint="e.g. egress: {endpoints: {bulk: "
             "[10.20.0.0/16:2049]}, api_server: [10.96.0.1/32:443]} or egress: {open: true}")
    for key in value:
        if key not in EGRESS_KEYS:
            fail(f"egress: unknown key '{key}'", hint=f"known keys: {', '.join(EGRESS_KEYS)}")
    out: dict[str, Any] = {}
    if value.get("open") is not None:
        out["open"] = _bool(value, "open", fail)
    endpoints = value.get("endpoints") or {}
    if not isinstance(endpoints, dict):
        fail("egress.endpoints must map a name to a list of CIDR[:PORTS]",
             hint="e.g. endpoints: {bulk: [10.20.0.0/16:2049], datalake: [192.0.2.10/32:443]}")
    checked: dict[str, list[str]] = {}
    for name, items in endpoints.items():
        items = [items] if isinstance(items, str) else items
        if not isinstance(items, list) or not items:
            fail(f"egress.endpoints.{name} must be a list of CIDR[:PORTS]")
        for item in items:
            parse_endpoint(item, f"egress.endpoints.{name}", fail)
        checked[str(name)] = [str(i) for i in items]
    if checked:
        out["endpoints"] = checked
    api = value.get("api_server") or []
    api = [api] if isinstance(api, str) else api
    if not isinstance(api, list):
        fail("egress.api_server must be a list of CIDR[:PORTS]", hint="e.g. [10.96.0.1/32:443]")
    for item in api:
        parse_endpoint(item, "egress.api_server", fail)
    if api:
        out["api_server"] = [str(i) for i in api]
    return out


def _priority_classes(raw: dict[str, Any], fail: Fail) -> dict[str, str]:
    value = raw.get("priority_classes")
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail("priority_classes must map a role to an existing PriorityClass",
             hint="e.g. priority_classes: {control: high-priority, executor: batch-low}")
    out = {}
    for role, name in value.items():
        if role not in PRIORITY_ROLES:
            fail(f"priority_classes: unknown role '{role}'",
                 hint=f"roles: {', '.join(PRIORITY_ROLES)}")
        if not isinstance(name, str) or not DNS_SUBDOMAIN.fullmatch(name):
            fail(f"priority_classes.{role} '{name}' is not a PriorityClass name",
                 hint="a lowercase DNS name, e.g. high-priority")
        out[role] = name
    return out


def profile_fields(raw: dict[str, Any], fail: Fail) -> dict[str, Any]:
    """This module's profile keys, checked; ``fail(message, hint=...)`` reports a problem."""
    from mmerep.errors import UsageError
    from mmerep.quantity import parse_memory

    scratch = raw.get("scratch")
    if scratch not in (None, ""):
        try:
            parse_memory(str(scratch), "scratch")
        except UsageError as exc:
            fail(exc.message, hint=exc.hint)
    return {
        "uid": _id(raw, "uid", fail), "gid": _id(raw, "gid", fail),
        "scratch": str(scratch) if scratch not in (None, "") else None,
        "scratch_volume": _bool(raw, "scratch_volume", fail),
        "egress": _egress(raw, fail),
        "cluster_objects": _bool(raw, "cluster_objects", fail),
        "priority_classes": _priority_classes(raw, fail),
    }


def _fail_usage(message: str, hint: str | None = None) -> NoReturn:
    from mmerep.errors import UsageError

    raise UsageError(message, hint)


def priority_class_names(profile: Profile, env_name: str) -> dict[str, str | None]:
    """The class each role runs with: ours (made per environment), the site's, or none."""
    if profile.cluster_objects:
        return {role: f"mmerep-{profile.namespace}-{env_name}-{role}" for role in PRIORITY_ROLES}
    return {role: profile.priority_classes.get(role) for role in PRIORITY_ROLES}


def egress_rule(endpoint: dict[str, Any]) -> dict[str, Any]:
    """One NetworkPolicy egress rule: to the CIDR (anywhere when None), on its TCP ports
    (every port when none is named)."""
    rule: dict[str, Any] = {}
    if endpoint.get("cidr"):
        rule["to"] = [{"ipBlock": {"cidr": endpoint["cidr"]}}]
    if endpoint.get("ports"):
        rule["ports"] = [{"port": p, "protocol": "TCP"} for p in endpoint["ports"]]
    return rule


def policy_context(profile: Profile, env_name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Template context from the profile: identity, scratch, egress rules, priorities."""
    uid = profile.uid or STANDARD_UID
    gid = profile.gid or uid
    scratch_class = profile.storage_classes.get("local-ssd")
    if profile.scratch_volume is False:
        scratch_class = None
    egress = profile.egress
    endpoints = [{"name": name, **parse_endpoint(item, name, _fail_usage)}
                 for name, items in sorted((egress.get("endpoints") or {}).items())
                 for item in items]
    api = [parse_endpoint(item, "api_server", _fail_usage)
           for item in egress.get("api_server") or []]
    if not api:  # address unknown: the API server's usual ports, anywhere
        api = [{"cidr": None, "ports": list(API_SERVER_PORTS)}]
    return {
        "uid": uid, "gid": gid,
        "scratch": values.get("scratch") or profile.scratch or DEFAULT_SCRATCH,
        "scratch_class": scratch_class,
        "egress": {"open": bool(egress.get("open")), "endpoints": endpoints,
                   "endpoint_rules": [egress_rule(e) for e in endpoints],
                   "api_rules": [egress_rule(a) for a in api]},
        "priority": {"create": bool(profile.cluster_objects),
                     **priority_class_names(profile, env_name)},
    }


# -- reading pods back -----------------------------------------------------------------------

def pod_started(pod: dict[str, Any]) -> bool:
    """Every container running and past its start-up probe (``started``)."""
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    if status.get("phase") != "Running" or not containers:
        return False
    return all(c.get("started", "running" in (c.get("state") or {})) for c in containers)


def pod_serving(pod: dict[str, Any]) -> bool:
    """Ready: every readiness probe passes, so the Service sends it traffic."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def stopped_by_kubernetes(pod: dict[str, Any]) -> dict[str, str] | None:
    """An evicted (or otherwise failed) pod's reason and message, as the kubelet wrote them."""
    status = pod.get("status") or {}
    if status.get("phase") != "Failed":
        return None
    reason = status.get("reason") or ""
    message = status.get("message") or ""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            reason = reason or cond.get("reason", "")
            message = message or cond.get("message", "")
    return {"pod": pod["metadata"]["name"], "reason": reason or "Failed", "message": message}


def pod_health(pods: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of started and serving pods, and the pods Kubernetes stopped, with why."""
    live = [p for p in pods if (p.get("status") or {}).get("phase") != "Failed"
            and not p["metadata"].get("deletionTimestamp")]
    stopped = [s for s in (stopped_by_kubernetes(p) for p in pods) if s]
    return {"started": sum(1 for p in live if pod_started(p)),
            "serving": sum(1 for p in live if pod_serving(p)), "stopped": stopped}
