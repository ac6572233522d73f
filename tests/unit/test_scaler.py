"""The scaler's commands as data: the lines users know, validation before any change, the
state ConfigMap's keys, and who owns a Deployment's replica count."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mmerep.environments import replicas_owned_elsewhere
from mmerep.errors import UsageError
from mmerep.scaler import executors as ex
from mmerep.scaler.policy import PolicyState
from mmerep.scaler.state import Limits, parse_state, state_patch


def status(**kw: object) -> ex.Status:
    base = dict(env_name="sentinel3", namespace="s3", daemon=False, minimum=None, maximum=None,
                cluster_size=2, busy=0, pool_note="", environment_size=2, running=2, pending=0,
                resources=ex.Resources("1", "10G"))
    return ex.Status(**{**base, **kw})  # type: ignore[arg-type]


def test_status_lines_are_word_for_word_what_users_know() -> None:
    assert status().lines() == [
        "Daemon is: off",
        "Cluster size: 2 (0 busy nodes)",
        "Environment size: 2",
        "Nodes are set for:",
        '    Requests: "1" CPU / "10G" RAM',
        '    Max: "" CPU / "" RAM',
    ]


def test_an_unreadable_pool_is_said_on_its_line() -> None:
    lines = status(cluster_size=None, busy=None, pool_note="collector not answering",
                   daemon=True, resources=ex.Resources("2", "8G", "4", "16G")).lines()
    assert lines[0] == "Daemon is: on"
    assert lines[1] == "Cluster size: unknown (collector not answering)"
    assert lines[5] == '    Max: "4" CPU / "16G" RAM'


@pytest.mark.parametrize(("text", "message"), [
    ("1e3", "executor count '1e3' is not a whole number"),
    ("-3", "executor count '-3' is not a whole number"),
    ("2.5", "not a whole number"),
    ("", "not a whole number"),
    ("401", "401 executors exceed the profile's limit of 400"),
])
def test_bad_counts(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        ex.parse_count(text, Limits(max_executors=400))
    assert info.value.exit_code == 2


def test_counts_within_the_limit() -> None:
    assert ex.parse_count("310", Limits(max_executors=400)) == 310
    assert ex.parse_count("0", Limits()) == 0


@pytest.mark.parametrize(("args", "message"), [
    (("0", "8G"), "CPU '0' must be more than 0"),
    (("-1", "8G"), "CPU '-1' is negative"),
    (("2", "8X"), "memory '8X' is not a quantity"),
    (("2", "0"), "memory '0' must be more than 0"),
    (("2", "8Gi", "1", "16G"), "CPU limit '1' is below the request '2'"),
    (("2", "8G", "4", "4G"), "memory limit '4G' is below the request '8G'"),
    (("64", "8G"), "CPU '64' exceeds the profile's maximum of 32"),
    (("2", "8G", "", "256Gi"), "memory '256Gi' exceeds the profile's maximum of 128Gi"),
])
def test_bad_resources(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        ex.parse_resources(*args, limits=Limits(max_cpu="32", max_memory="128Gi"))


def test_resources_are_kept_as_the_user_wrote_them() -> None:
    assert ex.parse_resources("2", "8G") == ex.Resources("2", "8G", "", "")
    assert ex.parse_resources("500m", "8Gi", "1", "10G") == ex.Resources("500m", "8Gi", "1",
                                                                         "10G")


def test_vscale_object_changes_only_the_resources() -> None:
    deployment = {"spec": {"replicas": 2, "template": {"spec": {"containers": [
        {"name": "startd", "resources": {"requests": {"cpu": "1", "memory": "10G",
                                                      "ephemeral-storage": "20Gi"},
                                         "limits": {"memory": "10G"}}}]}}}}
    out = ex.with_resources(deployment, ex.Resources("2", "8G"))
    assert out["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "2", "memory": "8G", "ephemeral-storage": "20Gi"}}
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    limited = ex.with_resources(deployment, ex.Resources("2", "8G", "4", "16G"))
    assert limited["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "4", "memory": "16G"}


def test_pod_counts_carry_the_schedulers_reason() -> None:
    pending = {"metadata": {"name": "p"}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/4 nodes are available: 4 Insufficient cpu."}]}}
    running = {"metadata": {"name": "r"}, "status": {"phase": "Running"}}
    leaving = {"metadata": {"name": "l", "deletionTimestamp": "x"}, "status": {"phase": "Running"}}
    assert ex.pod_counts([pending, running, leaving]) == (
        1, 1, "0/4 nodes are available: 4 Insufficient cpu.")


def test_state_round_trip_and_each_writer_sends_only_its_keys() -> None:
    obj = state_patch("s3", "sentinel3", {"daemon": True, "min": 2, "max": None,
                                          "policy": PolicyState(last_up=5.0),
                                          "decisions": [{"to": 3}]})
    assert obj["metadata"] == {"name": "sentinel3-scaler-state", "namespace": "s3"}
    obj["data"]["limits"] = '{"max_executors": 400, "max_cpu": "32", "max_memory": null}'
    state = parse_state(obj)
    assert state.daemon and state.minimum == 2 and state.maximum is None
    assert state.policy.last_up == 5.0 and state.decisions == [{"to": 3}]
    assert state.limits == Limits(400, "32", None)
    assert not parse_state(None).exists and not parse_state(None).daemon


def _managed(manager: str, operation: str, replicas: bool = True) -> dict:
    fields = {"f:spec": {"f:replicas": {}} if replicas else {"f:template": {}}}
    return {"manager": manager, "operation": operation, "fieldsV1": fields}


def test_replicas_stay_ours_until_someone_else_sets_them() -> None:
    ours = {"metadata": {"managedFields": [_managed("mme-rep", "Apply"),
                                           _managed("kube-controller-manager", "Update",
                                                    replicas=False)]}}
    assert not replicas_owned_elsewhere(ours)
    for manager, op in (("mme-rep-scaler", "Update"), ("mme-rep-autoscaler", "Update"),
                        ("kubectl", "Update"), ("mme-rep", "Update")):
        live = {"metadata": {"managedFields": [_managed(manager, op)]}}
        assert replicas_owned_elsewhere(live), manager


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmerep", "scaler", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "message"), [
    (["sentinel3", "scale", "1e3"], "not a whole number"),
    (["sentinel3", "scale", "-3"], "not a whole number"),
    (["sentinel3", "scale"], "scale needs one number"),
    (["sentinel3", "vscale", "2", "8X"], "memory '8X' is not a quantity"),
    (["sentinel3", "vscale", "0", "8G"], "CPU '0' must be more than 0"),
    (["sentinel3", "vscale", "2"], "vscale needs CPU and MEM"),
    (["sentinel3", "resize"], "unknown verb 'resize'"),
    (["scale", "3"], "which environment?"),
    (["sentinel3", "daemon", "maybe"], "daemon needs on, off or run"),
    (["sentinel3", "daemon", "on", "--min", "5", "--max", "2"], "--min 5 is above --max 2"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_connection(
        args: list[str], message: str, tmp_path) -> None:
    # A profile whose kubeconfig does not exist: reaching for the cluster would fail
    # differently, so these errors prove nothing was attempted.
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("profiles:\n  nowhere:\n    context: none\n    kubeconfig: /nonexistent\n"
                        "    namespace: s3\n    registry: harbor.example.org\n"
                        "    project: mme-rep\n")
    out = run("-F", "nowhere", "--profiles", str(profiles), *args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_env_status_line_shows_the_daemon_and_its_last_decision() -> None:
    from mmerep.environments import scaler_line

    state = {"data": {"daemon": "on", "min": "2", "max": "40", "decisions": (
        '[{"time": 0, "from": 2, "to": 22, "reason": "scale-up: 100 idle jobs need 50 '
        'executors, have 2"}]')}}
    assert scaler_line(state) == ("scaler: daemon on (min 2, max 40); last decision 00:00:00Z: "
                                  "scale-up: 100 idle jobs need 50 executors, have 2")
    assert scaler_line({"data": {"limits": "{}"}}) == (
        "scaler: daemon off (min 0, max profile limit)")


def test_a_pool_query_that_dies_leaves_the_rest_of_the_status() -> None:
    # The bindings are asked from a forked child; if it dies (a crash in the C++ code),
    # the status still shows what the API said, and why the pool size is missing.
    code = """
import os, signal
from mmerep.scaler import executors as ex

class Crashing:
    ask_in_child = True
    def executors(self):
        os.kill(os.getpid(), signal.SIGSEGV)

class Api:
    def get(self, api_version, kind, name, namespace=None):
        if kind == "Deployment":
            return {"spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"resources": {"requests": {"cpu": "1", "memory": "10G"}}}]}}}}
        return None

for line in ex.status(Api(), "s3", "sentinel3", Crashing(), pods=False).lines():
    print(line)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1:3] == [
        "Cluster size: unknown (the background call ended without an answer: killed by "
        "signal 11)", "Environment size: 2"]
