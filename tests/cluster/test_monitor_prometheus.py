"""A real Prometheus (Debian's package, on loopback, started here) scrapes the monitor and a
real synclocal daemon; the series, the recording rule, the alerting rules and every
dashboard query are checked through Prometheus' HTTP API."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import start_http_server

from mmerep.condor import JobState, MemoryPool
from mmerep.kube import Kube
from mmerep.monitor.detection import FrozenSettings
from mmerep.monitor.loop import Monitor
from mmerep.synclocal.daemon import Daemon
from mmerep.synclocal.layout import Layout

pytestmark = pytest.mark.cluster
MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
NAMESPACE_LABEL = "s3-prom"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def wait_for(base: str, expr: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = query(base, expr)
        except OSError:
            result = []
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


@pytest.fixture()
def synclocal_endpoint(tmp_path: Path) -> Iterator[str]:
    """A real synclocal daemon pass over 24 MB, its metrics on a loopback port."""
    bulk = tmp_path / "bulk" / "olci"
    bulk.mkdir(parents=True)
    for i in range(6):
        (bulk / f"granule-{i}.nc").write_bytes(os.urandom(4 * 1024 * 1024))
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(f"datasets: [{{name: olci, paths: [{bulk}]}}]\n")
    daemon = Daemon(Layout(tmp_path / "ssd"), manifest)
    assert daemon.run_pass().ok
    port = free_port()
    daemon.metrics.serve(port, addr="127.0.0.1")
    yield f"http://127.0.0.1:{port}/metrics"


@pytest.fixture()
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Prometheus on loopback with our rules; the test writes its scrape targets."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed: run .ci/setup-tools.sh"
    targets = tmp_path / "targets.json"
    targets.write_text("[]")
    config = tmp_path / "prometheus.yml"
    shutil.copy(MONITORING / "alerts.yaml", tmp_path / "alerts.yaml")
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "alerts.yaml")],
        "scrape_configs": [{"job_name": "mmerep", "file_sd_configs": [
            {"files": [str(targets)], "refresh_interval": "1s"}]}],
    }))
    port = free_port()
    log = (tmp_path / "log").open("w")
    proc = subprocess.Popen([binary, f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "log").read_text()[-2000:]
                assert time.monotonic() < deadline, "prometheus did not get ready"
                time.sleep(0.3)
        yield base, targets
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_prometheus_scrapes_the_monitor_and_synclocal(
        kube: Kube, prometheus: tuple[str, Path], synclocal_endpoint: str) -> None:
    base, targets = prometheus
    namespace = f"mp-{uuid.uuid4().hex[:8]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    pool = MemoryPool()
    for i in range(3):
        pool.add_executor(f"s3-executor-{i}", cpus=4)
    jobs = pool.submit(12)
    pool.schedule()  # 12 running on 3 executors
    idle = pool.submit(5, cpus=64)  # too big for any executor: they stay idle
    frozen = jobs[0]
    monitor = Monitor(kube, namespace, "s3", pool, interval=1,
                      frozen=FrozenSettings(window=3, startup_grace=0, restart_budget=10_000),
                      synclocal_urls=lambda: [synclocal_endpoint])
    monitor.metrics.max_job_series = 5
    port = free_port()
    start_http_server(port, addr="127.0.0.1", registry=monitor.metrics.registry)
    stop = threading.Event()

    def progress() -> None:  # every running job but one uses CPU; wall clocks go on
        while not stop.wait(0.5):
            pool.schedule()  # HTCondor starts vacated jobs again
            for job in pool.jobs():
                if job.status == JobState.RUNNING:
                    pool.update(job.job_id, wall_s=job.wall_s + 0.5,
                                cpu_user_s=job.cpu_user_s + (0 if job.job_id == frozen
                                                             else 0.4))

    feeder = threading.Thread(target=progress, daemon=True)
    loop = threading.Thread(target=monitor.run, daemon=True)
    feeder.start()
    loop.start()
    targets.write_text(json.dumps([
        {"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": NAMESPACE_LABEL,
                                                     "pod": "s3-scheduler-0"}},
        {"targets": [synclocal_endpoint.split("/")[2]],
         "labels": {"namespace": NAMESPACE_LABEL, "pod": "s3-synclocal-n1"}}]))
    try:
        up = wait_for(base, 'sum(up{job="mmerep"}) == 2')
        assert up, "both targets were not scraped"
        running = wait_for(base, 'mmerep_monitor_jobs{state="running"} == 12')
        assert running and running[0]["metric"]["namespace"] == NAMESPACE_LABEL
        assert wait_for(base, f'mmerep_monitor_jobs{{state="idle"}} == {len(idle)}')
        assert wait_for(base, 'mmerep_monitor_executors{state="busy"} == 3')
        # The frozen job is found, vacated, and shows as a restart once it runs again.
        assert wait_for(base, "mmerep_monitor_frozen_jobs_detected_total >= 1", 30)
        assert wait_for(base, 'mmerep_monitor_frozen_jobs_acted_total{action="vacate"} >= 1')
        assert wait_for(base, "mmerep_monitor_job_restarts_total >= 1")
        # Per-job utilisation: bounded, the least busy first, fractions of a CPU.
        per_job = wait_for(base, "mmerep_monitor_job_cpu_utilisation")
        assert 0 < len(per_job) <= 5
        assert all(0.0 <= float(s["value"][1]) <= 1.0 for s in per_job)
        assert wait_for(base, "mmerep_monitor_running_job_cpu_utilisation_count > 0")
        # synclocal's own series, and the monitor's sum of them: 24 MB from the data lake.
        copied = wait_for(base, "synclocal_copied_bytes_total")
        assert float(copied[0]["value"][1]) == 24 * 1024 * 1024
        lake = wait_for(base, "mmerep_monitor_datalake_read_bytes == 25165824")
        assert lake, query(base, "mmerep_monitor_datalake_read_bytes")
        assert wait_for(base, "mmerep_monitor_synclocal_targets_up == 1")
        assert wait_for(base, "namespace:mmerep_datalake_read_bytes:rate5m")
        # The rules loaded healthy; the frozen-job alert fires from the monitor's series.
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=10) as r:
            groups = json.load(r)["data"]["groups"]
        rules = [rule for g in groups for rule in g["rules"]]
        assert len(rules) == 11 and all(rule["health"] == "ok" for rule in rules), rules
        assert wait_for(base, 'ALERTS{alertname="MmerepFrozenJobs"}', 30)
        # Every dashboard query is valid PromQL for this Prometheus, and the main panels
        # have data.
        dashboard = json.loads((MONITORING / "dashboard.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$namespace", ".*")
                query(base, expr)  # raises on a bad expression
        for title in ("Aggregated read speed from the data lake (MB/s)",
                      "Job CPU utilisation (least busy jobs)", "Queue", "Executors"):
            panel = next(p for p in dashboard["panels"] if p["title"] == title)
            expr = panel["targets"][0]["expr"].replace("$namespace", ".*")
            assert wait_for(base, expr), f"panel {title!r} has no data: {expr}"
    finally:
        stop.set()
        monitor.stop.set()
        loop.join(timeout=10)
        kube.delete("v1", "Namespace", namespace, propagation="Background")
