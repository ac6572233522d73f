"""What ships for monitoring, as data: the rules (through the real promtool), the dashboard,
the PodMonitor, the monitor sidecar in the template, the metrics' bounds and the data-lake
sum; and the CLI's bad-input line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from mmerep import environments
from mmerep.condor import ExecutorSlots, JobSample, JobState
from mmerep.monitor.datalake import ReadThroughput, copied_bytes
from mmerep.monitor.metrics import JobUtilisation, Metrics, utilisation
from mmerep.monitor.objects import pod_monitor
from mmerep.profiles import validate
from mmerep.scaler.autoscaler import Metrics as ScalerMetrics
from mmerep.synclocal.metrics import Metrics as SynclocalMetrics

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed: run .ci/setup-tools.sh"
    return subprocess.run([binary, *args], cwd=MONITORING, capture_output=True, text=True,
                          timeout=120)


def test_the_rules_pass_promtool_check_and_their_unit_tests() -> None:
    check = promtool("check", "rules", "alerts.yaml")
    assert check.returncode == 0, check.stdout + check.stderr
    tested = promtool("test", "rules", "alerts_test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_test_where_it_fires_and_one_where_it_does_not() -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert {"MmerepFrozenJobs", "MmerepExecutorsCrashLooping", "MmerepQueueNotDraining",
            "MmerepSynclocalFailing", "MmerepProvisionedVolumeNearlyFull"} <= alerts
    cases = [c for t in yaml.safe_load((MONITORING / "alerts_test.yaml").read_text())["tests"]
             for c in t.get("alert_rule_test", [])]
    fires = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert fires == alerts and quiet == alerts


def _known_series() -> set[str]:
    names: set[str] = set()
    for metrics in (Metrics(), SynclocalMetrics(), ScalerMetrics()):
        for family in metrics.registry.collect():
            names |= {family.name, f"{family.name}_total", f"{family.name}_bucket",
                      f"{family.name}_count", f"{family.name}_sum"}
    return names


def test_the_dashboard_has_the_panels_operators_look_at_over_real_series() -> None:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    titles = [p["title"] for p in dashboard["panels"]]
    for wanted in ("Aggregated read speed from the data lake (MB/s)",
                   "Job CPU utilisation (least busy jobs)", "Queue", "Executors"):
        assert wanted in titles
    known = _known_series()
    functions = {"sum", "by", "rate", "increase", "avg", "histogram_quantile", "le"}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = set(re.findall(r"\b([a-z_]+)\s*(?:\{|\[)", target["expr"]))
            names |= set(re.findall(r"\b((?:mmerep|synclocal)_[a-z_]+)", target["expr"]))
            unknown = {n for n in names - functions if n not in known}
            assert not unknown, f"{panel['title']}: {unknown}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_pod_monitor_scrapes_the_metrics_ports_and_goes_with_the_scheduler() -> None:
    owner = {"metadata": {"name": "s3-scheduler", "uid": "u-1"}}
    obj = pod_monitor("s3", "ns", owner=owner)
    assert obj["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert obj["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/instance": "s3"}}
    assert [e["port"] for e in obj["spec"]["podMetricsEndpoints"]] == [
        "monitor-metrics", "metrics"]
    assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mme-rep"


def _render(**params: object) -> dict[str, dict]:
    profile = validate("dev-s3", {"namespace": "s3", "registry": "harbor.example.org",
                                  "project": "mme-rep"})
    rendered = environments.render_environment(profile, "htcondor-batch", "sentinel3:v0.1.0",
                                               resolve=False, params=params)
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in rendered.objects}


def test_the_monitor_is_a_locked_down_sidecar_of_the_scheduler_with_scrape_annotations() -> None:
    objs = _render(frozen_window_minutes=45, restart_budget=2)
    pod = objs["Deployment/sentinel3-scheduler"]["spec"]["template"]
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "monitor")
    command = container["command"]
    assert command[:6] == ["mme-rep", "monitor", "run", "--in-cluster", "--env", "sentinel3"]
    assert command[command.index("--window") + 1] == "2700"
    assert command[command.index("--restart-budget") + 1] == "2"
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9111"
    synclocal = objs["DaemonSet/sentinel3-synclocal"]["spec"]["template"]["metadata"]
    assert synclocal["annotations"]["prometheus.io/port"] == "9109"
    assert "ConfigMap/sentinel3-monitor-state" in objs


def test_the_monitor_role_can_delete_pods_and_record_events_but_no_secrets() -> None:
    objs = _render()
    rules = objs["Role/sentinel3-monitor"]["rules"]
    binding = objs["RoleBinding/sentinel3-monitor"]
    assert binding["subjects"][0]["name"] == "sentinel3-scaler"  # the scheduler pod's
    resources = {r for rule in rules for r in rule["resources"]}
    assert "secrets" not in resources and "deployments/scale" not in resources
    deployments = next(r for r in rules if r["resources"] == ["deployments"])
    assert deployments["verbs"] == ["get"] and deployments["resourceNames"] == [
        "sentinel3-scheduler"]
    state = next(r for r in rules if r["resources"] == ["configmaps"])
    assert state["resourceNames"] == ["sentinel3-monitor-state"]


def sample(job_id: str, cpu: float, wall: float, starts: int = 1) -> JobSample:
    return JobSample(job_id, "alice", JobState.RUNNING, cpu, 0.0, wall, starts, None, 0,
                     "e-1", False, False, 0.0, 2.0)


def test_cpu_utilisation_is_per_requested_cpu_and_its_series_are_bounded() -> None:
    before = {f"1.{i}": sample(f"1.{i}", 0, 0) for i in range(100)}
    after = [sample(f"1.{i}", i, 100) for i in range(100)] + [sample("2.0", 5, 5)]
    rows = utilisation(before, after)
    assert len(rows) == 100  # a job without a previous sample has no rate yet
    assert rows[50] == JobUtilisation("1.50", "alice", "e-1", 0.25)
    m = Metrics(CollectorRegistry(), max_job_series=10)
    m.job_utilisation(rows)
    text = generate_latest(m.registry).decode()
    series = [ln for ln in text.splitlines() if ln.startswith("mmerep_monitor_job_cpu_util")]
    assert len(series) == 10 and 'job="1.0"' in text and 'job="1.99"' not in text
    assert m.registry.get_sample_value("mmerep_monitor_running_job_cpu_utilisation_count") == 100
    m.pool([ExecutorSlots("a", 4, 1, 1, 1), ExecutorSlots("b", 4, 1)])
    assert m.registry.get_sample_value("mmerep_monitor_executors", {"state": "busy"}) == 1


def test_data_lake_reads_add_up_every_node_and_survive_a_daemon_restart() -> None:
    s = SynclocalMetrics()
    s.bytes.labels("olci").inc(1000)
    s.bytes.labels("slstr").inc(500)
    assert copied_bytes(generate_latest(s.registry).decode()) == 1500
    # Two nodes' endpoints over real HTTP; each path serves its own copied-bytes counter.
    values = {"/n1": 1000.0, "/n2": 4000.0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (f"# TYPE synclocal_copied_bytes counter\n"
                    f'synclocal_copied_bytes_total{{dataset="olci"}} {values[self.path]}\n')
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        reads = ReadThroughput(timeout=2)
        assert reads.observe([f"{base}/n1", f"{base}/n2"], 100.0) == (5000.0, 0.0, 2)
        values.update({"/n1": 3000.0, "/n2": 100.0})  # n2's daemon restarted
        closed = "http://127.0.0.1:1/metrics"  # a node that does not answer
        assert reads.observe([f"{base}/n1", f"{base}/n2", closed], 110.0) == (7100.0, 210.0, 2)
    finally:
        server.shutdown()


def test_monitor_run_without_an_environment_is_one_line_and_exit_2() -> None:
    out = subprocess.run([sys.executable, "-m", "mmerep", "monitor", "run"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: which environment? (mme-rep monitor run -F PROFILE ENV, or --in-cluster "
        "--env ENV in the scheduler pod)"]
