"""The provisioner when things go wrong around it: a node that stops answering (NotReady,
not deleted) past the grace period, and two controllers at once (one leads through the
Lease; kill it mid-burst and the other takes over within the lease time)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmerep.kube import Kube
from provisioner import objects as o
from provisioner.store import Lease, now_iso
from tests.cluster.provisioner_env import Bed, MiB, node_ready, provisioner_bed, wait_until
from tests.cluster.test_provisioner import OverbookWatch, bed_pod_spec, bound, consistent

pytestmark = pytest.mark.cluster


@pytest.fixture()
def bed(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[Bed]:
    with provisioner_bed(kube, namespace, tmp_path) as b:
        yield b


class NodeStatus:
    """Plays a node's kubelet while kwok is paused: posts its Ready condition (True, with a
    fresh heartbeat every second; or False once) so the node controller believes it."""

    def __init__(self, kube: Kube, node: str, ready: bool) -> None:
        self.kube = kube
        self.node = node
        self.stop = threading.Event()
        self.since = now_iso()
        self.post(ready)
        self.thread = threading.Thread(target=self._beat, daemon=True)
        if ready:
            self.thread.start()

    def post(self, ready: bool) -> None:
        now = now_iso()
        self.kube.request("PATCH", f"/api/v1/nodes/{self.node}/status", body={"status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            "reason": "KubeletReady" if ready else "KubeletNotReady",
                            "message": "test kubelet", "lastHeartbeatTime": now,
                            "lastTransitionTime": self.since}]}},
            content_type="application/strategic-merge-patch+json")

    def _beat(self) -> None:
        while not self.stop.wait(1.0):
            with contextlib.suppress(Exception):
                self.post(True)


@contextlib.contextmanager
def kwok_paused() -> Iterator[None]:
    """Stop this session's kwok controller (it keeps every node Ready: its node-initialize
    stage re-readies a NotReady node at once), and let it go on afterwards."""
    from mmerep.cluster import local

    marker = str(local.kwok_cluster_dir())
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            exe = argv[0].decode(errors="replace")
            if exe.startswith(marker) and Path(exe).name.startswith("kwok"):
                pids.append(int(entry))
    assert pids, f"no kwok controller under {marker}"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def job_deployment(bed: Bed, claim: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "job", "namespace": bed.namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "job"}},
                     "template": {"metadata": {"labels": {"app": "job"}},
                                  "spec": bed_pod_spec(bed, claim)}}}


def test_a_not_ready_nodes_claims_bind_elsewhere_after_the_grace(bed: Bed) -> None:
    first = bed.add_node([300 * MiB])
    second = bed.add_node([300 * MiB])
    bed.wait_nodes_ready()
    cls = bed.storage_class()
    bed.start_agent(first)
    bed.start_controller("controller", "--node-grace", "8", "--verbose")
    bed.wait_reports([first])
    bed.claim("scratch", "20Mi", cls)
    bed.kube.create(job_deployment(bed, "scratch"))
    old = wait_until(lambda: bound(bed, "scratch"), 60, "the claim to bind")
    old_pv = bed.kube.get("v1", "PersistentVolume", old["spec"]["volumeName"])
    assert old_pv is not None and o.pv_node(old_pv) == first
    old_dir = Path(old_pv["spec"]["local"]["path"])
    wait_until(old_dir.is_dir, 20, "the volume's directory")
    bed.start_agent(second)
    bed.wait_reports([first, second])

    with kwok_paused():
        alive = NodeStatus(bed.kube, second, ready=True)
        NodeStatus(bed.kube, first, ready=False)
        try:
            bed.kill(f"agent-{first}")  # the node is gone dark, its agent with it
            dark_at = time.monotonic()
            # Within the grace period nothing moves (a short outage costs no data).
            time.sleep(4)
            still_there = bound(bed, "scratch")
            assert still_there and still_there["metadata"]["uid"] == old["metadata"]["uid"]
            assert bed.kube.get("v1", "PersistentVolume", old_pv["metadata"]["name"]) is not None

            def rebound() -> dict | None:
                claim = bound(bed, "scratch")
                moved = claim and claim["metadata"]["uid"] != old["metadata"]["uid"]
                return claim if moved else None

            try:
                new = wait_until(rebound, 120, "the claim re-created and bound elsewhere")
            except AssertionError:
                os.kill(bed.procs["controller"].pid, signal.SIGUSR1)  # its stacks, logged
                time.sleep(1)
                raise
            assert time.monotonic() - dark_at >= 8
            assert new["metadata"]["annotations"][o.ANN_RECREATED_FROM] == old["metadata"]["uid"]
            pv = bed.kube.get("v1", "PersistentVolume", new["spec"]["volumeName"])
            assert pv is not None and o.pv_node(pv) == second
            assert bed.kube.get("v1", "PersistentVolume", old_pv["metadata"]["name"]) is None
            wait_until(lambda: [p for p in bed.kube.list_objects("v1", "Pod", bed.namespace)
                                if p["spec"].get("nodeName") == second], 60,
                       "the job's pod on the other node")
            log = bed.log("controller")
            assert f"node {first} is lost (NotReady)" in log
            # Nothing was wiped on the dark node: its directory waits for a decision.
            assert old_dir.is_dir()
        finally:
            alive.stop.set()

    # The node comes back: the controller logs what it decided, the agent wipes the
    # directory no PV names any more, the moved claim stays where it is.
    # (kwok runs again: it re-readies the node at once)
    wait_until(lambda: node_ready(bed.kube.get("v1", "Node", first)), 60, "the node Ready")
    wait_until(lambda: f"node {first} is back" in bed.log("controller"), 30,
               "the controller's decision about the node that came back")
    bed.start_agent(first)
    wait_until(lambda: not old_dir.exists(), 30, "the orphaned directory to be wiped")
    assert "wiping orphan" in bed.log(f"agent-{first}")
    still = bound(bed, "scratch")
    assert still is not None and still["metadata"]["uid"] == new["metadata"]["uid"]
    assert consistent(bed) == []


LEADS = re.compile(r"controller \S+ leads$", re.MULTILINE)


def holder_pid(bed: Bed) -> int | None:
    holder = Lease(bed.kube, bed.namespace, f"{bed.name}-controller", "test").holder()
    return int(holder.rsplit("-", 1)[1]) if holder else None


def test_two_controllers_one_leads_and_the_other_takes_over(bed: Bed) -> None:
    lease = 4.0
    nodes = [bed.add_node([300 * MiB]) for _ in range(3)]
    bed.wait_nodes_ready()
    cls = bed.storage_class()
    for node in nodes:
        bed.start_agent(node)
    extra = ("--lease-duration", str(lease), "--verbose")
    a = bed.start_controller("controller-a", *extra)
    wait_until(lambda: holder_pid(bed) == a.pid, 30, "controller a to lead")
    b = bed.start_controller("controller-b", *extra)
    bed.wait_reports()
    wait_until(lambda: "waiting for lease" in bed.log("controller-b"), 30, "b to start")
    took_over = float("inf")
    with OverbookWatch(bed) as watch:
        for i in range(20):
            bed.claim(f"c{i:02d}", "5Mi", cls)
            bed.pod(f"job-{i:02d}", f"c{i:02d}")
        wait_until(lambda: len(bed.pvs()) >= 5, 60, "the leader to provision some")
        # Only the leader acts: the other has not even started its watches.
        assert not LEADS.search(bed.log("controller-b"))
        assert holder_pid(bed) == a.pid
        for i in range(20, 40):
            bed.claim(f"c{i:02d}", "5Mi", cls)
            bed.pod(f"job-{i:02d}", f"c{i:02d}")
            if i == 25:
                killed = time.monotonic()
                bed.kill("controller-a")
                wait_until(lambda: holder_pid(bed) == b.pid, lease * 3,
                           "controller b to take the lease", interval=0.1)
                took_over = time.monotonic() - killed
        wait_until(lambda: all(bound(bed, f"c{i:02d}") for i in range(40)), 120,
                   "all 40 claims to be bound", interval=0.5)
        watch.check()
    assert watch.problems == []
    # The lease expires at most `lease` after a's last renewal; b looks every lease/4.
    print(f"standby took the lease {took_over:.1f}s after the leader was killed")
    assert took_over <= lease + 2.0, f"took {took_over:.1f}s over a {lease:.0f}s lease"
    assert LEADS.search(bed.log("controller-b"))
    # One PV per claim, each named after its claim and bound to it: no duplicates.
    pvs = bed.pvs()
    assert len(pvs) == 40
    assert sorted(pv["spec"]["claimRef"]["name"] for pv in pvs) == [
        f"c{i:02d}" for i in range(40)]
    wait_until(lambda: consistent(bed) == [], 60, "ledgers consistent with PVs")
