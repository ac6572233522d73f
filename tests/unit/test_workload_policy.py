"""What a platform team's admission review checks, on the rendered objects (no cluster):
probes, disruption budgets, scratch space, egress, priorities, spread, pull policy, IDs."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml

from mmerep import environments, templates, workload_policy
from mmerep.errors import UsageError
from mmerep.profiles import validate

BASE = {"namespace": "s3", "registry": "harbor.example.org", "project": "mme-rep",
        "requests": {"cpu": "2", "memory": "10G"}}
TEMPLATES = ("htcondor-batch", "jupyter", "interactive")


def render(template: str = "htcondor-batch", params: dict[str, Any] | None = None,
           **profile: Any) -> dict[str, dict[str, Any]]:
    rendered = environments.render_environment(validate("dev-s3", {**BASE, **profile}),
                                               template, "sentinel3:v0.1.0", resolve=False,
                                               params=params)
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in rendered.objects}


def pod(objs: dict[str, dict[str, Any]], workload: str) -> dict[str, Any]:
    kind = "DaemonSet" if workload.endswith("synclocal") else "Deployment"
    spec: dict[str, Any] = objs[f"{kind}/{workload}"]["spec"]["template"]["spec"]
    return spec


def container(objs: dict[str, dict[str, Any]], workload: str, name: str) -> dict[str, Any]:
    return next(c for c in pod(objs, workload)["containers"] if c["name"] == name)


# -- probes ------------------------------------------------------------------------------

SERVICE_PORTS = [  # (template, workload, container, the port its service answers on)
    ("htcondor-batch", "sentinel3-collector", "collector", 9618),
    ("htcondor-batch", "sentinel3-scheduler", "schedd", 9618),
    ("htcondor-batch", "sentinel3-scheduler", "sshd", 2222),
    ("htcondor-batch", "sentinel3-executor", "startd", 9618),
    ("interactive", "sentinel3-interactive", "sshd", 2222),
]


@pytest.mark.parametrize(("template", "workload", "name", "port"), SERVICE_PORTS)
def test_long_running_containers_are_probed_on_their_service_port(
        template: str, workload: str, name: str, port: int) -> None:
    c = container(render(template), workload, name)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["tcpSocket"] == {"port": port}, probe
    # Liveness gives up only after several misses, not on one slow answer.
    assert c["livenessProbe"]["failureThreshold"] * c["livenessProbe"]["periodSeconds"] >= 60


def test_jupyter_is_probed_on_its_api_and_synclocal_on_its_metrics() -> None:
    jupyter = container(render("jupyter", params={"port": "9999"}), "sentinel3-jupyter",
                        "jupyter")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert jupyter[probe]["httpGet"] == {"path": "/api", "port": 9999}
    synclocal = container(render(), "sentinel3-synclocal", "synclocal")
    assert synclocal["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": 9109}
    assert synclocal["livenessProbe"]["httpGet"]["port"] == 9109


def startup_window(probe: dict[str, Any]) -> int:
    return int(probe["periodSeconds"] * probe["failureThreshold"])


def test_htcondor_start_up_probes_allow_its_slow_start() -> None:
    objs = render()
    for workload, name in (("sentinel3-collector", "collector"),
                           ("sentinel3-scheduler", "schedd"), ("sentinel3-executor", "startd")):
        assert startup_window(container(objs, workload, name)["startupProbe"]) >= 300
    # sshd starts in a blink: it is not given HTCondor's minutes.
    assert startup_window(container(objs, "sentinel3-scheduler", "sshd")["startupProbe"]) <= 60
    slow = render(params={"condor_startup_seconds": "905"})
    window = startup_window(container(slow, "sentinel3-collector", "collector")["startupProbe"])
    assert window == 10 * math.ceil(905 / 10)


# -- disruption budgets -------------------------------------------------------------------

def test_executor_budget_is_a_share_of_the_pool_so_it_follows_scale() -> None:
    objs = render()
    pdb = objs["PodDisruptionBudget/sentinel3-executor"]["spec"]
    assert pdb["maxUnavailable"] == "10%" and "minAvailable" not in pdb
    labels = objs["Deployment/sentinel3-executor"]["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    wider = render(params={"executor_disruption_percent": "25"})
    assert wider["PodDisruptionBudget/sentinel3-executor"]["spec"]["maxUnavailable"] == "25%"


def test_collector_and_scheduler_are_not_drained_away_unless_asked() -> None:
    objs = render()
    for role in ("collector", "scheduler"):
        pdb = objs[f"PodDisruptionBudget/sentinel3-{role}"]["spec"]
        assert pdb["minAvailable"] == 1
        labels = objs[f"Deployment/sentinel3-{role}"]["spec"]["template"]["metadata"]["labels"]
        assert pdb["selector"]["matchLabels"].items() <= labels.items()
    unprotected = render(params={"protect_control": "false"})
    assert [k for k in unprotected if k.startswith("PodDisruptionBudget/")] == [
        "PodDisruptionBudget/sentinel3-executor"]


# -- scratch space ------------------------------------------------------------------------

def test_executor_scratch_is_requested_and_limited() -> None:
    startd = container(render(), "sentinel3-executor", "startd")
    assert startd["resources"]["requests"]["ephemeral-storage"] == "20Gi"
    assert startd["resources"]["limits"]["ephemeral-storage"] == "20Gi"
    execute = next(v for v in pod(render(), "sentinel3-executor")["volumes"]
                   if v["name"] == "execute")
    assert execute == {"name": "execute", "emptyDir": {"sizeLimit": "20Gi"}}
    from_profile = container(render(scratch="200Gi"), "sentinel3-executor", "startd")
    assert from_profile["resources"]["limits"]["ephemeral-storage"] == "200Gi"
    from_param = container(render(params={"scratch": "50Gi"}, scratch="200Gi"),
                           "sentinel3-executor", "startd")
    assert from_param["resources"]["requests"]["ephemeral-storage"] == "50Gi"


def test_scratch_is_a_local_ssd_volume_when_the_profile_names_the_class() -> None:
    objs = render(params={"scratch": "300Gi"}, storage_classes={"local-ssd": "fast-ssd"})
    execute = next(v for v in pod(objs, "sentinel3-executor")["volumes"]
                   if v["name"] == "execute")
    claim = execute["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "fast-ssd"
    assert claim["resources"]["requests"]["storage"] == "300Gi"
    assert claim["accessModes"] == ["ReadWriteOnce"]
    # What is left on the node's own disk is logs and run files: a small, fixed amount.
    startd = container(objs, "sentinel3-executor", "startd")
    assert startd["resources"]["limits"]["ephemeral-storage"] == "2Gi"
    off = render(storage_classes={"local-ssd": "fast-ssd"}, scratch_volume=False)
    assert {"name": "execute", "emptyDir": {"sizeLimit": "20Gi"}} in pod(
        off, "sentinel3-executor")["volumes"]


# -- egress ----------------------------------------------------------------------------------

ENDPOINTS = {"bulk": ["10.20.0.0/16:2049"], "datalake": ["192.0.2.10/32:443,9000"]}


def test_egress_allows_dns_the_pool_and_declared_endpoints_only() -> None:
    objs = render(egress={"endpoints": ENDPOINTS})
    policy = objs["NetworkPolicy/sentinel3-egress"]["spec"]
    assert policy["policyTypes"] == ["Egress"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/instance": "sentinel3"}}
    rules = policy["egress"]
    assert rules[0] == {"ports": [{"port": 53, "protocol": "UDP"},
                                  {"port": 53, "protocol": "TCP"}]}
    assert rules[1] == {"to": [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/instance": "sentinel3"}}}], "ports": [{"port": 9618,
                                                                  "protocol": "TCP"}]}
    assert rules[2:] == [
        {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 2049,
                                                                  "protocol": "TCP"}]},
        {"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}],
         "ports": [{"port": 443, "protocol": "TCP"}, {"port": 9000, "protocol": "TCP"}]}]
    assert all(rule.get("to") or rule["ports"][0]["port"] == 53 for rule in rules)


def test_only_the_scaler_and_synclocal_reach_the_api_server() -> None:
    objs = render()
    api = objs["NetworkPolicy/sentinel3-egress-api"]["spec"]
    assert api["podSelector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/component", "operator": "In",
         "values": ["scheduler", "synclocal"]}]
    assert api["egress"] == [{"ports": [{"port": 443, "protocol": "TCP"},
                                        {"port": 6443, "protocol": "TCP"}]}]
    assert pod(objs, "sentinel3-scheduler")["serviceAccountName"] == "sentinel3-scaler"
    pinned = render(egress={"api_server": ["10.96.0.1/32:443"]},
                    ).get("NetworkPolicy/sentinel3-egress-api")
    assert pinned is not None
    assert pinned["spec"]["egress"] == [{"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}],
                                         "ports": [{"port": 443, "protocol": "TCP"}]}]
    no_labels = render(params={"synclocal_node_labels": "false"})
    assert no_labels["NetworkPolicy/sentinel3-egress-api"]["spec"]["podSelector"][
        "matchExpressions"][0]["values"] == ["scheduler"]


@pytest.mark.parametrize("template", ["jupyter", "interactive"])
def test_single_pod_environments_get_dns_and_endpoints_only(template: str) -> None:
    rules = render(template, egress={"endpoints": ENDPOINTS})[
        "NetworkPolicy/sentinel3-egress"]["spec"]["egress"]
    assert rules[0]["ports"][0] == {"port": 53, "protocol": "UDP"}
    assert [r["to"][0]["ipBlock"]["cidr"] for r in rules[1:]] == ["10.20.0.0/16",
                                                                  "192.0.2.10/32"]


@pytest.mark.parametrize("template", TEMPLATES)
def test_open_egress_is_a_profile_switch(template: str) -> None:
    objs = render(template, egress={"open": True})
    assert not [k for k in objs if "egress" in k]


# -- priorities and spread ------------------------------------------------------------------

def test_priority_classes_made_when_the_profile_allows_cluster_objects() -> None:
    objs = render(cluster_objects=True)
    control = objs["PriorityClass/mmerep-s3-sentinel3-control"]
    executor = objs["PriorityClass/mmerep-s3-sentinel3-executor"]
    assert control["value"] > executor["value"]
    assert executor["preemptionPolicy"] == "Never" and not executor["globalDefault"]
    assert "namespace" not in control["metadata"]  # cluster-scoped
    assert control["metadata"]["labels"]["mme-rep/namespace"] == "s3"
    for workload in ("sentinel3-collector", "sentinel3-scheduler"):
        assert pod(objs, workload)["priorityClassName"] == "mmerep-s3-sentinel3-control"
    assert pod(objs, "sentinel3-executor")["priorityClassName"] == "mmerep-s3-sentinel3-executor"


def test_named_existing_priority_classes_otherwise() -> None:
    objs = render(priority_classes={"control": "site-high", "executor": "site-batch"})
    assert not [k for k in objs if k.startswith("PriorityClass/")]
    assert pod(objs, "sentinel3-collector")["priorityClassName"] == "site-high"
    assert pod(objs, "sentinel3-executor")["priorityClassName"] == "site-batch"
    plain = render()
    assert all("priorityClassName" not in pod(plain, w) for w in (
        "sentinel3-collector", "sentinel3-scheduler", "sentinel3-executor"))


def test_executors_spread_across_nodes() -> None:
    objs = render()
    [spread] = pod(objs, "sentinel3-executor")["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["maxSkew"] == 1
    # Soft: a pool larger than the node count must still schedule.
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    labels = objs["Deployment/sentinel3-executor"]["spec"]["template"]["metadata"]["labels"]
    assert spread["labelSelector"]["matchLabels"].items() <= labels.items()


# -- pull policy and identity ------------------------------------------------------------

@pytest.mark.parametrize("template", TEMPLATES)
def test_pull_policy_is_explicit_and_ids_come_from_the_profile(template: str) -> None:
    objs = render(template, uid=100042, gid=200042)
    pods = [o["spec"]["template"]["spec"] for o in objs.values()
            if o["kind"] in ("Deployment", "DaemonSet")]
    assert pods
    for spec in pods:
        assert spec["securityContext"]["runAsUser"] == 100042
        assert spec["securityContext"]["runAsGroup"] == 200042
        assert spec["securityContext"]["fsGroup"] == 200042
        for c in spec["containers"]:
            assert c["imagePullPolicy"] == "IfNotPresent"
    default = next(o for o in render(template).values() if o["kind"] == "Deployment")
    assert default["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 1000
    gid_follows = next(o for o in render(template, uid=5000).values() if o["kind"] == "Deployment")
    assert gid_follows["spec"]["template"]["spec"]["securityContext"]["runAsGroup"] == 5000


@pytest.mark.parametrize(("raw", "message"), [
    ({"uid": 0}, "uid '0' is not a non-root numeric ID"),
    ({"gid": "abc"}, "gid 'abc' is not a non-root numeric ID"),
    ({"scratch": "lots"}, "scratch"),
    ({"scratch_volume": "yes"}, "scratch_volume must be true or false"),
    ({"egress": {"endpoints": {"bulk": ["nfs.example.org:2049"]}}},
     "egress.endpoints.bulk 'nfs.example.org:2049' is not CIDR[:PORTS]"),
    ({"egress": {"endpoints": {"bulk": ["10.0.0.0/33:2049"]}}}, "no valid network address"),
    ({"egress": {"endpoints": {"bulk": ["10.0.0.0/8:70000"]}}}, "port '70000' is not 1-65535"),
    ({"egress": {"allow": True}}, "egress: unknown key 'allow'"),
    ({"priority_classes": {"scheduler": "x"}}, "priority_classes: unknown role 'scheduler'"),
    ({"priority_classes": {"control": "Bad_Name"}}, "is not a PriorityClass name"),
])
def test_bad_profile_settings_are_one_clear_error(raw: dict, message: str) -> None:
    with pytest.raises(UsageError) as info:
        validate("dev-s3", {**BASE, **raw})
    assert info.value.message.startswith("profile 'dev-s3': ")
    assert message in info.value.message


def test_the_local_profile_makes_its_own_priority_classes() -> None:
    from mmerep.profiles import local_profile

    local = local_profile()
    assert local.cluster_objects is True
    assert workload_policy.priority_class_names(local, "s3")["executor"] == \
        "mmerep-mmerep-s3-executor"


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_parameter_has_help_and_a_default(template: str) -> None:
    raw = yaml.safe_load((templates.BUILTIN_DIR / template / "template.yaml").read_text())
    for name, param in raw["parameters"].items():
        assert "default" in param, name
        assert len(param.get("help", "")) > 20, name


# -- reading pods back -----------------------------------------------------------------------

def fake_pod(name: str, phase: str = "Running", ready: bool = True, started: bool = True,
             **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {
        "phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}],
        "containerStatuses": [{"name": "c", "ready": ready, "started": started,
                               "state": {"running": {}}}], **status}}


def test_pod_health_tells_started_from_serving_and_says_why_a_pod_was_stopped() -> None:
    evicted = {"metadata": {"name": "x-3"}, "status": {
        "phase": "Failed", "reason": "Evicted",
        "message": "Pod ephemeral local storage usage exceeds the total limit of containers "
                   "20Gi. ",
        "conditions": [{"type": "DisruptionTarget", "status": "True",
                        "reason": "TerminationByKubelet"}]}}
    health = workload_policy.pod_health([
        fake_pod("x-1"), fake_pod("x-2", ready=False), fake_pod("x-4", ready=False,
                                                                 started=False), evicted])
    assert (health["started"], health["serving"]) == (2, 1)
    assert health["stopped"] == [{"pod": "x-3", "reason": "Evicted", "message": evicted[
        "status"]["message"]}]


def test_env_status_table_shows_started_serving_and_evicted_pods() -> None:
    from rich.console import Console

    from mmerep.cli.env import status_table

    component = {"name": "sentinel3-executor", "kind": "Deployment", "component": "executor",
                 "state": "Starting", "image": "h.org/p/s:v1@sha256:" + "a" * 64,
                 "desired": 3, "ready": 1, "started": 3, "serving": 1, "pods": 4,
                 "restarts": 0, "age_seconds": 70, "ports": []}
    data = {"namespace": "s3", "name": "sentinel3", "components": [component], "warnings": [],
            "stopped": [{"component": "executor", "pod": "sentinel3-executor-abc",
                         "reason": "Evicted", "message": "Pod ephemeral local storage usage "
                         "exceeds the total limit of containers 20Gi."}]}
    console = Console(width=250, record=True)
    console.print(status_table(data))
    text = console.export_text()
    assert "Starting" in text and "1/3 (3 started)" in text
    assert "pods Kubernetes stopped" in text
    assert "sentinel3-executor-abc" in text and "Evicted" in text
    assert "ephemeral local storage usage exceeds" in text


def test_profile_add_keeps_the_workload_settings(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from mmerep.cli.profile import app
    from mmerep.profiles import get_profile

    file = tmp_path / "profiles.yaml"
    monkeypatch.setenv("MMEREP_PROFILES", str(file))
    file.write_text("profiles: {}\n")
    body = tmp_path / "body.yaml"
    body.write_text(yaml.safe_dump({"egress": {"endpoints": ENDPOINTS},
                                    "priority_classes": {"control": "site-high"}}))
    out = CliRunner().invoke(app, [
        "add", "hpc", "--namespace", "s3", "--registry", "r.io", "--project", "p",
        "--uid", "100042", "--gid", "100043", "--scratch", "200Gi", "--from-file", str(body)])
    assert out.exit_code == 0, out.output
    saved = get_profile("hpc")
    assert (saved.uid, saved.gid, saved.scratch) == (100042, 100043, "200Gi")
    assert saved.egress == {"endpoints": ENDPOINTS}
    assert saved.priority_classes == {"control": "site-high"}
    again = yaml.safe_load(file.read_text())["profiles"]["hpc"]
    assert again["uid"] == 100042 and again["egress"]["endpoints"]["bulk"] == [
        "10.20.0.0/16:2049"]


def test_live_view_says_started_when_pods_run_but_do_not_serve(capsys) -> None:
    from mmerep.cli.output import LiveWorkloads
    from mmerep.kube import WorkloadStatus

    with LiveWorkloads("deploying sentinel3") as live:
        live.update([WorkloadStatus("Deployment", "sentinel3-collector", 1, 0, False,
                                    started=1),
                     WorkloadStatus("Deployment", "sentinel3-executor", 2, 0, False,
                                    started=0),
                     WorkloadStatus("Deployment", "sentinel3-scheduler", 1, 1, True,
                                    started=1)])
    err = capsys.readouterr().err
    assert "Deployment/sentinel3-collector 0/1 started 1/1" in err
    assert "Deployment/sentinel3-executor 0/2," in err  # nothing started: just waiting
    assert "Deployment/sentinel3-scheduler 1/1" in err and "1/1 started" not in err
