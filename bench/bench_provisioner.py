"""Benchmark: 1,000 claims with their pods on 20 simulated nodes, provisioned by the
local-SSD provisioner, against the same 1,000 claims bound to pre-created static local
PVs (no provisioner: what the scheduler and the PV controller cost on their own).

Reports: time until every claim is bound (each way), the ratio, and the provisioner's own
latency (the scheduler's node choice -> PV created), p50 and p99, measured two ways:

- ``own_latency_*``: by an observer outside the controller, per claim and exactly: the
  bench watches the claims and the PVs, and takes the time from the first event showing
  the claim's ``volume.kubernetes.io/selected-node`` (the node its PV went to) to the
  PV's ADDED event. Both arrive on the same observer's watches, so their delivery delay
  cancels out; what remains is the controller's watch, queue, ledger write and PV create.
- ``histogram_*``: the controller's own ``local_ssd_provision_seconds`` histogram (from
  its watch event to the PV create's answer), as ``histogram_quantile`` would compute it:
  interpolated inside buckets, so only as exact as the bucket bounds.

Disks are loop-mounted XFS images when run as root with mkfs.xfs, else plain directories
(``--any-dir``). "All bound" is when the observer's claim watch saw the last claim Bound
(the bench does not list the claims over and over: that loaded the API server it
measures).

Kept in ``$TMPDIR/mmerep-bench-provisioner-logs`` for a look at where the time went: the
controller's log (``--verbose``: per PV, monotonic times of its watch event, pick-up,
request and answer), ``observer.json`` (per claim, the observer's monotonic times of
the node choice and the PV), and the API server's metrics before and after the burst.

    python bench/bench_provisioner.py [--claims 1000 --nodes 20] [--no-static]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

MiB = 1 << 20
NAME = "bench.local-ssd.mme-rep.io"
NS = "bench-provisioner"
LOGS = Path(tempfile.gettempdir()) / "mmerep-bench-provisioner-logs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mount(image: Path, mnt: Path, size: int) -> bool:
    mkfs = shutil.which("mkfs.xfs") or "/usr/sbin/mkfs.xfs"
    if os.geteuid() != 0 or not os.path.exists(mkfs):
        mnt.mkdir(parents=True, exist_ok=True)
        return False
    with image.open("wb") as f:
        f.truncate(size)
    subprocess.run([mkfs, "-q", str(image)], check=True, capture_output=True)
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True,
                   capture_output=True)
    return True


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) pairs."""
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            span = count - prev_count
            return prev_bound + (bound - prev_bound) * ((rank - prev_count) / span if span else 0)
        prev_bound, prev_count = bound, count
    return prev_bound


def _latency(port: int) -> tuple[float, float, int]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith("local_ssd_provision_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    return _quantile(0.5, buckets), _quantile(0.99, buckets), int(buckets[-1][1])


class Observer:
    """Times each claim from the first sight of the node it is provisioned on to the first
    sight of its PV, on watches of its own (one on the claims, one on the PVs), and notes
    when each claim is first seen Bound (so the bench never lists 1,000 claims over and
    over, which would load the API server it measures).

    Each watch request lasts up to a minute: a new request (a new TLS connection) every
    few seconds would hold back the events sent meanwhile and blur the timings."""

    def __init__(self, kube: Any, provisioner: str) -> None:
        self.kube = kube
        self.provisioner = provisioner
        self.stop = threading.Event()
        self.selected: dict[str, tuple[str, float]] = {}  # claim uid -> (node, first seen)
        self.created: dict[str, tuple[str, float]] = {}  # claim uid -> (node, PV seen)
        self.bound: dict[str, float] = {}  # claim uid -> first seen Bound
        self._threads = [threading.Thread(target=self._claims, daemon=True),
                         threading.Thread(target=self._pvs, daemon=True)]

    def __enter__(self) -> Observer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()  # the threads end with their current watch request (daemons)

    def _claims(self) -> None:
        from provisioner import objects as o

        for event in self.kube.watch("v1", "PersistentVolumeClaim", NS, timeout=7200,
                                     stop=self.stop, chunk=60):
            now = time.monotonic()
            claim = event["object"]
            meta = claim["metadata"]
            node = (meta.get("annotations") or {}).get(o.ANN_SELECTED_NODE)
            if node and self.selected.get(meta["uid"], ("",))[0] != node:
                self.selected[meta["uid"]] = (node, now)  # a new choice restarts the clock
            if (claim.get("status") or {}).get("phase") == "Bound":
                self.bound.setdefault(meta["uid"], now)

    def _pvs(self) -> None:
        from provisioner import objects as o

        for event in self.kube.watch("v1", "PersistentVolume", timeout=7200, stop=self.stop,
                                     chunk=60, label_selector=f"{o.LABEL_PROVISIONER}="
                                     f"{self.provisioner}"):
            pv = event["object"]
            uid = (pv["spec"].get("claimRef") or {}).get("uid")
            if event["type"] == "ADDED" and uid and uid not in self.created:
                self.created[uid] = (o.pv_node(pv) or "", time.monotonic())

    def latencies(self) -> list[float]:
        out = []
        for uid, (node, at) in self.created.items():
            chosen = self.selected.get(uid)
            if chosen and chosen[0] == node:
                out.append(at - chosen[1])
        return sorted(out)


def _breakdown(log: Path, observer: Observer) -> dict[str, list[float]]:
    """Each claim's own latency in three parts, from the controller's ``timing`` lines and
    the observer's times (one monotonic clock): node choice seen -> create request sent
    (watch, queue, ledger), request -> answer (the API server), answer -> PV seen by the
    observer (the server's watch delivery)."""
    sent: dict[str, tuple[float, float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        if "(timing " in line:
            fields = dict(f.split("=", 1) for f in line.rsplit("(timing ", 1)[1].rstrip(")")
                          .split()[1:])
            uid = line.rsplit("(timing ", 1)[1].split()[0]
            sent[uid] = (float(fields["sent"]), float(fields["answered"]))
    parts: dict[str, list[float]] = {"to_request": [], "request": [], "to_observer": []}
    for uid, (node, seen_pv) in observer.created.items():
        chosen = observer.selected.get(uid)
        if uid in sent and chosen and chosen[0] == node:
            parts["to_request"].append(sent[uid][0] - chosen[1])
            parts["request"].append(sent[uid][1] - sent[uid][0])
            parts["to_observer"].append(seen_pv - sent[uid][1])
    return {k: sorted(v) for k, v in parts.items()}


def _exact(q: float, values: list[float]) -> float:
    """The nearest-rank quantile of sorted ``values``."""
    if not values:
        return float("nan")
    return values[max(0, math.ceil(q * len(values)) - 1)]


def _server_metrics(kube: Any, path: Path) -> None:
    """The API server's own metrics (requests by resource, verb and client), kept with the
    logs: what else it was busy with during the burst."""
    try:
        path.write_bytes(kube.transport.send("GET", "/metrics", timeout=30).read())
    except OSError as exc:
        path.write_text(f"# not read: {exc}\n")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pod(i: int, claim: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"job-{i:04d}",
                                                            "namespace": NS},
            "spec": {"containers": [{"name": "job", "image": "busybox", "volumeMounts": [
                {"name": "s", "mountPath": "/scratch"}]}],
                     "nodeSelector": {"mme-rep/local-ssd": "true"},
                     "volumes": [{"name": "s", "persistentVolumeClaim": {"claimName": claim}}]}}


def _claim(name: str, cls: str, size: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                     "resources": {"requests": {"storage": str(size)}}}}


def _burst(kube: Any, observer: Observer, claims: int, cls: str, size: int,
           timeout: float) -> float:
    """Create the claims and pods (8 at a time), return seconds until all are bound (as the
    observer's claim watch saw them; listed only if that watch stalls)."""
    started = time.monotonic()
    created = kube.map(lambda i: (kube.create(_claim(f"c{i:04d}", cls, size)),
                                  kube.create(_pod(i, f"c{i:04d}")))[0], list(range(claims)))
    uids = {c["metadata"]["uid"] for c in created}
    progress, last_progress = -1, time.monotonic()
    while True:
        seen = [observer.bound[u] for u in uids if u in observer.bound]
        if len(seen) == claims:
            return max(seen) - started
        if len(seen) != progress:
            progress, last_progress = len(seen), time.monotonic()
        # Listed only when the watch saw nothing new for 10 s (fell behind or broke): a
        # listing of 1,000 claims every few seconds stalled the API server being measured.
        if time.monotonic() - last_progress > 10:
            last_list = last_progress = time.monotonic()
            items = kube.list_objects("v1", "PersistentVolumeClaim", NS)
            if sum(1 for c in items if c["metadata"]["uid"] in uids and
                   c.get("status", {}).get("phase") == "Bound") == claims:
                return max([*seen, last_list]) - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"only {len(seen)}/{claims} claims bound after {timeout:.0f}s")
        time.sleep(0.05)


def _clear(kube: Any) -> None:
    """Pods, claims and PVs gone (collections deleted at once, no grace), namespace kept."""
    opts = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}
    kube.request("DELETE", f"/api/v1/namespaces/{NS}/pods", body=opts)
    kube.request("DELETE", f"/api/v1/namespaces/{NS}/persistentvolumeclaims", body=opts)
    deadline = time.monotonic() + 300
    while (kube.list_objects("v1", "Pod", NS) or kube.list_objects(
            "v1", "PersistentVolumeClaim", NS)) and time.monotonic() < deadline:
        time.sleep(1)
    kube.request("DELETE", "/api/v1/persistentvolumes", body=opts)
    while kube.list_objects("v1", "PersistentVolume") and time.monotonic() < deadline:
        time.sleep(1)


def run(claims: int = 1000, nodes: int = 20, static_baseline: bool = True,
        etcd_fsync: bool = False) -> list[dict[str, Any]]:
    from mmerep.cluster import local
    from provisioner import objects as o
    from testkit.private_cluster import private_cluster

    with private_cluster("mmerep-bench-prov-") as work, contextlib.ExitStack() as stack:
        local.up(local.ClusterSpec(nodes=nodes, etcd_fsync=etcd_fsync))
        kube = local.connect()
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        names = [f"{local.NODE_PREFIX}{i}" for i in range(1, nodes + 1)]
        mounts, procs = [], []
        size = 2 * MiB
        per_node = -(-claims // nodes) * size * 3 + 300 * MiB
        real = False
        try:
            for node in names:
                mnt = work / "nodes" / node / "disk0"
                real = _mount(work / f"{node}.img", mnt, per_node)
                if real:
                    mounts.append(mnt)
            cls = o.storage_class("bench-local-ssd", "Delete", NAME)
            kube.apply(cls)
            port = _free_port()
            kc = ["--kubeconfig", str(local.kubeconfig_path()), "--context", local.CONTEXT,
                  "--namespace", NS, "--name", NAME]
            logs = LOGS  # kept after the run, for a look at what the controller did
            shutil.rmtree(logs, ignore_errors=True)
            logs.mkdir(parents=True)
            py = [sys.executable, "-m", "mmerep", "provisioner", "run"]
            # MMEREP_BENCH_RESERVE_AHEAD=0 measures the write-first path (no set-aside bytes).
            ahead = ["--reserve-ahead", os.environ["MMEREP_BENCH_RESERVE_AHEAD"]] \
                if os.environ.get("MMEREP_BENCH_RESERVE_AHEAD") else []
            procs.append(subprocess.Popen([*py, "controller", *kc, "--metrics-port", str(port),
                                           "--verbose", *ahead],
                                          stdout=(logs / "controller.log").open("wb"),
                                          stderr=subprocess.STDOUT))
            for node in names:
                procs.append(subprocess.Popen(
                    [*py, "agent", *kc, "--node", node, "--root", str(work / "nodes" / node),
                     *([] if real else ["--any-dir"])],
                    stdout=(logs / f"agent-{node}.log").open("wb"), stderr=subprocess.STDOUT))
            deadline = time.monotonic() + 120
            while len(kube.list_objects("storage.k8s.io/v1", "CSIStorageCapacity", NS)) < nodes:
                if time.monotonic() > deadline:
                    raise RuntimeError("agents and controller did not publish capacity")
                time.sleep(0.5)
            load = os.getloadavg()[0]
            _server_metrics(kube, logs / "apiserver-before.txt")
            cpu_before = [_cpu_seconds(p.pid) for p in procs]
            components = {n: pid for n, (pid, alive) in local.component_states().items()
                          if pid and alive}
            cluster_before = {n: _cpu_seconds(pid) for n, pid in components.items()}
            own_before = time.process_time()
            observer = stack.enter_context(Observer(kube, NAME))  # watches both bursts
            dynamic = _burst(kube, observer, claims, "bench-local-ssd", size, 600)
            deadline = time.monotonic() + 30
            while len(observer.created) < claims and time.monotonic() < deadline:
                time.sleep(0.2)
            own = observer.latencies()
            parts = _breakdown(logs / "controller.log", observer)
            _server_metrics(kube, logs / "apiserver-after.txt")
            # Per claim, for a look at where the time went (monotonic clock, the same as
            # the controller's --verbose "timing" lines).
            (logs / "observer.json").write_text(json.dumps(
                {"selected": observer.selected, "created": observer.created}))
            p50, p99, count = _latency(port)
            # CPU seconds during the burst (the agents' start-up left out)
            cpu_used = [_cpu_seconds(p.pid) - before for p, before in zip(procs, cpu_before,
                                                                          strict=True)]
            controller_cpu, agents_cpu = cpu_used[0], sum(cpu_used[1:])
            # Where the machine's CPU went during the burst: the control plane's components,
            # the simulated nodes (kwok) and the bench itself (the users creating claims).
            cluster_cpu = {n: _cpu_seconds(pid) - cluster_before[n]
                           for n, pid in components.items()}
            cluster_cpu["bench"] = time.process_time() - own_before
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)
            procs.clear()
            if not static_baseline:
                return [{**_row(claims, nodes, dynamic, None, own, parts, (p50, p99, count),
                                (controller_cpu, agents_cpu), load, real, cluster_cpu),
                         "etcd_fsync": "yes" if etcd_fsync else "no"}]
            _clear(kube)
            # The baseline: the same claims against pre-created static local PVs.
            kube.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                        "metadata": {"name": "bench-static-local"},
                        "provisioner": "kubernetes.io/no-provisioner",
                        "volumeBindingMode": "WaitForFirstConsumer"})
            pvs = []
            for i in range(claims):
                node = names[i % nodes]
                pvs.append({"apiVersion": "v1", "kind": "PersistentVolume",
                            "metadata": {"name": f"static-{i:04d}"},
                            "spec": {"capacity": {"storage": str(size)},
                                     "accessModes": ["ReadWriteOnce"],
                                     "persistentVolumeReclaimPolicy": "Retain",
                                     "storageClassName": "bench-static-local",
                                     "local": {"path": f"/mnt/static/{i}"},
                                     "nodeAffinity": {"required": {"nodeSelectorTerms": [
                                         {"matchExpressions": [{
                                             "key": "kubernetes.io/hostname",
                                             "operator": "In", "values": [node]}]}]}}}})
            kube.map(kube.create, pvs)
            static = _burst(kube, observer, claims, "bench-static-local", size, 600)
        finally:
            for p in procs:
                p.kill()
            for mnt in mounts:
                subprocess.run(["umount", str(mnt)], capture_output=True, check=False)
    return [{**_row(claims, nodes, dynamic, static, own, parts, (p50, p99, count),
                    (controller_cpu, agents_cpu), load, real, cluster_cpu),
             "etcd_fsync": "yes" if etcd_fsync else "no"}]


def _row(claims: int, nodes: int, dynamic: float, static: float | None, own: list[float],
         parts: dict[str, list[float]], histogram: tuple[float, float, int],
         cpu: tuple[float, float], load: float, real: bool,
         cluster_cpu: dict[str, float]) -> dict[str, Any]:
    p50, p99, count = histogram
    return {"case": f"{claims} claims+pods on {nodes} nodes",
            "provisioner_all_bound_s": f"{dynamic:.1f}",
            "static_pvs_all_bound_s": "-" if static is None else f"{static:.1f}",
            "ratio": "-" if static is None else f"{dynamic / static:.2f}x",
            "own_latency_p50_ms": f"{_exact(0.5, own) * 1000:.1f}",
            "own_latency_p99_ms": f"{_exact(0.99, own) * 1000:.1f}",
            "own_latency_max_ms": f"{(own[-1] if own else float('nan')) * 1000:.1f}",
            "own_samples": len(own),
            # where it went (p50/p99 of each part; the parts' p99s need not add up)
            **{f"{k}_p50/p99_ms": f"{_exact(0.5, v) * 1000:.0f}/{_exact(0.99, v) * 1000:.0f}"
               for k, v in parts.items()},
            "histogram_p50_ms": f"{p50 * 1000:.1f}",
            "histogram_p99_ms": f"{p99 * 1000:.1f}",
            "histogram_samples": count,
            "controller_cpu_s": f"{cpu[0]:.1f}",
            "agents_cpu_s": f"{cpu[1]:.1f}",
            **{f"{name}_cpu_s": f"{used:.1f}" for name, used in sorted(cluster_cpu.items())},
            "load_at_start": f"{load:.1f}",
            "disks": "xfs loop" if real else "directories"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--no-static", action="store_true",
                        help="skip the static-PV baseline (quicker runs of the provisioner)")
    parser.add_argument("--etcd-fsync", action="store_true",
                        help="the local cluster's etcd syncs every commit to disk (it does "
                             "not by default: see local.ClusterSpec)")
    args = parser.parse_args()
    for row in run(args.claims, args.nodes, not args.no_static, args.etcd_fsync):
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testkit
    sys.exit(main())
