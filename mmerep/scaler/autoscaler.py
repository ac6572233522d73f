"""The autoscaler ("Daemon"): every interval, queue and pool in, a replica count out.

It runs as a sidecar of the scheduler pod and acts only while the state ConfigMap says
``on``. Scale-down drains the chosen idle executors, marks exactly those pods with a low
``controller.kubernetes.io/pod-deletion-cost`` (the ReplicaSet controller then deletes
them and no other), and only then lowers the replica count.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from mmerep import envlock
from mmerep.condor import ExecutorSlots, Pool, QueueSummary
from mmerep.errors import EnvironmentBusy, MmerepError
from mmerep.loops import every
from mmerep.quantity import parse_cpu, parse_memory
from mmerep.scaler import state as st
from mmerep.scaler.executors import executor_deployment
from mmerep.scaler.policy import Bounds, Decision, ExecutorPod, Observation, decide

log = logging.getLogger(__name__)

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
MARKED_COST = "-1000"
DEFAULT_MAXIMUM = 50  # when neither the daemon nor the profile sets one


class Metrics:
    """The autoscaler's metrics, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.idle = Gauge("mmerep_scaler_idle_jobs", "Idle jobs in the queue", registry=r)
        self.running = Gauge("mmerep_scaler_running_jobs", "Running jobs", registry=r)
        self.desired = Gauge("mmerep_scaler_executors_desired",
                             "Executors wanted: what the queue needs within bounds while the "
                             "autoscaler is on, the Deployment's replicas while it is off",
                             registry=r)
        self.current = Gauge("mmerep_scaler_executors_current",
                             "The executor Deployment's replicas", registry=r)
        self.ready = Gauge("mmerep_scaler_executors_ready", "Executor pods ready",
                           registry=r)
        self.busy = Gauge("mmerep_scaler_executors_busy", "Executors with a claimed slot",
                          registry=r)
        self.decisions = Counter("mmerep_scaler_decisions", "Decisions by reason",
                                 ["reason"], registry=r)
        self.errors = Counter("mmerep_scaler_errors", "Intervals that failed", ["kind"],
                              registry=r)


def pod_view(pod: dict[str, Any]) -> ExecutorPod:
    conditions = pod.get("status", {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ExecutorPod(pod["metadata"]["name"], pod.get("status", {}).get("phase", "Pending"),
                       pod.get("spec", {}).get("nodeName"), ready,
                       pod["metadata"].get("labels", {}).get("pod-template-hash", ""))


def ready_replicas(deployment: dict[str, Any]) -> int:
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)


@dataclass
class Autoscaler:
    kube: Any
    namespace: str
    env_name: str
    pool: Pool
    interval: float = 15.0
    step: int = 20
    cooldown: float = 300.0
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], float] = time.time
    stop: threading.Event = field(default_factory=threading.Event)
    on_decision: Callable[[Decision], None] | None = None

    def bounds(self, state: st.ScalerState) -> Bounds:
        top = state.limits.max_executors
        maximum = state.maximum if state.maximum is not None else (top or DEFAULT_MAXIMUM)
        if top is not None:
            maximum = min(maximum, top)
        minimum = min(state.minimum or 0, maximum)
        return Bounds(minimum, maximum, self.step, self.cooldown)

    def run_once(self) -> Decision | None:
        """One interval; None while the daemon is off."""
        state = st.read_state(self.kube, self.namespace, self.env_name)
        if not state.daemon:
            self._export_while_off()
            return None
        now = self.clock()
        deployment, pods, queue, mine = self._look()
        replicas = int(deployment["spec"].get("replicas", 0))
        requests = deployment["spec"]["template"]["spec"]["containers"][0].get(
            "resources", {}).get("requests", {})
        obs = Observation(queue, mine, tuple(pod_view(p) for p in pods), replicas,
                          parse_cpu(requests.get("cpu", "1")),
                          parse_memory(requests.get("memory", "1Gi")) // (1024 * 1024))
        decision = decide(obs, self.bounds(state), state.policy, now)
        if decision.remove:
            self._mark(pods, set(decision.remove), {e.name for e in mine})
        self.metrics.ready.set(ready_replicas(deployment))
        if decision.replicas != replicas:
            try:  # never while a deploy, rollback or manual scale holds the environment
                with envlock.hold(self.kube, self.namespace, self.env_name,
                                  f"autoscale to {decision.replicas}"):
                    self.kube.scale("Deployment", st.executor_name(self.env_name),
                                    decision.replicas, self.namespace,
                                    field_manager=st.LOOP_FIELD_MANAGER)
            except EnvironmentBusy as busy:
                log.info("not scaling to %d now: %s; trying again next interval",
                         decision.replicas, busy)
                return decision
        self._report(state, obs, decision, now)
        return decision

    def _look(self) -> tuple[dict[str, Any], list[dict[str, Any]], QueueSummary,
                             tuple[ExecutorSlots, ...]]:
        """The executor Deployment, its live pods, the queue, and the pool's executors
        that are its pods: all read, nothing written."""
        deployment = executor_deployment(self.kube, self.namespace, self.env_name)
        pods = [p for p in self.kube.list_objects(
            "v1", "Pod", self.namespace, label_selector=st.executor_selector(self.env_name))
            if not p["metadata"].get("deletionTimestamp")]
        queue, executors = self.pool.queue(), self.pool.executors()
        names = {p["metadata"]["name"] for p in pods}
        return deployment, pods, queue, tuple(e for e in executors if e.name in names)

    def _export_while_off(self) -> None:
        """Off means off: nothing is decided or written. The gauges still say what is
        there (the console and the dashboard plot the executors whether or not the daemon
        acts): desired and current are the Deployment's replicas."""
        try:
            deployment, _, queue, mine = self._look()
        except MmerepError as exc:
            self.metrics.errors.labels(type(exc).__name__).inc()
            log.debug("daemon off; executors not read: %s", exc)
            return
        replicas = int(deployment["spec"].get("replicas", 0))
        m = self.metrics
        m.idle.set(queue.idle_jobs)
        m.running.set(queue.running)
        m.desired.set(replicas)
        m.current.set(replicas)
        m.ready.set(ready_replicas(deployment))
        m.busy.set(sum(1 for e in mine if e.busy))

    def _mark(self, pods: list[dict[str, Any]], remove: set[str], registered: set[str]) -> None:
        for name in sorted(remove & registered):
            self.pool.drain(name)  # no new job lands on it from now on
        for pod in pods:
            name = pod["metadata"]["name"]
            marked = (pod["metadata"].get("annotations") or {}).get(DELETION_COST)
            wanted = MARKED_COST if name in remove else None
            if marked != wanted:  # an old mark on a pod that stays would mislead the controller
                self.kube.patch("v1", "Pod", name, {"metadata": {"annotations": {
                    DELETION_COST: wanted}}}, self.namespace,
                    field_manager=st.LOOP_FIELD_MANAGER)

    def _report(self, state: st.ScalerState, obs: Observation, decision: Decision,
                now: float) -> None:
        kind = decision.reason.split(":", 1)[0]
        busy = sum(1 for e in obs.executors if e.busy)
        m = self.metrics
        m.idle.set(obs.queue.idle_jobs)
        m.running.set(obs.queue.running)
        m.desired.set(decision.wanted)
        m.current.set(decision.replicas)
        m.busy.set(busy)
        m.decisions.labels(kind).inc()
        log.info("decision %s: replicas %d -> %d%s; %s", kind, obs.replicas, decision.replicas,
                 f", removing {', '.join(decision.remove)}" if decision.remove else "",
                 decision.reason)
        decisions = state.decisions
        if decision.replicas != obs.replicas or not decisions or \
                decisions[-1].get("reason") != decision.reason:
            decisions = [*decisions, {"time": round(now, 3), "from": obs.replicas,
                                      "to": decision.replicas, "reason": decision.reason,
                                      "removed": list(decision.remove)}]
        observed = {"time": round(now, 3), "idle_jobs": obs.queue.idle_jobs,
                    "running_jobs": obs.queue.running, "executors": len(obs.executors),
                    "busy": busy, "replicas": decision.replicas, "wanted": decision.wanted}
        st.save_progress(self.kube, self.namespace, self.env_name,
                         replace(state, policy=decision.state, decisions=decisions,
                                 observed=observed))
        if self.on_decision:
            self.on_decision(decision)

    def run(self) -> None:
        """Intervals at a fixed rate until ``stop`` is set; a failing interval is logged,
        counted and retried on the next one."""
        def failed(exc: MmerepError) -> None:
            self.metrics.errors.labels(type(exc).__name__).inc()
            log.error("interval failed: %s", exc)

        every(self.interval, self.stop, self.run_once, failed)
