"""The provisioner on the real control plane: the real scheduler picks nodes, the real PV
controller binds claims to the PVs ours creates, and each node's disks are real XFS file
systems (loop-mounted images), so sizes and free space are real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmerep.kube import Kube
from provisioner import objects as o
from tests.cluster.provisioner_env import Bed, MiB, provisioner_bed, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture()
def bed(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[Bed]:
    with provisioner_bed(kube, namespace, tmp_path) as b:
        yield b


def bound(bed: Bed, name: str) -> dict | None:
    claim = bed.kube.get("v1", "PersistentVolumeClaim", name, bed.namespace)
    return claim if claim and claim.get("status", {}).get("phase") == "Bound" else None


def test_one_claim_and_its_pod(bed: Bed) -> None:
    node = bed.add_node([300 * MiB])
    cls = bed.start(uid="1000", gid="2000")
    bed.claim("scratch", "50Mi", cls)
    bed.pod("job", "scratch")
    claim = wait_until(lambda: bound(bed, "scratch"), 60, "the claim to be bound")
    pv = bed.kube.get("v1", "PersistentVolume", claim["spec"]["volumeName"])
    assert pv is not None and pv["metadata"]["name"] == f"pvc-{claim['metadata']['uid']}"
    assert pv["spec"]["capacity"]["storage"] == str(50 * MiB)
    pod = wait_until(lambda: (p := bed.kube.get("v1", "Pod", "job", bed.namespace))
                     and p["spec"].get("nodeName") and p, 60, "the pod to be scheduled")
    assert pod["spec"]["nodeName"] == node == o.pv_node(pv)
    path = Path(pv["spec"]["local"]["path"])
    assert path.parent == bed.root(node) / "disk0"
    st = wait_until(lambda: path.exists() and path.stat(), 20, "the volume directory")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 2000, 0o2770)
    succeeded = wait_until(lambda: bed.events("ProvisioningSucceeded"), 20, "the event")
    assert node in succeeded[0]["message"]
    # The published capacity shrank by the claim.
    cap = wait_until(lambda: (c := bed.kube.get("storage.k8s.io/v1", "CSIStorageCapacity",
                                                o.capacity_name(cls, node), bed.namespace))
                     and c, 20, "published capacity")
    report = bed.store.reports()[node]
    assert int(cap["capacity"]) == report.disks[0].allocatable - 50 * MiB
    assert os.path.ismount(bed.root(node) / "disk0")


def test_bad_input_gets_an_event_and_nothing_is_created(bed: Bed) -> None:
    node = bed.add_node([300 * MiB])
    bed.wait_nodes_ready()
    good = bed.storage_class()
    odd = bed.storage_class("odd", fsType="xfs")
    bed.start_agent(node)
    bed.start_controller()
    bed.wait_reports()
    bed.claim("huge", "10Gi", good)
    bed.claim("block", "10Mi", good, volumeMode="Block")
    bed.claim("shared", "10Mi", good, accessModes=["ReadWriteMany"])
    bed.claim("params", "10Mi", odd)
    for claim in ("huge", "block", "shared", "params"):
        bed.pod(f"job-{claim}", claim)
    want = {"huge": "largest local disk", "block": "volumeMode Block",
            "shared": "ReadWriteMany", "params": "unknown parameter(s) fsType"}

    def all_reported() -> dict[str, str] | None:
        got = {e["involvedObject"]["name"]: e["message"]
               for e in bed.events("ProvisioningFailed")}
        return got if set(got) >= set(want) else None

    got = wait_until(all_reported, 120, "an event on each bad claim")
    for claim, says in want.items():
        assert says in got[claim], (claim, got[claim])
    # The controller is still there and serves a good claim; nothing bad was created.
    bed.claim("fine", "10Mi", good)
    bed.pod("job-fine", "fine")
    wait_until(lambda: bound(bed, "fine"), 60, "the good claim to bind")
    assert [pv["spec"]["claimRef"]["name"] for pv in bed.pvs()] == ["fine"]
    assert bed.procs["controller"].poll() is None


class OverbookWatch:
    """Checks, every 0.1 s while a test runs, that no disk has more bytes promised than it
    can give: in the ledgers and in the PersistentVolumes that exist."""

    def __init__(self, bed: Bed) -> None:
        import threading

        self.bed = bed
        self.stop = threading.Event()
        self.problems: list[str] = []
        self.checks = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OverbookWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def check(self) -> None:
        reports = self.bed.store.reports()
        allocatable = {(n, d.name): d.allocatable for n, r in reports.items() for d in r.disks}
        by_disk: dict[tuple[str, str], int] = {}
        for pv in self.bed.pvs():
            key = (o.pv_node(pv) or "", pv["metadata"]["annotations"][o.ANN_DISK])
            by_disk[key] = by_disk.get(key, 0) + int(pv["spec"]["capacity"]["storage"])
        for node, (ledger, _) in self.bed.store.ledgers().items():
            for uid, res in ledger.reservations.items():
                del uid
                by_disk.setdefault((node, res.disk), 0)
            for disk in {r.disk for r in ledger.reservations.values()}:
                reserved = ledger.reserved(disk)
                if reserved > allocatable.get((node, disk), 0):
                    self.problems.append(f"ledger {node}/{disk}: {reserved} reserved > "
                                         f"{allocatable.get((node, disk))}")
        for key, total in by_disk.items():
            if total > allocatable.get(key, 0):
                self.problems.append(f"PVs on {key}: {total} > {allocatable.get(key)}")
        self.checks += 1

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                self.check()
            except Exception as exc:  # a transient API error is no overbooking
                del exc


def largest_free(bed: Bed) -> int:
    reports = bed.store.reports()
    ledgers = {n: led for n, (led, _) in bed.store.ledgers().items()}
    best = 0
    for node, rep in reports.items():
        led = ledgers.get(node)
        for d in rep.disks:
            reserved = led.reserved(d.name) if led else 0
            best = max(best, d.allocatable - reserved)
    return best


def test_200_claims_on_10_nodes_never_overbook_and_delete_frees(bed: Bed) -> None:
    import random

    rng = random.Random(7)
    nodes = [bed.add_node([300 * MiB] if i % 3 else [300 * MiB, 300 * MiB]) for i in range(10)]
    cls = bed.start()
    sizes = {f"c{i:03d}": rng.randint(10, 60) * MiB for i in range(200)}
    with OverbookWatch(bed) as watch:
        for name, size in sizes.items():
            bed.claim(name, str(size), cls)
            bed.pod(f"job-{name}", name)

        def settled() -> bool:
            claims = bed.claims()
            pending = [c for c in claims if c.get("status", {}).get("phase") != "Bound"]
            if not pending:
                return True
            free = largest_free(bed)
            # Settled: whatever still waits could not fit anywhere.
            return all(sizes[c["metadata"]["name"]] > free for c in pending)

        wait_until(settled, 180, "every claim that fits to be bound", interval=1.0)
        watch.check()
    assert watch.problems == [] and watch.checks > 10
    # Every claim still pending says why: our hand-back on the claim, or the scheduler's
    # capacity check on its pod. (On a quiet machine the disks fill before the scheduler
    # has tried the last pods, so their reasons come a moment after "settled".)
    unexplained: list[str] = []

    def explained() -> bool:
        nonlocal claims, bound_names, pending, unexplained
        claims = {c["metadata"]["name"]: c for c in bed.claims()}
        bound_names = [n for n, c in claims.items() if c["status"].get("phase") == "Bound"]
        pending = [n for n in claims if n not in bound_names]
        reasons = {e["involvedObject"]["name"] for e in bed.events()
                   if e["reason"] == "Rescheduled" or "storage" in e.get("message", "")}
        unexplained = [n for n in pending if n not in reasons and f"job-{n}" not in reasons]
        return not unexplained

    claims: dict[str, dict] = {}
    bound_names: list[str] = []
    pending: list[str] = []
    deadline = time.monotonic() + 120
    while not explained() and time.monotonic() < deadline:
        time.sleep(1.0)
    assert unexplained == [], f"{len(unexplained)} pending claims say not why: {unexplained[:5]}"
    assert len(bound_names) > 50 and pending, (len(bound_names), len(pending))
    # Delete: directories wiped, reservations freed, capacity published again.
    victims = bound_names[:20]
    paths = {}
    for n in victims:
        pv = bed.kube.get("v1", "PersistentVolume", claims[n]["spec"]["volumeName"])
        assert pv is not None
        paths[n] = Path(pv["spec"]["local"]["path"])
        assert paths[n].is_dir()
        bed.kube.request("DELETE", f"/api/v1/namespaces/{bed.namespace}/pods/job-{n}",
                         body={"gracePeriodSeconds": 0})
        bed.kube.delete("v1", "PersistentVolumeClaim", n, bed.namespace,
                        propagation="Background")
    gone_uids = {claims[n]["metadata"]["uid"] for n in victims}
    wait_until(lambda: not any(p.exists() for p in paths.values()), 60, "wiped directories")
    wait_until(lambda: not gone_uids & {u for led, _ in bed.store.ledgers().values()
                                        for u in led.reservations}, 60, "freed reservations")
    wait_until(lambda: not {f"pvc-{u}" for u in gone_uids} & {
        pv["metadata"]["name"] for pv in bed.pvs()}, 60, "deleted PVs")

    def published_matches() -> bool:
        ledgers = {n: led for n, (led, _) in bed.store.ledgers().items()}
        reports = bed.store.reports()
        for node in nodes:
            cap = bed.kube.get("storage.k8s.io/v1", "CSIStorageCapacity",
                               o.capacity_name(cls, node), bed.namespace)
            led = ledgers.get(node)
            # What claims may still get: the leader's set-aside bytes count (they are
            # kept for claims), reserved bytes do not.
            free = sum(max(0, d.allocatable - led.reserved(d.name))
                       for d in reports[node].disks) if led else None
            if cap is None or free is None or o.storage_bytes(cap["capacity"]) != free:
                return False
        return True

    wait_until(published_matches, 120, "published capacity to match the ledgers")


def consistent(bed: Bed) -> list[str]:
    """Every PV is its claim's (pvc-<uid>, claim alive), every reservation has its PV."""
    claims = {c["metadata"]["uid"]: c for c in bed.claims()}
    problems = []
    pv_uids = set()
    for pv in bed.pvs():
        uid = pv["spec"]["claimRef"]["uid"]
        pv_uids.add(uid)
        if pv["metadata"]["name"] != f"pvc-{uid}":
            problems.append(f"{pv['metadata']['name']} is not named after its claim")
        if uid not in claims:
            problems.append(f"{pv['metadata']['name']} is orphaned")
    reserved = {u for led, _ in bed.store.ledgers().values() for u in led.reservations}
    if reserved - pv_uids:
        problems.append(f"leaked reservations: {sorted(reserved - pv_uids)[:5]}")
    if pv_uids - reserved:
        problems.append(f"PVs without reservation: {sorted(pv_uids - reserved)[:5]}")
    return problems


def test_sigkill_controller_and_agent_during_a_burst(bed: Bed) -> None:
    import random
    import time

    rng = random.Random(3)
    nodes = [bed.add_node([300 * MiB]) for _ in range(5)]
    cls = bed.start("controller-0")
    with OverbookWatch(bed) as watch:
        for i in range(100):
            bed.claim(f"c{i:03d}", f"{rng.randint(5, 15)}Mi", cls)
            bed.pod(f"job-{i:03d}", f"c{i:03d}")
            if i in (20, 45, 70):
                time.sleep(rng.uniform(0.0, 0.5))
                bed.kill(next(k for k in bed.procs if k.startswith("controller")))
                bed.start_controller(f"controller-{i}")
            if i == 55:
                bed.kill(f"agent-{nodes[0]}")
                bed.start_agent(nodes[0])

        def all_bound() -> bool:
            return all(c.get("status", {}).get("phase") == "Bound" for c in bed.claims())

        wait_until(all_bound, 180, "all 100 claims to be bound", interval=1.0)
        watch.check()
    assert watch.problems == []
    wait_until(lambda: consistent(bed) == [], 120, f"consistency: {consistent(bed)}")
    assert len(bed.pvs()) == 100
    # Every volume's directory exists on its node.
    for pv in bed.pvs():
        wait_until(lambda p=pv: Path(p["spec"]["local"]["path"]).is_dir(), 20,
                   f"the directory of {pv['metadata']['name']}")


def test_a_deleted_nodes_claims_bind_elsewhere(bed: Bed) -> None:
    first = bed.add_node([300 * MiB])
    second = bed.add_node([300 * MiB])
    bed.wait_nodes_ready()
    cls = bed.storage_class()
    bed.start_agent(first)
    bed.start_controller()
    bed.wait_reports([first])
    bed.claim("scratch", "20Mi", cls)
    bed.kube.create({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "job", "namespace": bed.namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "job"}},
                 "template": {"metadata": {"labels": {"app": "job"}}, "spec": {
                     **bed_pod_spec(bed, "scratch")}}}})
    old = wait_until(lambda: bound(bed, "scratch"), 60, "the claim to bind")
    pv = bed.kube.get("v1", "PersistentVolume", old["spec"]["volumeName"])
    assert pv is not None and o.pv_node(pv) == first
    bed.start_agent(second)
    bed.wait_reports([first, second])
    bed.kill(f"agent-{first}")
    bed.kube.delete("v1", "Node", first, propagation="Background")

    def rebound() -> dict | None:
        claim = bound(bed, "scratch")
        return claim if claim and claim["metadata"]["uid"] != old["metadata"]["uid"] else None

    new = wait_until(rebound, 120, "the claim to be re-created and bound on the other node")
    assert new["metadata"]["annotations"][o.ANN_RECREATED_FROM] == old["metadata"]["uid"]
    pv = bed.kube.get("v1", "PersistentVolume", new["spec"]["volumeName"])
    assert pv is not None and o.pv_node(pv) == second
    assert bed.kube.get("v1", "PersistentVolume", f"pvc-{old['metadata']['uid']}") is None
    pods = wait_until(lambda: [p for p in bed.kube.list_objects("v1", "Pod", bed.namespace)
                               if p["spec"].get("nodeName") == second], 60,
                      "the job's pod on the other node")
    assert pods
    assert "is lost (deleted)" in bed.log("controller")


def bed_pod_spec(bed: Bed, claim: str) -> dict:
    from tests.cluster.provisioner_env import TAINT

    return {"tolerations": [{"key": TAINT, "operator": "Exists"}],
            "nodeSelector": {TAINT: bed.tag},
            "containers": [{"name": "job", "image": "busybox",
                            "volumeMounts": [{"name": "s", "mountPath": "/scratch"}]}],
            "volumes": [{"name": "s", "persistentVolumeClaim": {"claimName": claim}}]}


def test_the_scheduler_avoids_a_node_whose_published_capacity_is_too_small(bed: Bed) -> None:
    full, roomy = bed.add_node([300 * MiB]), bed.add_node([300 * MiB])
    cls = bed.start()
    # Fill the first node almost completely (pinned there through the pod's selector).
    left = 20 * MiB
    size = bed.store.reports()[full].disks[0].allocatable - left
    bed.claim("filler", str(size), cls)
    pod = bed_pod_spec(bed, "filler")
    pod["nodeSelector"]["kubernetes.io/hostname"] = full
    bed.kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "filler", "namespace": bed.namespace}, "spec": pod})
    wait_until(lambda: bound(bed, "filler"), 60, "the filler claim")
    wait_until(lambda: int(bed.kube.get("storage.k8s.io/v1", "CSIStorageCapacity",
                                        o.capacity_name(cls, full), bed.namespace)
                           ["maximumVolumeSize"]) == left, 20, "the full node's capacity")
    # Claims bigger than what is left there: the scheduler must send each to the other
    # node by itself (no hand-back needed), because it reads the published capacity.
    for i in range(6):
        bed.claim(f"c{i}", "30Mi", cls)
        bed.pod(f"job-{i}", f"c{i}")
    for i in range(6):
        claim = wait_until(lambda i=i: bound(bed, f"c{i}"), 60, f"claim c{i}")
        pv = bed.kube.get("v1", "PersistentVolume", claim["spec"]["volumeName"])
        assert pv is not None and o.pv_node(pv) == roomy
    assert bed.events("Rescheduled") == []


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmerep", "provisioner", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


def test_install_status_uninstall(bed: Bed) -> None:
    from provisioner.manifests import CLASS_DELETE, CLASS_RETAIN

    node = bed.add_node([300 * MiB, 300 * MiB])
    bed.wait_nodes_ready()
    target = ["--namespace", bed.namespace, "--name", bed.name]
    out = cli("install", *target, "--image", "registry.example/mme-rep/provisioner:1")
    assert out.returncode == 0, out.stderr
    assert "installed:" in out.stdout
    again = cli("install", *target, "--image", "registry.example/mme-rep/provisioner:1")
    assert again.returncode == 0 and "0 changed" in again.stdout, again.stdout
    for cls, policy in ((CLASS_DELETE, "Delete"), (CLASS_RETAIN, "Retain")):
        sc = bed.kube.get("storage.k8s.io/v1", "StorageClass", cls)
        assert sc is not None and sc["reclaimPolicy"] == policy and sc["provisioner"] == bed.name
    drv = bed.kube.get("storage.k8s.io/v1", "CSIDriver", bed.name)
    assert drv is not None and drv["spec"]["storageCapacity"] is True
    ds = bed.kube.get("apps/v1", "DaemonSet", "mmerep-local-ssd-agent", bed.namespace)
    assert ds is not None
    agent = ds["spec"]["template"]["spec"]["containers"][0]
    assert agent["securityContext"]["capabilities"] == {
        "drop": ["ALL"], "add": ["CHOWN", "FOWNER", "DAC_OVERRIDE"]}
    # The real work runs as local processes against the installed classes.
    bed.start_agent(node)
    bed.start_controller()
    bed.wait_reports()
    bed.claim("keep", "40Mi", CLASS_RETAIN)
    bed.pod("job", "keep")
    wait_until(lambda: bound(bed, "keep"), 60, "the claim to bind")

    def status() -> dict:
        out = cli("status", *target, "-o", "json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    data = wait_until(lambda: (d := status()) and d["leader"] and d["disks"] and
                      sum(r["reserved"] for r in d["disks"]) == 40 * MiB and d, 120, "status")
    assert sorted(r["disk"] for r in data["disks"]) == ["disk0", "disk1"]
    assert {r["node"] for r in data["disks"]} == {node}
    assert sum(r["volumes"] for r in data["disks"]) == 1
    assert data["volumes"] == {"Bound": 1}
    table = cli("status", *target)
    assert table.returncode == 0 and node in table.stdout and "disk1" in table.stdout
    refused = cli("uninstall", *target)
    assert refused.returncode == 1 and "1 local-ssd volume(s) still exist" in refused.stderr
    assert bed.kube.get("storage.k8s.io/v1", "CSIDriver", bed.name) is not None
    # Retain: deleting the claim keeps the volume and its data.
    pv_name = bound(bed, "keep")["spec"]["volumeName"]  # type: ignore[index]
    bed.kube.request("DELETE", f"/api/v1/namespaces/{bed.namespace}/pods/job",
                     body={"gracePeriodSeconds": 0})
    bed.kube.delete("v1", "PersistentVolumeClaim", "keep", bed.namespace)
    wait_until(lambda: (pv := bed.kube.get("v1", "PersistentVolume", pv_name))
               and pv["status"].get("phase") == "Released", 60, "the PV to be Released")
    time.sleep(2)
    pv = bed.kube.get("v1", "PersistentVolume", pv_name)
    assert pv is not None and Path(pv["spec"]["local"]["path"]).is_dir()
    bed.kube.delete("v1", "PersistentVolume", pv_name)  # the admin gives the data up
    wait_until(lambda: not Path(pv["spec"]["local"]["path"]).exists(), 120, "the wipe")
    done = cli("uninstall", *target)
    assert done.returncode == 0, done.stderr
    assert bed.kube.get("storage.k8s.io/v1", "StorageClass", CLASS_DELETE) is None
    assert bed.kube.get("apps/v1", "Deployment", "mmerep-local-ssd-controller",
                        bed.namespace) is None
