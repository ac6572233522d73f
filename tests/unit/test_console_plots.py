"""The console's plot data, its profile field and its table's new columns, as data."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mmerep.condor import ExecutorSlots, JobSample, JobState
from mmerep.console import views
from mmerep.console.access import access
from mmerep.console.live import table_rows
from mmerep.console.metrics import (
    parse_sample,
    prometheus_queries,
    range_seconds,
    sample_plots,
)
from mmerep.errors import UsageError
from mmerep.monitor.metrics import Metrics, utilisation
from mmerep.profiles import local_profile, validate

BASE = {"namespace": "s3", "registry": "harbor.example.org", "project": "mme-rep"}


def exposition() -> str:
    """The monitor's own metrics after two samples of three running jobs, 30 MB/s read."""
    m = Metrics(CollectorRegistry())

    def job(i: int, cpu: float, wall: float) -> JobSample:
        return JobSample(job_id=f"7.{i}", owner="ana", status=JobState.RUNNING,
                         cpu_user_s=cpu, cpu_system_s=0.0, wall_s=wall, starts=1,
                         checkpoint_time=None, bytes_read=0, executor="e1",
                         transferring_input=False, do_not_touch=False, sampled_at=wall)

    before = {f"7.{i}": job(i, 0.0, 10.0) for i in range(3)}
    after = [job(i, 2.0 * i, 20.0) for i in range(3)]
    m.queue(after)
    m.job_utilisation(utilisation(before, after))
    m.pool([ExecutorSlots("e1", cpus=4, memory_mb=8000, claimed_slots=1),
            ExecutorSlots("e2", cpus=4, memory_mb=8000)])
    m.read_rate.set(30e6)
    return generate_latest(m.registry).decode()


def test_a_sample_has_each_jobs_cpu_the_mean_the_reads_and_the_pool() -> None:
    s = parse_sample(exposition(), 100.0)
    assert s.jobs == {"7.0": 0.0, "7.1": 0.2, "7.2": 0.4}
    assert s.mean == pytest.approx(0.2)
    assert s.read_mb_s == 30.0
    assert s.pool == {"idle": 0, "running": 3, "busy": 1, "executors": 2}


def test_plots_from_samples_keep_the_range_asked_for() -> None:
    samples = [parse_sample(exposition(), t) for t in (100.0, 200.0, 300.0)]
    plots = sample_plots(samples, since=150.0)
    cpu = {line["label"]: line["points"] for line in plots["cpu"]["lines"]}
    assert set(cpu) == {"job 7.0", "job 7.1", "job 7.2", "mean"}
    assert cpu["job 7.2"] == [[200.0, 0.4], [300.0, 0.4]]
    assert plots["datalake"]["lines"] == [{"label": "read",
                                           "points": [[200.0, 30.0], [300.0, 30.0]]}]
    assert plots["datalake"]["unit"] == "MB/s"
    assert sample_plots([], since=0)["cpu"]["lines"] == []


def test_prometheus_queries_select_the_environments_monitor_only() -> None:
    q = prometheus_queries("s3", "sentinel3")
    matcher = 'namespace="s3",pod=~"sentinel3-scheduler-[a-z0-9]+-[a-z0-9]+"'
    assert q["cpu"]["{job}"] == f"bottomk(10, mmerep_monitor_job_cpu_utilisation{{{matcher}}})"
    assert q["datalake"]["read"] == ("sum(mmerep_monitor_datalake_read_bytes_per_second"
                                     f"{{{matcher}}}) / 1e+06")
    assert range_seconds("6h") == 21600 and range_seconds("nonsense") == 3600


def test_every_series_the_console_asks_prometheus_for_is_exported() -> None:
    """The executors plot reads the autoscaler's gauges, the others the monitor's: a
    renamed metric would leave a plot empty without an error."""
    import re

    from mmerep.monitor.metrics import Metrics as MonitorMetrics
    from mmerep.scaler.autoscaler import Metrics as ScalerMetrics

    exported = {family.name for m in (MonitorMetrics(), ScalerMetrics())
                for family in m.registry.collect()}  # gauges: the family is the series
    q = prometheus_queries("s3", "sentinel3")
    asked = {name for lines in q.values() for expr in lines.values()
             for name in re.findall(r"mmerep_[a-z_]+", expr)}
    assert asked - exported == set()
    assert set(q["executors"]) == {"desired", "current", "ready", "busy"}
    assert q["executors"]["ready"].startswith("max(mmerep_scaler_executors_ready{namespace=")


@pytest.mark.parametrize("url", ["http://prometheus.monitoring:9090",
                                 "https://prom.example.org/prometheus/"])
def test_a_profile_may_name_its_prometheus(url: str) -> None:
    profile = validate("dev", {**BASE, "prometheus": url})
    assert profile.prometheus == url.rstrip("/")
    assert profile.to_yaml_dict()["prometheus"] == url.rstrip("/")


@pytest.mark.parametrize(("url", "wrong"), [
    ("prometheus:9090", "is not an http(s) address"),
    ("ftp://prom:9090", "is not an http(s) address"),
    ("http://:9090", "is not an http(s) address"),
    ("http://prom:port", "is not an http(s) address"),
    ("http://admin:secret@prom:9090", "has a query, fragment or credentials"),
    ("http://prom:9090/?x=1", "has a query, fragment or credentials"),
])
def test_a_wrong_prometheus_address_is_one_clear_line(url: str, wrong: str) -> None:
    with pytest.raises(UsageError) as exc:
        validate("dev", {**BASE, "prometheus": url})
    assert exc.value.message == f"profile 'dev': prometheus '{url}' {wrong}"
    assert "http://prometheus.monitoring:9090" in str(exc.value.hint)


def record(env: str, revision: int, created: str, template: str = "htcondor-batch"
           ) -> dict[str, object]:
    return {"metadata": {"namespace": "s3", "name": f"{env}-r{revision}",
                         "creationTimestamp": created,
                         "labels": {"app.kubernetes.io/instance": env}},
            "data": {"revision": str(revision), "template": template, "status": "deployed",
                     "image": "x/s3:v1", "time": created}}


def daemonset(env: str) -> dict[str, object]:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"namespace": "s3", "name": f"{env}-synclocal", "generation": 1,
                         "labels": {"app.kubernetes.io/instance": env,
                                    "app.kubernetes.io/component": "synclocal"}},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 4,
                       "numberReady": 4, "updatedNumberScheduled": 4,
                       "numberAvailable": 4}}


def test_the_table_says_created_restarts_per_node_and_how_to_reach_it() -> None:
    rows = table_rows([record("s3", 2, "2026-12-01T10:00:00Z"),
                       record("s3", 1, "2026-12-01T09:00:00Z"),
                       record("notebooks", 1, "2026-12-01T11:00:00Z", "jupyter")],
                      [daemonset("s3")], {("s3", "s3"): 3}, {("s3", "s3"): ("scheduler",)})
    s3 = next(r for r in rows if r["name"] == "s3")
    assert (s3["created"], s3["restarts"], s3["per_node"], s3["ssh_components"]) == (
        "2026-12-01T09:00:00Z", 3, ["synclocal"], ["scheduler"])
    profile = dataclasses.replace(local_profile(), name="dev-s3", namespace="s3",
                                  ssh_domain="mmerep-general-dev")
    assert access(s3, profile) == ["s3-scheduler.dev-s3.mmerep-general-dev"]
    notebooks = next(r for r in rows if r["name"] == "notebooks")
    assert access(notebooks, profile) == ["mme-rep env open notebooks -F dev-s3"]
    web = dataclasses.replace(profile, ingress_domain="apps.example.org")
    assert access(notebooks, web)[0].startswith("https://notebooks.apps.example.org/")
    assert access(s3, dataclasses.replace(profile, namespace="other")) == []
    cells = views.row_cells({**s3, "access": access(s3, profile)})
    assert "4/4<span class=\"per-node\">synclocal: 1 per node</span>" in cells
    assert '<td class="restarts">3</td>' in cells
    assert '<time datetime="2026-12-01T09:00:00Z"' in cells
    assert "<code>s3-scheduler.dev-s3.mmerep-general-dev</code>" in cells


def test_ago_reads_like_a_person_would_say_it() -> None:
    stamp = "2026-12-01T10:00:00Z"
    from datetime import datetime

    t = datetime.fromisoformat("2026-12-01T10:00:00+00:00").timestamp()
    assert [views.ago(stamp, t + d) for d in (5, 125, 7300, 90000)] == [
        "5 s ago", "2 min ago", "2 h ago", "1 d ago"]


def test_a_prometheus_that_does_not_answer_is_said_on_the_page_not_raised() -> None:
    import socket

    from mmerep.console.metrics import PrometheusSource, plots_payload

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    payload = plots_payload(PrometheusSource(f"http://127.0.0.1:{port}", timeout=2),
                            "s3", "sentinel3", "15m")
    assert payload["plots"] == {} and payload["range"] == 900
    assert payload["error"].startswith(f"Prometheus at http://127.0.0.1:{port} did not answer")


def test_console_help_is_one_command_with_examples_at_80_columns() -> None:
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "mmerep", "console", "--help"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0] == "Usage: mme-rep console [OPTIONS]"
    assert all(len(line) <= 80 for line in lines), [x for x in lines if len(x) > 80]
    assert "  mme-rep console -F dev-s3 --port 8765 --open" in out.stdout
    assert "--install-completion" not in out.stdout and "<int range>" not in out.stdout


def test_plots_are_on_the_pages_of_environments_with_executors_only() -> None:
    status = {"namespace": "a", "name": "s3", "warnings": [], "stopped": [],
              "components": []}
    history = [{"revision": 1, "status": "deployed", "time": "t", "template": "x",
                "image": "i"}]
    batch = views.environment_page(status, history, csrf="t", executors=2,
                                   plots_source="prometheus")
    assert all(f'<svg id="{p}"' in batch for p in ("plot", "pool-plot", "cpu-plot",
                                                   "datalake-plot"))
    assert 'data-plots="/api/plots/a/s3"' in batch and "from Prometheus" in batch
    assert '<option value="1h" selected>' in batch
    shell = views.environment_page(status, history, csrf="t", executors=None)
    assert "<svg" not in shell and "data-plots" not in shell
