"""A deploy keeps the CPU and memory a vscale set, unless it sets them itself (the rule of
mmerep/environments/vscaled.py), on rendered objects: no cluster needed."""

from __future__ import annotations

import dataclasses

from mmerep.environments import Rendered, build_record, rendered_from_record
from mmerep.environments.vscaled import keep_vscaled, live_revision, with_resources_of

EXECUTOR = "Deployment/s3-executor"


def deployment(name: str, requests: dict, limits: dict | None = None) -> dict:
    resources = {"requests": {**requests, "ephemeral-storage": "1Gi"}}
    if limits:
        resources["limits"] = limits
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"template": {"spec": {"containers": [
                {"name": "startd", "image": "x", "resources": resources},
                {"name": "sidecar", "image": "y"}]}}}}


def rendered(objects: list[dict], params: dict, explicit: tuple[str, ...] = (),
             owned: dict | None = None) -> Rendered:
    return Rendered("s3", "ns", "htcondor-batch", "img", params, objects,
                    explicit=explicit, owned=owned or {})


def vscaled_live() -> Rendered:
    return rendered([deployment("s3-executor", {"cpu": "2", "memory": "8G"})],
                    {"executor_cpu": "2", "executor_memory": "8G", "executor_cpu_limit": None,
                     "executors": 3},
                    owned={EXECUTOR: ("executor_cpu", "executor_cpu_limit", "executor_memory")})


def fresh(explicit: tuple[str, ...] = ()) -> Rendered:
    return rendered([deployment("s3-executor", {"cpu": "1", "memory": "2Gi"}, {"cpu": "4"}),
                     {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s3-x"}}],
                    {"executor_cpu": "1", "executor_memory": "2Gi", "executor_cpu_limit": None,
                     "executors": 5}, explicit=explicit)


def test_a_deploy_that_does_not_set_them_keeps_what_vscale_set() -> None:
    kept, lines = keep_vscaled(fresh(("executors",)), vscaled_live())
    executor = kept.objects[0]["spec"]["template"]["spec"]["containers"]
    # CPU and memory as vscale left them, its dropped limit stays dropped; the rest as
    # rendered (ephemeral storage, the other container, the other objects, other params).
    assert executor[0]["resources"] == {"requests": {"cpu": "2", "memory": "8G",
                                                     "ephemeral-storage": "1Gi"}}
    assert executor[1] == {"name": "sidecar", "image": "y"}
    assert kept.objects[1]["kind"] == "Service"
    assert kept.params == {"executor_cpu": "2", "executor_memory": "8G",
                           "executor_cpu_limit": None, "executors": 5}
    assert kept.owned == vscaled_live().owned  # and the next revision records it again
    assert lines == ["kept Deployment/s3-executor's CPU and memory as vscale set them "
                     "(executor_cpu=2, executor_memory=8G); --set executor_cpu=... takes "
                     "them back"]
    # The input is not changed (a retry renders nothing twice).
    assert fresh().objects[0]["spec"]["template"]["spec"]["containers"][0]["resources"][
        "requests"]["cpu"] == "1"


def test_setting_any_of_them_takes_them_back() -> None:
    taken, lines = keep_vscaled(fresh(("executor_memory",)), vscaled_live())
    assert taken == fresh(("executor_memory",)) and lines == []
    assert taken.owned == {}


def test_nothing_owned_or_gone_from_the_template_changes_nothing() -> None:
    plain = dataclasses.replace(vscaled_live(), owned={})
    assert keep_vscaled(fresh(), plain) == (fresh(), [])
    assert keep_vscaled(fresh(), None) == (fresh(), [])
    renamed = dataclasses.replace(vscaled_live(), owned={"Deployment/old": ("executor_cpu",)})
    assert keep_vscaled(fresh(), renamed) == (fresh(), [])


def test_limits_vscale_set_replace_the_rendered_ones() -> None:
    recorded = deployment("s3-executor", {"cpu": "2", "memory": "8G"}, {"memory": "9G"})
    out = with_resources_of(deployment("s3-executor", {"cpu": "1"}, {"cpu": "4"}), recorded)
    assert out["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "2", "memory": "8G", "ephemeral-storage": "1Gi"},
        "limits": {"memory": "9G"}}


def test_ownership_travels_in_the_revision_record() -> None:
    record = build_record(vscaled_live(), 2, "deployed", "vscale 2/8G")
    assert rendered_from_record(record).owned == vscaled_live().owned
    older = build_record(fresh(), 1, "deployed")  # a vscale cannot relabel the older one
    assert live_revision([older, record]).owned == vscaled_live().owned  # type: ignore[union-attr]
    # Without ownership nothing is unpacked and nothing kept.
    assert "owned" not in older["data"] and live_revision([older]) is None
    failed = build_record(vscaled_live(), 3, "failed")
    assert live_revision([older, failed]) is None
