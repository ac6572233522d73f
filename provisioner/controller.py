"""The controller: one active instance (a Lease decides) turns claims whose node the
scheduler chose into reservations and PersistentVolumes, frees space when volumes go,
publishes what each node can still give, and moves claims off lost nodes.

Everything it knows is rebuilt from the API at start (ledgers, PVs, claims), so it can be
killed at any point: a reservation without its PV is completed or released, a PV
created twice is the same PV (``pvc-<claim uid>``), and a ledger write carries the
resourceVersion it read, so no stale writer ever gives the same bytes twice.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import queue
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from mmerep.errors import KubeConflict, KubeError, KubeNotFound
from mmerep.kube import Kube
from provisioner import DEFAULT_NAME
from provisioner import objects as o
from provisioner.ledger import Lost, NodeLedger, Reservation, fit_ahead, plan, refill_ahead
from provisioner.metrics import ControllerMetrics
from provisioner.store import Lease, Report, Store, now_iso, parse_time, report_from_configmap

log = logging.getLogger(__name__)
Obj = dict[str, Any]
COMPONENT = "local-ssd-provisioner"


@dataclass
class Settings:
    namespace: str = "mmerep-provisioner"
    name: str = DEFAULT_NAME
    identity: str = ""
    lease_duration: float = 15.0
    node_grace: float = 300.0  # NotReady this long counts as lost
    agent_stale: float = 120.0  # an agent report older than this: no new volumes there
    # The periodic reconcile (a listing of every PV and ledger) waits while claims are
    # still being placed, up to one more period: it held the interpreter for a third of a
    # second with 1,000 PVs, in the middle of a burst.
    resync: float = 30.0
    workers: int = 16
    orphan_age: float = 30.0  # a reservation without PV or pending claim this old is freed
    # Share of each disk the leader sets aside in the ledger for claims to come, so their
    # PVs need no ledger write first (one API write per claim on the way, not two); 0: off.
    reserve_ahead: float = 0.2
    # Reservations made from set-aside bytes are named in the ledger this long after the
    # first of them (sooner when a disk's set-aside bytes run below half): one write for
    # a burst of claims, not one per claim. Their bytes are held (set aside) meanwhile.
    record_delay: float = 1.0


def watch_forever(kube: Kube, api_version: str, kind: str, handle: Callable[[str, Obj], None],
                  stop: threading.Event, *, namespace: str | None = None,
                  label_selector: str | None = None, all_namespaces: bool = False) -> None:
    """List, then watch; on any failure log it and start again (with back-off)."""
    delay = 0.5
    while not stop.is_set():
        try:
            stream: Iterator[Obj] = kube.watch(
                api_version, kind, namespace, label_selector=label_selector, timeout=300,
                all_namespaces=all_namespaces)
            for event in stream:
                if stop.is_set():
                    return
                handle(event["type"], event["object"])
                delay = 0.5
        except KubeError as exc:
            log.warning("watch %s: %s; again in %.1fs", kind, exc, delay)
            stop.wait(delay)
            delay = min(delay * 2, 10)
        except Exception:  # a bug in a handler must not end the watch silently
            log.exception("watch %s failed; again in %.1fs", kind, delay)
            stop.wait(delay)
            delay = min(delay * 2, 10)


def resync_due(now: float, due: float, last_placed: float, period: float) -> bool:
    """Whether the periodic reconcile due at ``due`` runs ``now``: not while claims are
    being placed (one came within the last second), unless it is late by a whole period."""
    return now >= due and (now - last_placed >= 1.0 or now >= due + period)


@dataclass(frozen=True)
class Creation:
    """A claim whose space is reserved, waiting for its PV."""

    node: str
    claim: Obj
    reservation: Reservation
    path: str  # the disk's mount point on the node
    ahead: bool = False  # from set-aside bytes: the ledger does not name it yet
    picked: float = 0.0  # monotonic time the node's worker took the claim


class Controller:
    def __init__(self, kube: Kube, settings: Settings,
                 metrics: ControllerMetrics | None = None) -> None:
        self.kube = kube
        self.s = settings
        self.s.identity = settings.identity or f"{socket.gethostname()}-{os.getpid()}"
        self.metrics = metrics or ControllerMetrics()
        self.store = Store(kube, settings.namespace, settings.name)
        self.lease = Lease(kube, settings.namespace, f"{settings.name}-controller",
                           self.s.identity, settings.lease_duration)
        self.stop = threading.Event()
        self.leading = threading.Event()
        self._lock = threading.RLock()
        # Workers wait on _cv for claims, releases and ledger writes to do; the publisher on
        # _outbox for events and capacity to publish. A new piece of work wakes one worker
        # (notify), not all sixteen and the publisher: each woken thread takes the lock
        # and the interpreter in turn, and a burst of claims paid for that herd.
        self._cv = threading.Condition(self._lock)
        self._outbox = threading.Condition(self._lock)
        self.classes: dict[str, Obj] = {}
        self.reports: dict[str, Report] = {}
        self.pvs: dict[str, Obj] = {}
        self.nodes: dict[str, Obj] = {}
        self._pending: dict[str, dict[str, Obj]] = defaultdict(dict)
        self._releases: dict[str, set[str]] = defaultdict(set)
        self._busy: set[str] = set()
        self._ledgers: dict[str, tuple[NodeLedger, str | None]] = {}
        self._node_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._seen: dict[str, float] = {}
        self._warned: set[tuple[str, str]] = set()
        self._capacity_dirty: set[str] = set()
        self._published: dict[tuple[str, str], tuple[int, int]] = {}
        self._events: list[Obj] = []
        self._lost_done: set[str] = set()
        self._threads: list[threading.Thread] = []
        # PVs are created off the node's worker, so the node's next batch can reserve while
        # they are on the wire, by threads (``_creator``) that keep their connections to
        # the API, opened before the first claim comes.
        self._creations: queue.SimpleQueue[Creation | None] | None = None
        # Claim uids a worker is placing or whose PV is being created: nobody else takes
        # them meanwhile (a copy queued in _pending waits until they leave this set).
        self._inflight: set[str] = set()
        # Nodes with set-aside reservations to name (or bytes to set aside): when.
        self._to_record: dict[str, float] = {}
        self._ahead_at_write: dict[str, dict[str, int]] = {}  # set aside by our last write
        # Set-aside bytes (see Settings.reserve_ahead), per node and disk, not yet used, and
        # the reservations made from them that the ledger does not name yet.
        self._budget: dict[str, dict[str, int]] = {}
        self._unrecorded: dict[str, dict[str, Reservation]] = defaultdict(dict)
        self._renewed_at = 0.0
        self._last_placed = 0.0  # monotonic time a claim last came with its node chosen
        self._led_since = 0.0

    # -- running -------------------------------------------------------------------------

    def run(self) -> None:
        """Wait for the lease, then work until stopped or the lease is lost."""
        log.info("controller %s for %s waiting for lease %s/%s", self.s.identity, self.s.name,
                 self.s.namespace, self.lease.name)
        while not self.stop.is_set() and not self._safe_acquire():
            self.stop.wait(max(0.5, self.s.lease_duration / 4))
        if self.stop.is_set():
            return
        self._renewed_at = self._led_since = time.monotonic()
        self.leading.set()
        self.metrics.leader.set(1)
        log.info("controller %s leads", self.s.identity)
        try:
            self._start()
            next_resync = time.monotonic() + self.s.resync
            while not self.stop.wait(min(1.0, self.s.lease_duration / 3)):
                if self._safe_acquire():
                    self._renewed_at = time.monotonic()
                elif time.monotonic() - self._renewed_at > self.s.lease_duration * 2 / 3:
                    log.error("lost the lease; stopping so another instance can lead")
                    break
                if resync_due(time.monotonic(), next_resync, self._last_placed,
                              self.s.resync):
                    self._guard(self.reconcile)
                    next_resync = time.monotonic() + self.s.resync
        finally:
            self.stop.set()
            self.metrics.leader.set(0)
            with self._cv:
                self._cv.notify_all()
                self._outbox.notify_all()
            if self._creations is not None:
                for _ in range(self.s.workers * 2):
                    self._creations.put(None)
            self.lease.release()

    def _safe_acquire(self) -> bool:
        try:
            return self.lease.try_acquire()
        except KubeError as exc:
            log.warning("lease: %s", exc)
            return False

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("%s failed", getattr(fn, "__name__", fn))

    def _thread(self, target: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        t = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True,
                             name=getattr(target, "__name__", "worker"))
        t.start()
        self._threads.append(t)

    def _watch(self, api_version: str, kind: str, handle: Callable[[str, Obj], None],
               **kwargs: Any) -> None:
        self._thread(watch_forever, self.kube, api_version, kind, handle, self.stop, **kwargs)

    def _start(self) -> None:
        self.kube.apply(o.csi_driver(self.s.name), compare=False)
        selector = f"{o.LABEL_PROVISIONER}={self.s.name}"
        self._watch("storage.k8s.io/v1", "StorageClass", self._on_class)
        self._watch("v1", "ConfigMap", self._on_report, namespace=self.s.namespace,
                    label_selector=self.store.report_selector())
        self._watch("v1", "Node", self._on_node)
        self._watch("v1", "PersistentVolume", self._on_pv, label_selector=selector)
        # Classes, reports, nodes and volumes first: claims are judged against them.
        self._initial_sync()
        self.reconcile()
        # What start-up made (modules, the first listings) lives as long as the process:
        # kept out of the cyclic collector's sight, a full collection no longer stops
        # every thread for tens of ms in the middle of a burst (seen: 45 ms). Reference
        # counting still frees it.
        gc.collect()
        gc.freeze()
        self._creations = queue.SimpleQueue()
        for _ in range(self.s.workers * 2):
            self._thread(self._creator)
        self._watch("v1", "PersistentVolumeClaim", self._on_claim, all_namespaces=True)
        for _ in range(self.s.workers):
            self._thread(self._worker)
        self._thread(self._publisher)

    def _initial_sync(self) -> None:
        for sc in self.kube.list_objects("storage.k8s.io/v1", "StorageClass"):
            self._on_class("ADDED", sc)
        for cm in self.kube.list_objects("v1", "ConfigMap", self.s.namespace,
                                         label_selector=self.store.report_selector()):
            self._on_report("ADDED", cm)
        for node in self.kube.list_objects("v1", "Node"):
            self._on_node("ADDED", node)
        for pv in self.kube.list_objects("v1", "PersistentVolume",
                                         label_selector=f"{o.LABEL_PROVISIONER}={self.s.name}"):
            self._on_pv("ADDED", pv)

    # -- watch handlers ---------------------------------------------------------------------

    def _on_class(self, kind: str, sc: Obj) -> None:
        name = sc["metadata"]["name"]
        with self._lock:
            if kind == "DELETED" or sc.get("provisioner") != self.s.name:
                self.classes.pop(name, None)
            else:
                self.classes[name] = sc

    def _on_report(self, kind: str, cm: Obj) -> None:
        rep = report_from_configmap(cm)
        if rep is None:
            return
        with self._lock:
            if kind == "DELETED":
                self.reports.pop(rep.node, None)
            else:
                self.reports[rep.node] = rep
                if self.s.reserve_ahead > 0 and rep.node not in self._budget:
                    self._record(rep.node, now=True)  # set bytes aside before claims come
            self._capacity_dirty.add(rep.node)
            self._cv.notify()
            self._outbox.notify()

    def _on_node(self, kind: str, node: Obj) -> None:
        name = node["metadata"]["name"]
        with self._lock:
            if kind == "DELETED":
                self.nodes.pop(name, None)
            else:
                back = name in self._lost_done and (
                    name not in self.nodes or self._not_ready_for(node) == 0.0)
                if back:
                    log.warning("node %s is back; its local-ssd volumes were released when it "
                                "was lost (their claims were re-created and may be bound "
                                "elsewhere), so nothing of theirs is reattached: its agent "
                                "wipes their directories as orphans", name)
                    self._lost_done.discard(name)
                self.nodes[name] = node
        if kind == "DELETED" and self.leading.is_set():
            self._thread(self._guarded_node_lost, name, "deleted")

    def _on_pv(self, kind: str, pv: Obj) -> None:
        name = pv["metadata"]["name"]
        node = o.pv_node(pv)
        with self._lock:
            if kind == "DELETED":
                self.pvs.pop(name, None)
                uid = (pv["spec"].get("claimRef") or {}).get("uid")
                if node and uid:
                    self._releases[node].add(uid)
                    self._cv.notify()
            else:
                self.pvs[name] = pv

    def _on_claim(self, kind: str, claim: Obj) -> None:
        meta = claim["metadata"]
        uid = meta["uid"]
        if kind == "DELETED":
            with self._lock:
                self._seen.pop(uid, None)
                for batch in self._pending.values():
                    batch.pop(uid, None)
            return
        spec = claim.get("spec", {})
        with self._lock:
            sc = self.classes.get(spec.get("storageClassName") or "")
        if sc is None or spec.get("volumeName") or meta.get("deletionTimestamp"):
            return
        if (claim.get("status") or {}).get("phase") == "Bound":
            return
        opts, problem = o.class_options(sc)
        if problem is None:
            problem = o.claim_problem(claim, self._largest_disk())
        if problem is None and opts is not None and not opts.wait_for_consumer:
            problem = (f"StorageClass {opts.name} binds Immediately; a node-local volume needs "
                       "volumeBindingMode: WaitForFirstConsumer")
        if problem is not None:
            self.metrics.failures.labels("invalid").inc()
            self._warn_once(claim, "ProvisioningFailed", problem)
            return
        node = (meta.get("annotations") or {}).get(o.ANN_SELECTED_NODE)
        if not node:
            return
        with self._cv:
            self._seen.setdefault(uid, time.monotonic())
            self._last_placed = time.monotonic()
            # The usual case: set-aside bytes fit the claim, so its PV is sent from here
            # (no queue, no ledger write first); the node's worker names it afterwards.
            creation = self._take_one_ahead(node, claim)
            if creation is None:
                self._pending[node][uid] = claim
            else:
                self._record(node)
                pending = self._pending.get(node)
                if pending:
                    pending.pop(uid, None)
            self._cv.notify()
        if creation is not None:
            self._dispatch([creation])

    def _largest_disk(self) -> int | None:
        with self._lock:
            sizes = [d.allocatable for r in self.reports.values() for d in r.disks]
        return max(sizes) if sizes else None

    # -- the work: reserve, create, hand back, release ---------------------------------------

    def _has_work(self, node: str) -> bool:
        pending = self._pending.get(node)
        return bool(self._releases.get(node) or self._to_record.get(
            node, math.inf) <= time.monotonic() or (
            pending and any(u not in self._inflight for u in pending)))

    def _record(self, node: str, now: bool = False) -> None:
        """With the lock held: have a worker write the node's ledger (naming what was taken
        from set-aside bytes) soon, or at once when ``now`` or the bytes run low."""
        budget = self._budget.get(node) or {}
        full = self._ahead_at_write.get(node) or {}
        low = any(left < full.get(disk, 0) / 2 for disk, left in budget.items())
        due = time.monotonic() + (0.0 if now or low else self.s.record_delay)
        self._to_record[node] = min(self._to_record.get(node, math.inf), due)

    def _worker(self) -> None:
        self._connect()
        while not self.stop.is_set():
            with self._cv:
                nodes = dict.fromkeys([*self._pending, *self._releases, *self._to_record])
                node = next((n for n in nodes if n not in self._busy and self._has_work(n)),
                            None)
                if node is None:
                    soonest = min(self._to_record.values(), default=math.inf)
                    self._cv.wait(min(1.0, max(0.01, soonest - time.monotonic())))
                    continue
                pending = self._pending.get(node, {})
                batch = {u: c for u, c in pending.items() if u not in self._inflight}
                for uid in batch:
                    del pending[uid]
                releases = self._releases.pop(node, set())
                if self._to_record.get(node, math.inf) <= time.monotonic():
                    del self._to_record[node]
                self._busy.add(node)
            creations: list[Creation] = []
            try:
                creations = self.process_node(node, batch, releases)
            except Exception:
                log.exception("provisioning on %s failed; retrying", node)
                with self._cv:  # put the work back, after a pause
                    for uid, claim in batch.items():
                        self._pending[node].setdefault(uid, claim)
                    self._releases[node] |= releases
                    self._record(node, now=True)
                self.stop.wait(1.0)
            finally:
                with self._cv:
                    self._busy.discard(node)
                    if self._unrecorded.get(node):
                        self._record(node)
                    self._cv.notify()
            self._dispatch(creations)

    def _ledger(self, node: str, fresh: bool = False) -> tuple[NodeLedger, str | None]:
        cached = None if fresh else self._ledgers.get(node)
        if cached is None:
            cached = self.store.read_ledger(node)
            self._ledgers[node] = cached
        return cached

    def _write(self, node: str, change: Callable[[NodeLedger], NodeLedger | None]) -> NodeLedger:
        """Apply ``change`` to the node's ledger and write it, re-reading on conflicts.

        Called with the node's lock held. Every write also names the reservations made
        from set-aside bytes since the last one and sets aside bytes anew (``_settle``).
        Claims keep taking set-aside bytes while the write is on the wire, but only as
        many as both the stored ledger and the one being written hold for them.
        """
        for attempt in range(8):
            ledger, version = self._ledger(node, fresh=attempt > 0)
            with self._lock:  # no claim takes set-aside bytes while this is planned
                new = change(ledger)
                recorded = dict(self._unrecorded.get(node, {}))
                if new is None and not recorded:
                    return ledger
                new = self._settle(node, new or ledger, recorded)
                ours = dict(new.ahead) if new.ahead_holder == self.s.identity else {}
                budget = self._budget.get(node)
                if budget:
                    for disk in budget:
                        budget[disk] = min(budget[disk], ours.get(disk, 0))
            try:
                version = self.store.write_ledger(new, version)
            except KubeConflict:
                continue
            with self._lock:
                self._ledgers[node] = (new, version)
                left = {u: r for u, r in self._unrecorded.pop(node, {}).items()
                        if u not in recorded}  # taken while the write was on the wire
                for res in left.values():
                    ours[res.disk] -= res.size
                self._budget[node] = ours
                self._ahead_at_write[node] = dict(new.ahead) if ours else {}
                if left:
                    self._unrecorded[node] = left
                    self._record(node)
            return new
        raise KubeConflict(f"the ledger of {node} kept changing under us")

    def _settle(self, node: str, ledger: NodeLedger,
                unrecorded: dict[str, Reservation]) -> NodeLedger:
        """``ledger`` with the ``unrecorded`` reservations named and our set-aside bytes
        topped up. Another holder's set-aside bytes stay until it has surely stopped (we
        have led for a whole lease duration: an old leader stops after 2/3 of one without
        renewal); its PVs made from them are recorded by the resync meanwhile."""
        reservations = {**ledger.reservations, **unrecorded}
        new = replace(ledger, reservations=reservations)
        if self._others_ahead(new) and not self._may_drop_others():
            return new
        with self._lock:
            report = self.reports.get(node)
        if report is None or self.s.reserve_ahead <= 0 or node not in self.nodes:
            return replace(new, ahead={}, ahead_holder="")
        refilled = refill_ahead(new.with_disks(report.disks), self.s.identity,
                                self.s.reserve_ahead)
        return replace(refilled, disks={})

    def _others_ahead(self, ledger: NodeLedger) -> bool:
        return ledger.ahead_holder not in ("", self.s.identity)

    def _may_drop_others(self) -> bool:
        """Another holder's set-aside bytes are ours to free once we have led a whole lease
        duration (an old leader stops creating from them 2/3 of one after its last renewal,
        and could not renew since we took the lease)."""
        return time.monotonic() - self._led_since >= self.s.lease_duration

    def _requeue_later(self, node: str, claims: dict[str, Obj], delay: float) -> None:
        self.stop.wait(delay)
        with self._cv:
            for uid, claim in claims.items():
                self._pending[node].setdefault(uid, claim)
            self._cv.notify_all()

    def _lease_fresh(self) -> bool:
        """Renewed recently enough that no other instance can lead yet."""
        return time.monotonic() - self._renewed_at < self.s.lease_duration * 2 / 3

    def _take_one_ahead(self, node: str, claim: Obj) -> Creation | None:
        """With the lock held: the claim's PV to create at once, from set-aside bytes, or
        None when it must go through the node's worker (not fitting, or anything unusual:
        already placed or being placed, no fresh agent report, lease not fresh)."""
        uid = claim["metadata"]["uid"]
        if uid in self._inflight or o.pv_name(uid) in self.pvs or node not in self.nodes:
            return None
        report = self.reports.get(node)
        cached = self._ledgers.get(node)
        if (report is None or cached is None
                or time.time() - report.heartbeat > self.s.agent_stale):
            return None
        taken = self._take_ahead(node, {uid: claim}, cached[0])
        if uid not in taken:
            return None
        self._inflight.add(uid)
        disks = {d.name: d.path for d in report.disks}
        return Creation(node, claim, taken[uid], disks.get(taken[uid].disk, ""), True,
                        time.monotonic())

    def _take_ahead(self, node: str, fresh_claims: dict[str, Obj],
                    ledger: NodeLedger) -> dict[str, Reservation]:
        """Reservations for the claims that fit the set-aside bytes (no write needed)."""
        with self._lock:
            budget = self._budget.get(node)
            if not budget or not self._lease_fresh():
                return {}
            taken: dict[str, Reservation] = {}
            now = time.time()
            for uid, claim in sorted(fresh_claims.items(),
                                     key=lambda kv: -o.claim_size(kv[1])):
                if uid in ledger.reservations or uid in self._unrecorded[node]:
                    continue
                size = o.claim_size(claim)
                disk = fit_ahead(budget, size)
                if disk is None:
                    continue
                budget[disk] -= size
                taken[uid] = self._unrecorded[node][uid] = Reservation(
                    uid, o.claim_key(claim), disk, size, now)
            return taken

    def process_node(self, node: str, batch: dict[str, Obj],
                     releases: set[str]) -> list[Creation]:
        """Release and reserve in the node's ledger; returns the PVs now to be created
        (their space is recorded, so creating them needs no lock)."""
        creations: list[Creation] = []
        with self._node_locks[node]:
            if releases:
                self._release(node, releases)
            if batch:
                creations = self._provision(node, batch)
            elif not releases:
                # Reservations made from set-aside bytes to name (a write of any kind names
                # them too, and sets aside anew), or a node's first bytes to set aside.
                first = self.s.reserve_ahead > 0 and node not in self._budget
                self._write(node, lambda ledger: ledger if first else None)
        with self._lock:
            self._capacity_dirty.add(node)
            self._outbox.notify()
        return creations

    def _release(self, node: str, uids: set[str]) -> None:
        def drop(ledger: NodeLedger) -> NodeLedger | None:
            gone = uids & set(ledger.reservations)
            if not gone:
                return None
            return replace(ledger, reservations={u: r for u, r in ledger.reservations.items()
                                                 if u not in gone})

        before = set(self._ledger(node)[0].reservations)
        after = self._write(node, drop)
        freed = before - set(after.reservations)
        self.metrics.released.inc(len(freed & uids))
        for uid in sorted(freed & uids):
            log.info("released the reservation of claim %s on %s", uid, node)

    def _provision(self, node: str, batch: dict[str, Obj]) -> list[Creation]:
        # The claims still wanted are ours (in _inflight) until placed or given up.
        fresh_claims = {u: c for u, c in batch.items() if self._still_wanted(c, node)}
        creations: list[Creation] = []
        try:
            creations = self._place(node, fresh_claims) if fresh_claims else []
        finally:
            with self._cv:
                self._inflight.difference_update(
                    set(fresh_claims) - {c.claim["metadata"]["uid"] for c in creations})
                self._cv.notify()
        return creations

    def _place(self, node: str, fresh_claims: dict[str, Obj]) -> list[Creation]:
        with self._lock:
            report = self.reports.get(node)
        if report is None or time.time() - report.heartbeat > self.s.agent_stale:
            why = (f"no local-ssd agent reports disks on node {node}" if report is None else
                   f"the local-ssd agent on {node} has not reported for "
                   f"{time.time() - report.heartbeat:.0f}s")
            for claim in fresh_claims.values():
                self._hand_back(claim, why, "no-agent")
            return []
        t0 = time.monotonic()
        with self._lock:
            oldest = min((self._seen.get(u, t0) for u in fresh_claims), default=t0)
        placed = self._take_ahead(node, fresh_claims, self._ledger(node)[0])
        rest = {u: c for u, c in fresh_claims.items() if u not in placed}
        if rest:
            wanted = [(u, o.claim_key(c), o.claim_size(c)) for u, c in rest.items()]
            result: dict[str, Any] = {}

            def reserve(ledger: NodeLedger) -> NodeLedger | None:
                base = replace(ledger, reservations={**ledger.reservations,
                                                     **self._unrecorded.get(node, {})})
                # Our set-aside bytes are free to use for these; a former leader's too,
                # once it has surely stopped.
                dropped = self._others_ahead(base) and self._may_drop_others()
                if base.ahead_holder == self.s.identity or dropped:
                    base = replace(base, ahead={}, ahead_holder="")
                p = plan(base.with_disks(report.disks), wanted, time.time())
                result["plan"] = p
                result["waiting"] = self._others_ahead(p.ledger)
                return replace(p.ledger, disks={}) if p.new or dropped else None

            self._write(node, reserve)
            p = result["plan"]
            placed.update(p.placed)
            if result["waiting"] and p.refused:
                # A former leader's set-aside bytes may be what is missing: look again once
                # they are free, rather than send the claims away.
                delay = max(0.5, self.s.lease_duration - (time.monotonic() - self._led_since))
                log.info("%s: %d claim(s) wait %.1fs for a former leader's set-aside bytes",
                         node, len(p.refused), delay)
                self._thread(self._requeue_later, node,
                             {u: fresh_claims[u] for u in p.refused}, delay)
            else:
                for uid, why in p.refused.items():
                    self._hand_back(fresh_claims[uid], why, "no-space")
        log.debug("%s: %d claim(s); queued %.0f ms, %d set aside, ledger %.0f ms", node,
                  len(fresh_claims), (t0 - oldest) * 1000, len(fresh_claims) - len(rest),
                  (time.monotonic() - t0) * 1000)
        disks = {d.name: d for d in report.disks}
        with self._lock:
            return [Creation(node, fresh_claims[uid], placed[uid],
                             disks[placed[uid].disk].path, uid in self._unrecorded[node], t0)
                    for uid in sorted(placed)]

    def _dispatch(self, creations: list[Creation]) -> None:
        for c in creations:
            if self._creations is None:
                self._create(c)
            elif self.stop.is_set():  # lease lost or stopping: the next leader finishes it
                with self._cv:
                    self._inflight.discard(c.claim["metadata"]["uid"])
                    self._cv.notify_all()
            else:
                self._creations.put(c)

    def _connect(self) -> None:
        """Open this thread's connection to the API server now: a TLS handshake in the
        middle of a burst costs more than the request that needs it."""
        try:
            self.kube.request("GET", "/version", what="connect to the API server")
        except KubeError as exc:
            log.debug("could not connect ahead: %s", exc)

    def _creator(self) -> None:
        """Creates the PVs queued by ``_dispatch``, one at a time."""
        self._connect()
        assert self._creations is not None
        while True:
            c = self._creations.get()
            if c is None:
                return
            if self.stop.is_set():  # lease lost or stopping: the next leader finishes it
                with self._cv:
                    self._inflight.discard(c.claim["metadata"]["uid"])
                continue
            try:
                self._create(c)
            except Exception:  # _create handles API errors; this is a bug, keep going
                log.exception("creating the PV of %s failed", o.claim_key(c.claim))

    def _create(self, c: Creation) -> None:
        """Create one reserved claim's PV (409: it exists already, the same PV)."""
        claim, res, node = c.claim, c.reservation, c.node
        uid = claim["metadata"]["uid"]
        started = time.monotonic()
        if c.ahead and not self._lease_fresh():
            # Maybe no longer the leader: only bytes named in the ledger may be given now;
            # queued again, the claim goes through a ledger write (409 if another leads).
            log.debug("%s: lease not fresh; claim %s queued for a ledger write", node,
                      o.claim_key(claim))
            with self._cv:
                self._inflight.discard(uid)
                self._pending[node].setdefault(uid, claim)
                self._cv.notify_all()
            return
        try:
            with self._lock:
                sc = self.classes.get(claim["spec"]["storageClassName"])
            opts, _ = o.class_options(sc) if sc is not None else (None, None)
            if opts is None:  # the class went away meanwhile; resync frees the space
                return
            pv = o.persistent_volume(claim, opts, node, res.disk, c.path, self.s.name)
            sent = time.monotonic()
            try:
                created = self.kube.create(pv)
            except KubeConflict:
                created = pv  # created before a restart (or by a previous attempt)
            with self._lock:
                # Known at once, so a claim update arriving before the PV's watch event
                # does not queue it again.
                self.pvs.setdefault(pv["metadata"]["name"], created)
                seen = self._seen.pop(uid, None)
        except Exception as exc:
            log.warning("creating the PV of claim %s on %s failed (%s); retrying",
                        o.claim_key(claim), node, exc)
            with self._cv:
                self._inflight.discard(uid)
            self.stop.wait(1.0)
            with self._cv:
                self._pending[node].setdefault(uid, claim)
                self._cv.notify_all()
            return
        finally:
            with self._cv:
                self._inflight.discard(uid)
                if uid in self._pending.get(node, ()):  # a copy waits for this one to end
                    self._cv.notify()
        answered = time.monotonic()
        if seen is not None:
            self.metrics.latency.observe(answered - seen)
        self.metrics.provisioned.inc()
        # Monotonic times, to set beside the bench's (bench/bench_provisioner.py).
        log.debug("%s: PV of %s created in %.0f ms (timing %s seen=%.4f picked=%.4f "
                  "sent=%.4f answered=%.4f)", node, o.claim_key(claim),
                  (answered - started) * 1000, uid, seen or 0.0, c.picked, sent, answered)
        self._event(claim, "ProvisioningSucceeded",
                    f"local volume {pv['metadata']['name']} ({res.size} bytes) on "
                    f"{node} disk {res.disk}", warning=False)

    def _still_wanted(self, claim: Obj, node: str) -> bool:
        """The claim as queued may be old news: bound since, or sent elsewhere. When still
        wanted, it is the caller's to place (in ``_inflight``) until it lets go."""
        meta = claim["metadata"]
        name = o.pv_name(meta["uid"])
        with self._lock:
            if meta["uid"] in self._inflight:
                log.debug("%s: claim %s is being placed already", node, o.claim_key(claim))
                return False  # its PV is being created; a failure queues it again
            if name in self.pvs:
                self._seen.pop(meta["uid"], None)
                return False
            if (meta.get("annotations") or {}).get(o.ANN_SELECTED_NODE) != node:
                log.debug("%s: claim %s was sent elsewhere", node, o.claim_key(claim))
                return False
            self._inflight.add(meta["uid"])
            return True

    def _hand_back(self, claim: Obj, why: str, reason: str) -> None:
        meta = claim["metadata"]
        node = (meta.get("annotations") or {}).get(o.ANN_SELECTED_NODE)
        current = claim
        for _ in range(3):
            try:
                self.kube.request(
                    "PATCH", f"/api/v1/namespaces/{meta['namespace']}/persistentvolumeclaims/"
                    f"{meta['name']}", body=o.without_selected_node(current),
                    content_type="application/merge-patch+json",
                    what=f"hand back claim {o.claim_key(claim)}")
                break
            except KubeNotFound:
                return
            except KubeConflict:
                # Our copy was older than the claim (a queued copy, or one changed since):
                # no new event may come to bring it back, so look at the claim now.
                fresh = self.kube.get("v1", "PersistentVolumeClaim", meta["name"],
                                      meta["namespace"])
                if (fresh is None or fresh["metadata"]["uid"] != meta["uid"]
                        or fresh["spec"].get("volumeName")
                        or (fresh["metadata"].get("annotations") or {}).get(
                            o.ANN_SELECTED_NODE) != node):
                    return  # gone, bound or sent elsewhere meanwhile
                current = fresh
        else:
            return  # changing all the time: its next change queues it again
        with self._lock:
            self._seen.pop(meta["uid"], None)
        self.metrics.handbacks.labels(reason).inc()
        log.info("handed claim %s back to the scheduler: %s", o.claim_key(claim), why)
        self._event(claim, "Rescheduled", f"{why}; the scheduler will choose another node",
                    warning=True)

    # -- events and published capacity -------------------------------------------------------

    def _warn_once(self, claim: Obj, reason: str, message: str) -> None:
        key = (claim["metadata"]["uid"], message)
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning("claim %s: %s", o.claim_key(claim), message)
        self._event(claim, reason, message, warning=True)

    def _event(self, claim: Obj, reason: str, message: str, *, warning: bool) -> None:
        with self._cv:
            self._events.append(o.event(claim, reason, message, warning=warning,
                                        component=COMPONENT, now=now_iso()))
            self._outbox.notify()

    def _publisher(self) -> None:
        """Events and capacity objects, off the provisioning path (they wait on nobody)."""
        while not self.stop.is_set():
            with self._outbox:
                if not self._events and not self._capacity_dirty:
                    self._outbox.wait(1.0)
                events, self._events = self._events, []
                dirty, self._capacity_dirty = set(self._capacity_dirty), set()
            for ev in events:
                try:
                    self.kube.create(ev)
                except KubeError as exc:
                    log.warning("event not recorded: %s", exc)
            for node in sorted(dirty):
                self._guard(lambda n=node: self.publish_capacity(n))  # type: ignore[misc]
            time.sleep(0.05)  # coalesce bursts into one write per node

    def publish_capacity(self, node: str) -> None:
        with self._lock:
            report = self.reports.get(node)
            classes = sorted(self.classes)
            present = node in self.nodes
        ledger = self._ledger(node)[0]
        if ledger.ahead_holder == self.s.identity:  # our set-aside bytes are for claims
            with self._lock:
                unrecorded = dict(self._unrecorded.get(node, {}))
            ledger = replace(ledger, ahead={}, ahead_holder="", reservations={
                **ledger.reservations, **unrecorded})
        ledger = ledger.with_disks(report.disks if report else [])
        for d in ledger.disks:
            self.metrics.capacity.labels(node, d).set(ledger.disks[d].allocatable)
            self.metrics.reserved.labels(node, d).set(ledger.reserved(d))
        for cls in classes:
            if report is None or not present:
                if self._published.pop((cls, node), None) is not None or report is None:
                    self.kube.delete("storage.k8s.io/v1", "CSIStorageCapacity",
                                     o.capacity_name(cls, node), self.s.namespace,
                                     propagation="Background")
                continue
            now = (ledger.total_available(), ledger.largest_available())
            if self._published.get((cls, node)) == now:
                continue  # agents report every few seconds; the capacity rarely changes
            self.kube.apply(o.storage_capacity(cls, node, now[0], now[1], self.s.namespace,
                                               self.s.name), force=True, compare=False)
            self._published[(cls, node)] = now

    # -- reconciling with the API ----------------------------------------------------------

    def reconcile(self) -> None:
        """Compare ledgers with PVs and claims; finish or free what a crash left half done;
        release lost nodes; re-create claims whose node was lost."""
        started = time.monotonic()
        pvs = {pv["metadata"]["name"]: pv for pv in self.kube.list_objects(
            "v1", "PersistentVolume", label_selector=f"{o.LABEL_PROVISIONER}={self.s.name}")}
        with self._lock:
            self.pvs = dict(pvs)
            nodes = dict(self.nodes)
        ledgers = self.store.ledgers()
        for node, (ledger, version) in ledgers.items():
            with self._node_locks[node]:
                self._ledgers[node] = (ledger, version)
                self._reconcile_node(node, ledger, pvs)
            if node not in nodes:
                self._guarded_node_lost(node, "deleted")
            elif (dark := self._not_ready_for(nodes[node])) > self.s.node_grace:
                self._guarded_node_lost(node, "NotReady")
            elif dark:
                log.info("node %s NotReady for %.0fs (lost after %.0fs)", node, dark,
                         self.s.node_grace)
        for pv in pvs.values():  # a PV whose reservation is missing: record it again
            pv_at = o.pv_node(pv)
            if pv_at and pv_at not in ledgers:
                with self._node_locks[pv_at]:
                    self._reconcile_node(pv_at, self._ledger(pv_at, fresh=True)[0], pvs)
        with self._lock:
            self._capacity_dirty.update(self.reports)
            self._outbox.notify()
        log.debug("reconciled %d PVs and %d ledgers in %.0f ms (at %.4f)", len(pvs),
                  len(ledgers), (time.monotonic() - started) * 1000, started)

    def _reconcile_node(self, node: str, ledger: NodeLedger, pvs: dict[str, Obj]) -> None:
        now = time.time()
        on_node = {(pv["spec"].get("claimRef") or {}).get("uid"): pv for pv in pvs.values()
                   if o.pv_node(pv) == node}
        stale = set()
        for uid, res in ledger.reservations.items():
            if o.pv_name(uid) in pvs:
                continue
            ns, _, name = res.claim.partition("/")
            claim = self.kube.get("v1", "PersistentVolumeClaim", name, ns)
            if (claim and claim["metadata"]["uid"] == uid and not claim["spec"].get("volumeName")
                    and (claim["metadata"].get("annotations") or {}).get(
                        o.ANN_SELECTED_NODE) == node):
                with self._lock:  # half done before a crash: finish it
                    self._pending[node][uid] = claim
                    self._cv.notify_all()
            elif now - res.at > self.s.orphan_age or claim is None:
                stale.add(uid)
        with self._lock:  # taken from set-aside bytes and not yet named: known, not missing
            unrecorded = set(self._unrecorded.get(node, {}))
        missing = {u: pv for u, pv in on_node.items()
                   if u and u not in ledger.reservations and u not in unrecorded}

        def fix(current: NodeLedger) -> NodeLedger | None:
            reservations = {u: r for u, r in current.reservations.items() if u not in stale}
            from provisioner.ledger import Reservation

            for uid, pv in missing.items():
                if uid in reservations:
                    continue
                ref = pv["spec"]["claimRef"]
                log.warning("PV %s had no reservation on %s; recorded again",
                            pv["metadata"]["name"], node)
                reservations[uid] = Reservation(
                    uid, f"{ref['namespace']}/{ref['name']}",
                    (pv["metadata"].get("annotations") or {}).get(o.ANN_DISK, "?"),
                    o.storage_bytes(pv["spec"]["capacity"]["storage"]) or 0, now)
            if reservations == current.reservations and not (
                    self._others_ahead(current) and self._may_drop_others()):
                return None
            return replace(current, reservations=reservations)

        if stale or missing or (self._others_ahead(ledger) and self._may_drop_others()):
            for uid in sorted(stale):
                log.info("freed reservation %s on %s (no volume and no claim waiting)", uid,
                         node)
            self.metrics.released.inc(len(stale))
            self._write(node, fix)
        if ledger.lost:
            self._recreate_lost(node)

    @staticmethod
    def _not_ready_for(node: Obj) -> float:
        for cond in (node.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready":
                if cond.get("status") == "True":
                    return 0.0
                since = parse_time(cond.get("lastTransitionTime"))
                return time.time() - since if since else 0.0
        return 0.0

    # -- node loss ------------------------------------------------------------------------

    def _guarded_node_lost(self, node: str, why: str) -> None:
        try:
            self.node_lost(node, why)
        except Exception:
            log.exception("handling the loss of node %s failed; the next resync retries", node)

    def node_lost(self, node: str, why: str) -> None:
        """Free a lost node's volumes and make their claims schedulable elsewhere.

        Order matters for crash safety: the claims' copies are recorded in the ledger
        first, then pods, claims and PVs are deleted, then the copies are created anew.
        """
        with self._node_locks[node]:
            pvs = [pv for pv in self.kube.list_objects(
                "v1", "PersistentVolume",
                label_selector=f"{o.LABEL_PROVISIONER}={self.s.name},{o.LABEL_NODE}={node}")]
            ledger, _ = self._ledger(node, fresh=True)
            if not pvs and not ledger.reservations and not ledger.lost:
                return
            log.warning("node %s is lost (%s): releasing its %d local-ssd volume(s) and "
                        "re-creating their claims so their pods can run elsewhere; data on "
                        "that node is given up", node, why, len(pvs))
            self.metrics.nodes_lost.inc()
            claims = []
            for pv in pvs:
                ref = pv["spec"].get("claimRef") or {}
                claim = self.kube.get("v1", "PersistentVolumeClaim", ref.get("name", ""),
                                      ref.get("namespace"))
                if claim and claim["metadata"]["uid"] == ref.get("uid"):
                    claims.append(claim)
            now = time.time()

            def remember(current: NodeLedger) -> NodeLedger | None:
                lost = dict(current.lost)
                for c in claims:
                    lost.setdefault(c["metadata"]["uid"], Lost(c["metadata"]["uid"], c, now))
                return None if lost == current.lost else replace(current, lost=lost)

            self._write(node, remember)
            uses = {o.claim_key(c) for c in claims}
            for pod in self.kube.list_objects("v1", "Pod", field_selector=f"spec.nodeName={node}",
                                              all_namespaces=True):
                vols = pod["spec"].get("volumes") or []
                if any(f"{pod['metadata']['namespace']}/"
                       f"{(v.get('persistentVolumeClaim') or {}).get('claimName')}" in uses
                       for v in vols):
                    self.kube.request(
                        "DELETE", f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/"
                        f"{pod['metadata']['name']}", body={"gracePeriodSeconds": 0},
                        what=f"delete pod {pod['metadata']['name']} on lost node {node}")
            for c in claims:
                self._event(c, "NodeLost", f"node {node} is lost ({why}); this claim is "
                            "re-created so the scheduler can place it elsewhere", warning=True)
                self.kube.delete("v1", "PersistentVolumeClaim", c["metadata"]["name"],
                                 c["metadata"]["namespace"], propagation="Background")
            for pv in pvs:
                self.kube.delete("v1", "PersistentVolume", pv["metadata"]["name"],
                                 propagation="Background")
            with self._lock:
                self._lost_done.add(node)
        self._thread(self._recreate_soon, node)

    def _recreate_soon(self, node: str) -> None:
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            with self._node_locks[node]:
                if not self._recreate_lost(node):
                    return
            self.stop.wait(0.3)

    def _recreate_lost(self, node: str) -> bool:
        """Create anew each lost claim whose old copy is gone; True while some remain."""
        ledger, _ = self._ledger(node, fresh=True)
        done = set()
        for uid, lost in ledger.lost.items():
            meta = lost.claim["metadata"]
            current = self.kube.get("v1", "PersistentVolumeClaim", meta["name"],
                                    meta["namespace"])
            if current is not None and current["metadata"]["uid"] == uid:
                continue  # still terminating (a pod may still hold it)
            if current is None:
                new = self.kube.create(o.recreated_claim(lost.claim))
                self._event(new, "Rescheduled", f"re-created after node {node} was lost "
                            f"(was {uid}); waiting for the scheduler", warning=False)
            done.add(uid)
        if done:
            def forget(current: NodeLedger) -> NodeLedger | None:
                lost = {u: v for u, v in current.lost.items() if u not in done}
                return replace(current, lost=lost)
            ledger = self._write(node, forget)
        remaining = bool(ledger.lost)
        with self._lock:
            gone = node not in self.nodes
        if not remaining and gone and not ledger.reservations:
            self.store.delete_ledger(node, self._ledgers.get(node, (None, None))[1])
            self._ledgers.pop(node, None)
            self.store.delete_report(node)
        return remaining
