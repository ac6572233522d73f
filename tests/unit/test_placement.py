"""Placement over member capacity, and free capacity from nodes and pods, as data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mmerep.campaign.capacity import Capacity, free_capacity, pod_requests
from mmerep.campaign.placement import Demand, environment_demand, place
from mmerep.errors import UsageError
from mmerep.profiles import load_groups, members_of

GI = 2**30
SELECTOR = {"mme-rep/processing": "true"}


def node(name: str, cpu: str = "16", memory: str = "64Gi", labels: dict[str, str] | None = None,
         taints: list[dict[str, str]] | None = None, ready: bool = True,
         cordoned: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": SELECTOR if labels is None else labels},
            "spec": {"taints": taints or [], "unschedulable": cordoned},
            "status": {"allocatable": {"cpu": cpu, "memory": memory},
                       "conditions": [{"type": "Ready", "status": str(ready)}]}}


def pod(on: str, cpu: str, memory: str, phase: str = "Running",
        init: tuple[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": on, "containers": [
        {"resources": {"requests": {"cpu": cpu, "memory": memory}}}]}
    if init:
        spec["initContainers"] = [{"resources": {"requests": {"cpu": init[0],
                                                                "memory": init[1]}}}]
    return {"spec": spec, "status": {"phase": phase}}


def test_free_capacity_counts_only_nodes_the_profile_may_use() -> None:
    nodes = [node("n1"), node("n2"),
             node("gpu", labels={}),
             node("tainted", taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]),
             node("soft", taints=[{"key": "k", "effect": "PreferNoSchedule"}]),
             node("off", cordoned=True), node("sick", ready=False)]
    pods = [pod("n1", "4", "8Gi"), pod("n2", "500m", "1Gi"), pod("gpu", "8", "8Gi"),
            pod("n1", "8", "8Gi", phase="Succeeded"), pod("soft", "1", "1Gi",
                                                          init=("3", "512Mi"))]
    cap = free_capacity("a", nodes, pods, SELECTOR, [])
    assert cap.nodes == 3  # n1, n2 and the PreferNoSchedule one
    assert cap.excluded == {"gpu": "no label mme-rep/processing=true",
                            "tainted": "taint dedicated:NoSchedule not tolerated",
                            "off": "cordoned", "sick": "not Ready"}
    # 48 CPU - (4 + 0.5 + 3 (the init container is larger)); 192Gi - (8 + 1 + 1)Gi
    assert (cap.free_cpu, cap.free_memory) == (40.5, 182 * GI)
    tolerating = free_capacity("a", nodes, pods, SELECTOR,
                               [{"key": "dedicated", "operator": "Exists"}])
    assert tolerating.nodes == 4


def test_pod_requests_without_requests() -> None:
    assert pod_requests({"spec": {"containers": [{}]}}) == (0.0, 0)


def demand(executors: int = 4) -> Demand:
    # collector + scheduler of 1 CPU / 2Gi each, executors of 2 CPU / 4Gi
    return Demand(2 + 2 * executors, (4 + 4 * executors) * GI, executors, 2, 4 * GI)


def test_the_member_with_most_room_after_the_environment_wins() -> None:
    caps = [Capacity("a", nodes=2, allocatable_cpu=32, allocatable_memory=128 * GI,
                     requested_cpu=24, requested_memory=8 * GI),
            Capacity("b", nodes=4, allocatable_cpu=64, allocatable_memory=256 * GI,
                     requested_cpu=10, requested_memory=200 * GI)]
    # a: 8 CPU, 120Gi free; after 10 CPU it is short: does not fit.
    # b: 54 CPU, 56Gi free; after 10 CPU / 20Gi: 44 CPU, 36Gi -> 9 executors (memory).
    placement = place(caps, demand())
    assert placement.chosen == "b"
    assert placement.why == "most room after it: 9 executors"
    assert [v.reason for v in placement.verdicts] == ["not enough room: short of 2 CPU", ""]
    assert placement.to_dict()["members"][1] == {
        "member": "b", "free_cpu": "54", "free_memory": "56Gi", "room_after": 9,
        "fits": True, "reason": ""}


def test_ties_keep_the_groups_order_and_say_so() -> None:
    caps = [Capacity(name, nodes=1, allocatable_cpu=16, allocatable_memory=64 * GI)
            for name in ("z", "a")]
    placement = place(caps, demand())
    assert placement.chosen == "z"
    assert placement.why == ("most room after it: 3 executors (a: 3); tie broken by the "
                             "group's order")


def test_down_members_are_skipped_and_on_overrides() -> None:
    caps = [Capacity("a", down="connection refused"),
            Capacity("b", nodes=1, allocatable_cpu=16, allocatable_memory=64 * GI)]
    placement = place(caps, demand())
    assert placement.chosen == "b"
    assert placement.verdicts[0].reason == "down: connection refused"
    big = Capacity("c", nodes=1, allocatable_cpu=64, allocatable_memory=256 * GI)
    forced = place([*caps, big], demand(), on="b")
    assert forced.chosen == "b" and forced.why.startswith("--on b (chosen by hand; fits)")
    with pytest.raises(UsageError, match="--on x: not a member"):
        place(caps, demand(), on="x")


def test_no_member_fits() -> None:
    caps = [Capacity("a", down="timed out"), Capacity("b", nodes=0)]
    with pytest.raises(UsageError, match="a: down: timed out; b: no node its node selector"):
        place(caps, demand())


def test_environment_demand_from_rendered_objects() -> None:
    def workload(kind: str, component: str, replicas: int, cpu: str, memory: str) -> dict[str, Any]:
        return {"kind": kind, "metadata": {"labels": {"app.kubernetes.io/component": component}},
                "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                    {"resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}}}

    objects = [workload("Deployment", "collector", 1, "500m", "1Gi"),
               workload("Deployment", "executor", 6, "2", "4Gi"),
               workload("DaemonSet", "synclocal", 1, "1", "1Gi"),
               {"kind": "ConfigMap", "metadata": {"name": "x"}}]
    assert environment_demand(objects) == Demand(12.5, 25 * GI, 6, 2.0, 4 * GI)


PROFILES = """
profiles:
  a: {namespace: s3, registry: harbor.example.org, project: p, requests: {cpu: "4", memory: 16Gi}}
  b: {namespace: s3, registry: harbor.example.org, project: p, requests: {cpu: "2", memory: 8Gi}}
groups:
  general: {members: [b, a]}
"""


def test_groups_in_the_profiles_file(tmp_path: Path) -> None:
    file = tmp_path / "profiles.yaml"
    file.write_text(PROFILES)
    assert load_groups(file) == {"general": ["b", "a"]}
    assert [p.name for p in members_of("general", file)] == ["b", "a"]
    assert [p.name for p in members_of("a", file)] == ["a"]
    file.write_text(PROFILES.replace("[b, a]", "[b, c]"))
    with pytest.raises(UsageError, match="member 'c' is not a profile"):
        load_groups(file)


def test_campaign_plan_command_typed_in(tmp_path: Path) -> None:
    file = tmp_path / "profiles.yaml"
    file.write_text(PROFILES)
    args = [sys.executable, "-m", "mmerep", "campaign", "plan", "-F", "general",
            "--profiles", str(file), "--jobs", "1000", "--cpu-time", "2h", "--memory", "4Gi",
            "--deadline", "2027-01-11", "--now", "2027-01-01", "--room", "a=1",
            "--room", "b=10", "--deployed", "a=1", "--deployed", "b=0", "-o", "json"]
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [(m["name"], m["executors"]) for m in data["members"]] == [("b", 5), ("a", 1)]
    assert data["end_with_plan"] == "2027-01-07T00:00:00+00:00"
    late = subprocess.run([*args[:-2], "--deadline", "2027-01-02"], capture_output=True,
                          text=True, check=False)
    assert late.returncode == 1
    assert "the deadline cannot be met" in late.stdout and "would meet it:" in late.stdout
    bad = subprocess.run([*args[:-2], "--room", "c=1"], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and "--room c: not a member" in bad.stderr
