"""An environment's executors: status, ``scale`` and ``vscale``, through the gateway.

One implementation for both ways in: the operator's shell (a profile's kubeconfig) and
``/configs/scaler.sh`` in the scheduler pod (the pod's service account). Input is
validated against the profile's limits before anything changes.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmerep.errors import MmerepError, UsageError
from mmerep.scaler.state import (
    FIELD_MANAGER,
    Limits,
    ScalerState,
    executor_name,
    executor_selector,
    read_state,
    save_settings,
)

if TYPE_CHECKING:
    from mmerep.condor import Pool

Obj = dict[str, Any]
WHOLE = re.compile(r"[0-9]+")
EXIT_PENDING = 3  # scale ended with executors still Pending


@dataclass(frozen=True)
class Resources:
    """Requests and limits as the user wrote them ("" = none)."""

    cpu: str
    memory: str
    cpu_limit: str = ""
    memory_limit: str = ""


@dataclass
class Status:
    env_name: str
    namespace: str
    daemon: bool
    minimum: int | None
    maximum: int | None
    cluster_size: int | None  # executors registered in the pool
    busy: int | None
    pool_note: str  # why the pool could not be read
    environment_size: int  # the Deployment's replicas
    running: int | None  # executor pods (None: not read, the lines do not show them)
    pending: int | None
    resources: Resources
    decisions: list[dict[str, Any]] = field(default_factory=list)
    observed: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The lines users have in their notes and scripts, word for word."""
        size = (f"{self.cluster_size} ({self.busy} busy nodes)" if self.cluster_size is not None
                else f"unknown ({self.pool_note})")
        r = self.resources
        return [f"Daemon is: {'on' if self.daemon else 'off'}",
                f"Cluster size: {size}",
                f"Environment size: {self.environment_size}",
                "Nodes are set for:",
                f'    Requests: "{r.cpu}" CPU / "{r.memory}" RAM',
                f'    Max: "{r.cpu_limit}" CPU / "{r.memory_limit}" RAM']


@dataclass(frozen=True)
class ScaleProgress:
    desired: int
    current: int  # pods the Deployment has
    ready: int


@dataclass(frozen=True)
class ScaleResult:
    before: int
    after: int
    running: int
    pending: int
    reason: str  # the scheduler's reason for the Pending ones
    seconds: float

    @property
    def complete(self) -> bool:
        return self.pending == 0 and self.running == self.after


# -- validation (before anything is touched) --------------------------------------------

def parse_count(text: str, limits: Limits) -> int:
    if not WHOLE.fullmatch(text.strip()):
        raise UsageError(f"executor count '{text}' is not a whole number",
                         hint="e.g. scale 310")
    count = int(text)
    if limits.max_executors is not None and count > limits.max_executors:
        raise UsageError(f"{count} executors exceed the profile's limit of "
                         f"{limits.max_executors}", hint="scale to fewer, or raise "
                         "max_executors in the profile and deploy again")
    return count


def parse_resources(cpu: str, memory: str, cpu_limit: str = "", memory_limit: str = "", *,
                    limits: Limits | None = None) -> Resources:
    from mmerep.quantity import parse_cpu, parse_memory

    limits = limits or Limits()
    cores = parse_cpu(cpu, "CPU")
    if cores <= 0:
        raise UsageError(f"CPU '{cpu}' must be more than 0", hint="e.g. vscale 2 8G")
    size = parse_memory(memory, "memory")
    if size <= 0:
        raise UsageError(f"memory '{memory}' must be more than 0", hint="e.g. vscale 2 8G")
    if cpu_limit and parse_cpu(cpu_limit, "CPU limit") < cores:
        raise UsageError(f"CPU limit '{cpu_limit}' is below the request '{cpu}'",
                         hint="raise the limit or leave it out")
    if memory_limit and parse_memory(memory_limit, "memory limit") < size:
        raise UsageError(f"memory limit '{memory_limit}' is below the request '{memory}'",
                         hint="raise the limit or leave it out")
    for value, name, top, parse in ((cpu_limit or cpu, "CPU", limits.max_cpu, parse_cpu),
                                    (memory_limit or memory, "memory", limits.max_memory,
                                     parse_memory)):
        if top and parse(value, name) > parse(top, name):
            raise UsageError(f"{name} '{value}' exceeds the profile's maximum of {top}",
                             hint=f"ask for at most {top}")
    return Resources(cpu.strip(), memory.strip(), cpu_limit.strip(), memory_limit.strip())


# -- reading -----------------------------------------------------------------------------

def executor_deployment(kube: Any, namespace: str, env_name: str) -> Obj:
    live = kube.get("apps/v1", "Deployment", executor_name(env_name), namespace)
    if live is None:
        raise UsageError(f"environment {env_name} has no executors in namespace {namespace}",
                         hint="mme-rep env list shows what is deployed (an htcondor-batch "
                         "environment has them)")
    return dict(live)


def container_resources(deployment: Obj) -> Resources:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    res = container.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    return Resources(str(req.get("cpu", "")), str(req.get("memory", "")),
                     str(lim.get("cpu", "")), str(lim.get("memory", "")))


def pod_counts(pods: list[Obj]) -> tuple[int, int, str]:
    """Running and Pending pods (not those being deleted), and why the Pending ones wait."""
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    running = sum(1 for p in live if p.get("status", {}).get("phase") == "Running")
    pending = [p for p in live if p.get("status", {}).get("phase", "Pending") == "Pending"]
    reason = ""
    for pod in pending:
        for cond in pod.get("status", {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                reason = str(cond.get("message") or cond.get("reason") or "")
                break
        if reason:
            break
    return running, len(pending), reason


def read_pool(pool: Pool) -> tuple[int | None, int | None, str]:
    from mmerep.condor import pool_size

    return pool_size(pool)


def ask_pool(pool: Pool) -> Any:
    """The pool's size, asked from now on beside the caller's work (``result()`` gives
    what ``read_pool`` returns). A pool that says it costs CPU to ask (the HTCondor
    bindings: ~40 ms to import) is asked from a forked child, on another core: in a
    thread its import held the interpreter and the API reads waited for it."""
    from mmerep.background import Background

    return Background(lambda: read_pool(pool), fork=getattr(pool, "ask_in_child", False))


def status(kube: Any, namespace: str, env_name: str, pool: Pool | None, *,
           asking: Any = None, pods: bool = True) -> Status:
    """The status; the pool is asked while the API is read (or was already, ``asking``:
    a ``Background`` whose result is what ``read_pool`` returns). Without ``pods`` the
    executor pods are not listed (running and pending are None): the lines users read
    do not show them, so ``scaler.sh`` reads the two objects ``kubectl get`` would."""
    if asking is None:
        assert pool is not None, "status needs the pool or its answer on the way"
        asking = ask_pool(pool)
    running: int | None = None
    pending: int | None = None
    with asking:
        deployment = executor_deployment(kube, namespace, env_name)
        state = read_state(kube, namespace, env_name)
        if pods:
            running, pending, _ = pod_counts(kube.list_objects(
                "v1", "Pod", namespace, label_selector=executor_selector(env_name)))
        try:
            size, busy, note = asking.result()
        except MmerepError as exc:  # e.g. the child that asked died: the rest still shows
            size, busy, note = None, None, exc.message
    return Status(env_name, namespace, state.daemon, state.minimum, state.maximum, size, busy,
                  note, int(deployment["spec"].get("replicas", 0)), running, pending,
                  container_resources(deployment), state.decisions[-5:], state.observed)


def limits_for(kube: Any, namespace: str, env_name: str, profile: Any | None) -> Limits:
    """The profile's limits: from the profile in the operator's shell, else as the deploy
    recorded them in the state ConfigMap."""
    if profile is not None:
        return Limits(profile.max_executors, profile.max_cpu, profile.max_memory)
    state: ScalerState = read_state(kube, namespace, env_name)
    return state.limits


# -- scale -------------------------------------------------------------------------------

def scale(kube: Any, namespace: str, env_name: str, replicas: int, *,
          on_progress: Callable[[ScaleProgress], None] | None = None, stall: float = 30.0,
          field_manager: str = FIELD_MANAGER, lock_wait: float = 30.0) -> ScaleResult:
    """Set the executor count, then follow it until every executor is Running or nothing
    has moved for ``stall`` seconds.

    The count is set under the environment's lease (a deploy keeps the live count, and
    one that read it just before this change would put the old one back); the follow
    is not, so other commands need not wait for the executors to start."""
    from mmerep import envlock

    started = time.monotonic()
    name = executor_name(env_name)
    with envlock.hold(kube, namespace, env_name, f"scale to {replicas}", wait=lock_wait):
        before = int(kube.get_scale("Deployment", name, namespace)["spec"].get("replicas", 0))
        kube.scale("Deployment", name, replicas, namespace, field_manager=field_manager)
    follow(kube, namespace, env_name, replicas, on_progress=on_progress, stall=stall)
    pods = kube.list_objects("v1", "Pod", namespace, label_selector=executor_selector(env_name))
    running, pending, reason = pod_counts(pods)
    return ScaleResult(before, replicas, running, pending, reason, time.monotonic() - started)


def follow(kube: Any, namespace: str, env_name: str, replicas: int, *,
           on_progress: Callable[[ScaleProgress], None] | None = None,
           stall: float = 30.0) -> ScaleProgress:
    """Poll the Deployment (fast at first) until it has ``replicas`` ready pods and no
    others, or its counts stop changing for ``stall`` seconds."""
    last: tuple[int, int] | None = None
    moved = time.monotonic()
    pause = 0.02
    while True:
        live = kube.get("apps/v1", "Deployment", executor_name(env_name), namespace) or {}
        st = live.get("status", {})
        progress = ScaleProgress(replicas, int(st.get("replicas", 0)),
                                 int(st.get("readyReplicas", 0)))
        if on_progress:
            on_progress(progress)
        observed = st.get("observedGeneration", 0) >= live.get("metadata", {}).get(
            "generation", 0)
        if observed and progress.ready == replicas and progress.current == replicas:
            return progress
        now = time.monotonic()
        if (progress.current, progress.ready) != last:
            last, moved = (progress.current, progress.ready), now
        elif now - moved >= stall:
            return progress
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25)


# -- vscale ------------------------------------------------------------------------------

def with_resources(deployment: Obj, res: Resources) -> Obj:
    """The executor Deployment (as rendered) with new requests and limits (pure)."""
    out = copy.deepcopy(deployment)
    container = out["spec"]["template"]["spec"]["containers"][0]
    resources = container.setdefault("resources", {})
    # Only CPU and memory: other resources (ephemeral storage, ...) stay as rendered.
    resources["requests"] = {**resources.get("requests", {}), "cpu": res.cpu,
                             "memory": res.memory}
    limits = {k: v for k, v in resources.get("limits", {}).items() if k not in ("cpu", "memory")}
    limits.update({k: v for k, v in (("cpu", res.cpu_limit), ("memory", res.memory_limit)) if v})
    resources.pop("limits", None)
    if limits:
        resources["limits"] = limits
    return out


def vscale(kube: Any, namespace: str, env_name: str, res: Resources, *,
           on_progress: Callable[[list[Any]], None] | None = None,
           timeout: float = 3600.0) -> int:
    """Roll the executors to new requests/limits as a new revision; returns its number.

    The Deployment adds executors before it removes any (``maxUnavailable: 0``), and each
    removed one drains in its preStop hook, so running jobs are not killed.
    """
    from mmerep import environments

    executor_deployment(kube, namespace, env_name)  # a clear error when there is none
    params = {"executor_cpu": res.cpu, "executor_memory": res.memory,
              "executor_cpu_limit": res.cpu_limit or None,
              "executor_memory_limit": res.memory_limit or None}
    note = (f"vscale {res.cpu}/{res.memory}"
            + (f" limits {res.cpu_limit}/{res.memory_limit}" if res.cpu_limit or
               res.memory_limit else ""))
    return int(environments.record_workload_change(
        kube, namespace, env_name, "Deployment", executor_name(env_name),
        lambda obj: with_resources(obj, res), params, note, timeout=timeout,
        on_progress=on_progress))


# -- the autoscaler's switch -------------------------------------------------------------

def set_daemon(kube: Any, namespace: str, env_name: str, on: bool, minimum: int | None,
               maximum: int | None, limits: Limits) -> ScalerState:
    """``scaler daemon on|off [--min N] [--max N]`` (the CLI and the console): bounds
    checked against the profile's limit and each other, then saved; returns the state."""
    executor_deployment(kube, namespace, env_name)
    state = read_state(kube, namespace, env_name)
    top = limits.max_executors
    for value, flag in ((minimum, "--min"), (maximum, "--max")):
        if value is not None and value < 0:
            raise UsageError(f"{flag} {value} is below 0")
        if value is not None and top is not None and value > top:
            raise UsageError(f"{flag} {value} exceeds the profile's limit of {top} executors")
    state.daemon = on
    state.minimum = minimum if minimum is not None else state.minimum
    state.maximum = maximum if maximum is not None else state.maximum
    if state.minimum is not None and state.maximum is not None and state.minimum > state.maximum:
        raise UsageError(f"--min {state.minimum} is above --max {state.maximum}")
    save_settings(kube, namespace, env_name, state)
    return state
