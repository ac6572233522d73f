"""Each member's free capacity: allocatable minus requested CPU and memory, on the nodes
an environment may use (its profile's node selector and tolerations).

``free_capacity`` is pure (nodes and pods as the API server returns them); ``read_member``
reads them through the gateway. Pods that are not bound to a node yet, and pods that
have finished, request nothing here; DaemonSets' future pods are not foreseen.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from typing import Any

from mmerep.errors import MmerepError
from mmerep.profiles import Profile
from mmerep.quantity import parse_cpu, parse_memory

Obj = dict[str, Any]
BLOCKING = ("NoSchedule", "NoExecute")


@dataclass
class Capacity:
    """Free CPU (cores) and memory (bytes) over the nodes an environment may use."""

    member: str
    nodes: int = 0
    allocatable_cpu: float = 0.0
    allocatable_memory: int = 0
    requested_cpu: float = 0.0
    requested_memory: int = 0
    down: str | None = None
    excluded: dict[str, str] = field(default_factory=dict)  # node -> why not counted

    @property
    def free_cpu(self) -> float:
        return self.allocatable_cpu - self.requested_cpu

    @property
    def free_memory(self) -> int:
        return self.allocatable_memory - self.requested_memory


def tolerated(taint: Obj, tolerations: list[Obj]) -> bool:
    """Whether one of ``tolerations`` tolerates ``taint`` (the scheduler's rule)."""
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator", "Equal") == "Exists":
            if not t.get("key") or t["key"] == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def node_refusal(node: Obj, node_selector: dict[str, str], tolerations: list[Obj]) -> str | None:
    """Why an environment's pods cannot go to ``node``; None when they can."""
    labels = node.get("metadata", {}).get("labels") or {}
    spec = node.get("spec") or {}
    missing = [f"{k}={v}" for k, v in node_selector.items() if labels.get(k) != v]
    if missing:
        return f"no label {', '.join(missing)}"
    if spec.get("unschedulable"):
        return "cordoned"
    for taint in spec.get("taints") or []:
        if taint.get("effect") in BLOCKING and not tolerated(taint, tolerations):
            return f"taint {taint.get('key')}:{taint.get('effect')} not tolerated"
    conditions = (node.get("status") or {}).get("conditions") or []
    if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
        return "not Ready"
    return None


def pod_requests(pod: Obj) -> tuple[float, int]:
    """A pod's effective CPU and memory requests, as the scheduler counts them: the sum of
    its containers', or its largest init container's when that is more."""
    spec = pod.get("spec") or {}

    def of(container: Obj) -> tuple[float, int]:
        req = (container.get("resources") or {}).get("requests") or {}
        return parse_cpu(req.get("cpu", 0)), parse_memory(req.get("memory", 0))

    main = [of(c) for c in spec.get("containers") or []]
    init = [of(c) for c in spec.get("initContainers") or []]
    cpu = max([sum(c for c, _ in main), *(c for c, _ in init)])
    memory = max([sum(m for _, m in main), *(m for _, m in init)])
    return cpu, memory


def free_capacity(member: str, nodes: list[Obj], pods: list[Obj],
                  node_selector: dict[str, str], tolerations: list[Obj]) -> Capacity:
    """Allocatable minus requested over the nodes the selector and tolerations allow."""
    cap = Capacity(member)
    allowed = set()
    for node in nodes:
        name = node["metadata"]["name"]
        why = node_refusal(node, node_selector, tolerations)
        if why:
            cap.excluded[name] = why
            continue
        allowed.add(name)
        alloc = (node.get("status") or {}).get("allocatable") or {}
        cap.allocatable_cpu += parse_cpu(alloc.get("cpu", 0))
        cap.allocatable_memory += parse_memory(alloc.get("memory", 0))
    cap.nodes = len(allowed)
    for pod in pods:
        if (pod.get("spec") or {}).get("nodeName") not in allowed:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        cpu, memory = pod_requests(pod)
        cap.requested_cpu += cpu
        cap.requested_memory += memory
    return cap


def connect(profile: Profile, fast: bool = True) -> Any:
    """A gateway connection to the member's cluster; ``fast`` gives up on a member that
    is down after a few seconds instead of the gateway's usual minute of retries."""
    from mmerep.kube import Kube, RetryPolicy

    kw: dict[str, Any] = {"namespace": profile.namespace}
    if fast:
        kw.update(retry=RetryPolicy(attempts=2, initial=0.2, maximum=0.5),
                  request_timeout=10.0)
    return Kube.from_kubeconfig(profile.kubeconfig, profile.context, **kw)


def read_member(profile: Profile) -> Capacity:
    """The member's free capacity, read live; ``down`` says why when it cannot be read."""
    try:
        kube = connect(profile)
        nodes = kube.list_objects("v1", "Node")
        pods = kube.list_objects("v1", "Pod", all_namespaces=True,
                                 field_selector="status.phase!=Succeeded,"
                                 "status.phase!=Failed")
    except MmerepError as exc:
        return Capacity(profile.name, down=exc.message)
    return free_capacity(profile.name, nodes, pods, profile.node_selector, profile.tolerations)


def read_members(profiles: list[Profile]) -> list[Capacity]:
    """Every member's capacity, read in parallel, in the members' order."""
    if len(profiles) == 1:
        return [read_member(profiles[0])]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(profiles))) as pool:
        return list(pool.map(read_member, profiles))
