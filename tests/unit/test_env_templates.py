"""The shipped templates, rendered as data: no cluster needed."""

from __future__ import annotations

from typing import Any

import pytest

from mmerep import environments, templates
from mmerep.errors import UsageError
from mmerep.profiles import validate

PROFILE_RAW = {
    "context": "mmerep-general-dev", "namespace": "s3", "registry": "harbor.example.org",
    "project": "mme-rep", "requests": {"cpu": "2", "memory": "10G"},
    "node_selector": {"mme-rep/processing": "true"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "processing",
                     "effect": "NoSchedule"}],
    "max_executors": 400,
}


def profile(**overrides: Any) -> Any:
    return validate("dev-s3", {**PROFILE_RAW, **overrides})


def render(template: str = "htcondor-batch", image: str = "sentinel3:v0.1.0",
           **kw: Any) -> environments.Rendered:
    return environments.render_environment(kw.pop("profile", profile()), template, image,
                                           resolve=False, **kw)


def by_name(rendered: environments.Rendered) -> dict[str, dict]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in rendered.objects}


def pod_specs(rendered: environments.Rendered) -> list[dict]:
    return [o["spec"]["template"]["spec"] for o in rendered.objects
            if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]


def test_htcondor_batch_has_the_components_users_know() -> None:
    objs = by_name(render())
    for name in ("Deployment/sentinel3-collector", "Deployment/sentinel3-scheduler",
                 "Deployment/sentinel3-executor", "DaemonSet/sentinel3-synclocal",
                 "Service/sentinel3-collector", "Service/sentinel3-scheduler",
                 "ConfigMap/sentinel3-condor", "ServiceAccount/sentinel3-scaler",
                 "Role/sentinel3-scaler", "RoleBinding/sentinel3-scaler"):
        assert name in objs, name
    assert objs["Deployment/sentinel3-executor"]["spec"]["replicas"] == 2
    ports = objs["Service/sentinel3-scheduler"]["spec"]["ports"]
    assert {"name": "ssh", "port": 22, "targetPort": 2222, "protocol": "TCP"} in ports
    assert objs["Service/sentinel3-collector"]["spec"]["ports"][0]["port"] == 9618


def test_image_expands_from_the_profile() -> None:
    rendered = render()
    assert rendered.image == "harbor.example.org/mme-rep/htcondor-batch/sentinel3:v0.1.0"
    assert {c["image"] for spec in pod_specs(rendered) for c in spec["containers"]} == {
        rendered.image}
    full = render(image="registry.other.org/x/proc:1.2")
    assert full.image == "registry.other.org/x/proc:1.2" and full.env_name == "proc"


@pytest.mark.parametrize("template", ["htcondor-batch", "jupyter", "interactive"])
def test_every_pod_is_non_root_with_no_capabilities(template: str) -> None:
    for spec in pod_specs(render(template)):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"] is True
            assert "memory" in c["resources"]["limits"]


@pytest.mark.parametrize("template", ["htcondor-batch", "jupyter", "interactive"])
def test_standard_labels_on_everything(template: str) -> None:
    rendered = render(template)
    for obj in rendered.objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "sentinel3"
        assert labels["app.kubernetes.io/managed-by"] == "mme-rep"
        assert labels["app.kubernetes.io/name"] == template
        assert labels["mme-rep/template"] == template
        assert labels["mme-rep/revision"] == "1"
        if obj["kind"] in templates.CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"]
            assert labels["mme-rep/namespace"] == "s3"
        else:
            assert obj["metadata"]["namespace"] == "s3"
    for obj in rendered.workload_objects():
        pod_labels = obj["spec"]["template"]["metadata"]["labels"]
        assert "mme-rep/revision" not in pod_labels  # re-deploys do not restart pods
        for k, v in obj["spec"]["selector"]["matchLabels"].items():
            assert pod_labels[k] == v


def test_slot_size_follows_the_pod_not_the_node() -> None:
    cfg = by_name(render(params={"executor_cpu": "4", "executor_memory": "16Gi"}))
    text = cfg["ConfigMap/sentinel3-condor"]["data"]["10-executor.conf"]
    assert "NUM_CPUS = $ENV(MMEREP_CPUS:4)" in text
    assert "MEMORY = $ENV(MMEREP_MEMORY_MB:16384)" in text
    executor = cfg["Deployment/sentinel3-executor"]["spec"]["template"]["spec"]["containers"][0]
    assert executor["resources"]["requests"] == {"cpu": "4", "memory": "16Gi",
                                                 "ephemeral-storage": "20Gi"}
    # The pod's own requests reach the startd, so a vscale resizes the slot as well.
    env = {e["name"]: e.get("valueFrom", {}).get("resourceFieldRef") for e in executor["env"]}
    assert env["MMEREP_CPUS"] == {"containerName": "startd", "resource": "requests.cpu",
                                  "divisor": "1"}
    assert env["MMEREP_MEMORY_MB"]["resource"] == "requests.memory"
    defaults = by_name(render())["ConfigMap/sentinel3-condor"]["data"]["10-executor.conf"]
    assert "MMEREP_CPUS:2)" in defaults and "MMEREP_MEMORY_MB:9536)" in defaults  # 10G


def test_executors_roll_without_losing_jobs() -> None:
    deploy = by_name(render(params={"drain_grace_seconds": 7200}))["Deployment/sentinel3-executor"]
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deploy["metadata"]["annotations"]["mme-rep/replicas-param"] == "executors"
    pod = deploy["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 7200
    assert "condor_off -peaceful" in " ".join(pod["containers"][0]["lifecycle"]["preStop"][
        "exec"]["command"])


def test_scaler_state_carries_the_profile_limits_and_no_daemon_switch() -> None:
    import json

    state = by_name(render())["ConfigMap/sentinel3-scaler-state"]["data"]
    assert json.loads(state["limits"]) == {"max_executors": 400, "max_cpu": None,
                                           "max_memory": None}
    assert "daemon" not in state  # the scaler owns it; a deploy never turns it off


def test_profile_placement_reaches_every_pod() -> None:
    for spec in pod_specs(render()):
        assert spec["nodeSelector"] == {"mme-rep/processing": "true"}
        assert spec["tolerations"][0]["key"] == "dedicated"


def test_scaler_rbac_is_least_privilege() -> None:
    role = by_name(render())["Role/sentinel3-scaler"]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        # delete only for its own lease (released after a vscale)
        assert "delete" not in rule["verbs"] or rule["resources"] == ["leases"]
        if rule["resources"] == ["pods"]:
            assert set(rule["verbs"]) == {"get", "list", "watch", "patch"}
        elif "resourceNames" not in rule and rule["resources"] == ["leases"]:
            assert rule["verbs"] == ["create"]  # vscale takes the environment's lease
        elif "resourceNames" not in rule:
            # vscale's revision record: read the history, add a record; nothing else.
            assert rule["resources"] == ["configmaps"]
            assert set(rule["verbs"]) == {"list", "create"}
        else:
            assert "create" not in rule["verbs"]
            assert rule["resourceNames"], rule  # only its own executor and state
    deploy = [r for r in role["rules"] if "deployments/scale" in r["resources"]]
    assert deploy[0]["resourceNames"] == ["sentinel3-executor"]
    assert not [r for r in role["rules"] if "secrets" in r["resources"]]


def test_scaler_script_is_mounted_at_configs() -> None:
    sched = by_name(render())["Deployment/sentinel3-scheduler"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for c in sched["containers"]
              for m in c["volumeMounts"]}
    assert mounts["/configs"] == "scaler"
    vol = next(v for v in sched["volumes"] if v["name"] == "scaler")
    assert vol["configMap"]["items"] == [{"key": "scaler.sh", "path": "scaler.sh"}]


def test_generated_secrets_are_not_in_the_rendered_objects() -> None:
    rendered = render()
    assert not [o for o in rendered.objects if o["kind"] == "Secret"]
    assert rendered.secrets == {"pool": ("password",),
                                "ssh-hostkeys": ("ssh_host_ed25519_key", "ssh_host_ecdsa_key")}
    made = environments.generated_secrets(None, rendered)
    assert made[0]["metadata"]["name"] == "sentinel3-pool" and made[0]["data"]["password"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "Bad_Name"}, "invalid environment name 'Bad_Name'"),
    ({"template": "nope"}, "unknown template 'nope'"),
    ({"params": {"executorz": "3"}}, "has no parameter 'executorz'"),
    ({"params": {"executors": "many"}}, "parameter executors='many' is not an integer"),
    ({"params": {"executors": "-1"}}, "below its minimum 0"),
    ({"params": {"executor_memory": "10X"}}, "10X"),
    ({"params": {"executors": "401"}}, "exceed profile dev-s3's limit of 400"),
    ({"image": "sentinel3"}, "tag"),
])
def test_bad_input_is_one_clear_error(kwargs: dict, message: str) -> None:
    template = kwargs.pop("template", "htcondor-batch")
    image = kwargs.pop("image", "sentinel3:v0.1.0")
    with pytest.raises(UsageError) as info:
        render(template, image, **kwargs)
    assert message in str(info.value)


def test_a_pod_asking_above_the_profiles_maximum_is_refused_with_the_limit_named() -> None:
    capped = profile(max_cpu="4", max_memory="16Gi")
    render(profile=capped, params={"executor_cpu": "4", "executor_memory": "16Gi"})  # at most
    with pytest.raises(UsageError) as info:
        render(profile=capped, params={"executor_cpu": "6"})
    assert info.value.message == ("Deployment/sentinel3-executor requests 6 cpu per pod, "
                                  "above profile dev-s3's max_cpu of 4")
    assert info.value.hint == ("ask for less (mme-rep template show htcondor-batch lists the "
                               "parameters), or raise max_cpu in the profile")
    with pytest.raises(UsageError) as info:
        render(profile=capped, params={"executor_memory_limit": "20G"})
    assert info.value.message == ("Deployment/sentinel3-executor limits 20G memory per pod, "
                                  "above profile dev-s3's max_memory of 16Gi")


def test_jupyter_web_address_without_and_with_ingress() -> None:
    rendered = render("jupyter")
    hint = environments.web_hint(profile(), rendered)
    assert "port-forward svc/sentinel3-jupyter 8888:8888" in hint
    assert "http://127.0.0.1:8888/lab" in hint
    with_ingress = profile(ingress_domain="apps.example.org")
    rendered = render("jupyter", profile=with_ingress)
    assert "Ingress/sentinel3-jupyter" in by_name(rendered)
    assert "https://sentinel3.apps.example.org/lab" in environments.web_hint(with_ingress,
                                                                             rendered)


def test_site_templates_come_first_on_the_search_path(tmp_path, monkeypatch) -> None:
    site = tmp_path / "site" / "htcondor-batch"
    (site / "manifests").mkdir(parents=True)
    (site / "template.yaml").write_text("name: htcondor-batch\ndescription: site copy\n")
    monkeypatch.setenv("MMEREP_TEMPLATE_PATH", str(tmp_path / "site"))
    assert templates.load_template("htcondor-batch").description == "site copy"
    assert {t.name for t in templates.list_templates()} >= {"jupyter", "interactive"}


def _condor_param(tmp_path, files: dict[str, str], names: list[str]) -> dict[str, str]:
    """Values as the real HTCondor config parser (htcondor2) reads the rendered files."""
    import json
    import subprocess
    import sys

    confd = tmp_path / "config.d"
    confd.mkdir()
    for fname, text in files.items():
        (confd / fname).write_text(text)
    (tmp_path / "condor_config").write_text(f"LOCAL_CONFIG_DIR = {confd}\n")
    code = ("import json, sys, htcondor2\n"
            "print(json.dumps({n: str(htcondor2.param.get(n)) for n in sys.argv[1:]}))")
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                         env={"CONDOR_CONFIG": str(tmp_path / "condor_config"),
                              "PATH": "/usr/bin:/bin"}, timeout=60, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_htcondor_reads_the_executor_config_as_intended(tmp_path) -> None:
    data = by_name(render(params={"executor_cpu": "3", "executor_memory": "12Gi"}))[
        "ConfigMap/sentinel3-condor"]["data"]
    got = _condor_param(tmp_path, {"00-common.conf": data["00-common.conf"],
                                   "10-role.conf": data["10-executor.conf"]},
                        ["NUM_CPUS", "MEMORY", "COLLECTOR_HOST", "DAEMON_LIST",
                         "SEC_DEFAULT_AUTHENTICATION_METHODS", "SEC_DEFAULT_ENCRYPTION",
                         "MMEREP_ENV"])
    assert got["NUM_CPUS"] == "3" and got["MEMORY"] == "12288"
    assert got["COLLECTOR_HOST"] == "sentinel3-collector.s3.svc:9618"
    assert got["DAEMON_LIST"] == "MASTER, STARTD"
    assert got["SEC_DEFAULT_AUTHENTICATION_METHODS"] == "IDTOKENS, PASSWORD"
    assert got["SEC_DEFAULT_ENCRYPTION"] == "REQUIRED"
    assert got["MMEREP_ENV"] == '"sentinel3"'


def test_htcondor_roles_run_their_own_daemons(tmp_path) -> None:
    data = by_name(render())["ConfigMap/sentinel3-condor"]["data"]
    for role, daemons in (("collector", "MASTER, COLLECTOR, NEGOTIATOR"),
                          ("scheduler", "MASTER, SCHEDD")):
        sub = tmp_path / role
        sub.mkdir()
        got = _condor_param(sub, {"00-common.conf": data["00-common.conf"],
                                  "10-role.conf": data[f"10-{role}.conf"]}, ["DAEMON_LIST"])
        assert got["DAEMON_LIST"] == daemons


def test_synclocal_daemon_gets_its_manifest_and_may_only_label_nodes() -> None:
    manifest = "datasets:\n  - name: olci\n    paths: [/bulk/s3/olci/2019]\n"
    objs = by_name(render(params={"synclocal_manifest": manifest}))
    assert objs["ConfigMap/sentinel3-synclocal"]["data"]["manifest.yaml"] == manifest
    spec = objs["DaemonSet/sentinel3-synclocal"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["command"][:5] == ["mme-rep", "synclocal", "daemon", "--manifest",
                                        "/etc/synclocal/manifest.yaml"]
    assert container["env"] == [{"name": "NODE_NAME", "valueFrom": {
        "fieldRef": {"fieldPath": "spec.nodeName"}}}]
    role = objs["ClusterRole/mmerep-s3-sentinel3-synclocal"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"],
                              "verbs": ["get", "patch"]}]
    binding = objs["ClusterRoleBinding/mmerep-s3-sentinel3-synclocal"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sentinel3-synclocal",
                                    "namespace": "s3"}]
    without = render(params={"synclocal_node_labels": "false"})
    assert not [o for o in without.objects if o["kind"] in templates.CLUSTER_SCOPED]
    ds = by_name(without)["DaemonSet/sentinel3-synclocal"]["spec"]["template"]["spec"]
    assert "env" not in ds["containers"][0] and ds["automountServiceAccountToken"] is False


def test_flocking_config_as_htcondor_reads_it_on_both_sides(tmp_path) -> None:
    """The schedd of one pool flocks to a sibling's collector; the sibling lets it in."""
    home = by_name(render(params={"flock_to": "s3b-collector.example.org:9618"}))
    sibling = by_name(render(params={"flock_from": "s3a-scheduler.example.org",
                                     "collector_service_type": "LoadBalancer"}))
    data = home["ConfigMap/sentinel3-condor"]["data"]
    (tmp_path / "home").mkdir()
    got = _condor_param(tmp_path / "home", {"00-common.conf": data["00-common.conf"],
                                            "10-role.conf": data["10-scheduler.conf"]},
                        ["FLOCK_TO", "FLOCK_FROM", "DAEMON_LIST"])
    assert got["FLOCK_TO"] == "s3b-collector.example.org:9618"
    assert got["FLOCK_FROM"] == "None" and got["DAEMON_LIST"] == "MASTER, SCHEDD"
    data = sibling["ConfigMap/sentinel3-condor"]["data"]
    (tmp_path / "sibling").mkdir()
    got = _condor_param(tmp_path / "sibling", {"00-common.conf": data["00-common.conf"],
                                               "10-role.conf": data["10-collector.conf"]},
                        ["FLOCK_FROM", "FLOCK_TO", "ALLOW_WRITE_COLLECTOR",
                         "ALLOW_READ_STARTD", "ALLOW_NEGOTIATOR_SCHEDD"])
    assert got["FLOCK_FROM"] == "s3a-scheduler.example.org" and got["FLOCK_TO"] == "None"
    assert got["ALLOW_WRITE_COLLECTOR"] == "*, s3a-scheduler.example.org"
    assert got["ALLOW_READ_STARTD"] == "*, s3a-scheduler.example.org"
    assert got["ALLOW_NEGOTIATOR_SCHEDD"].endswith(", s3a-scheduler.example.org")
    assert sibling["Service/sentinel3-collector"]["spec"]["type"] == "LoadBalancer"
    assert "type" not in home["Service/sentinel3-collector"]["spec"]  # ClusterIP by default
