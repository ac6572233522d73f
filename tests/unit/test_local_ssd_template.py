"""The htcondor-batch template on the local-SSD tier (no cluster): executors' scratch and
synclocal's cache are local-SSD volumes exactly when the profile names the class and does
not turn scratch volumes off; env deploy names the classes it needs before anything."""

from __future__ import annotations

import dataclasses
from typing import Any

from mmerep import environments
from mmerep.environments.storage import claimed_storage_classes
from mmerep.profiles import local_profile, validate

BASE = {"namespace": "s3", "registry": "harbor.example.org", "project": "mme-rep",
        "requests": {"cpu": "2", "memory": "10G"}}


def render(params: dict[str, Any] | None = None, **profile: Any) -> list[dict[str, Any]]:
    return environments.render_environment(validate("dev-s3", {**BASE, **profile}),
                                           "htcondor-batch", "sentinel3:v0.1.0",
                                           resolve=False, params=params).objects


def volume(objs: list[dict[str, Any]], kind: str, name: str, vol: str) -> dict[str, Any]:
    obj = next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)
    found: dict[str, Any] = next(v for v in obj["spec"]["template"]["spec"]["volumes"]
                                 if v["name"] == vol)
    return found


def test_synclocal_cache_is_a_local_ssd_volume_when_the_profile_names_the_class() -> None:
    objs = render(params={"synclocal_cache": "500Gi"},
                  storage_classes={"local-ssd": "fast-ssd"})
    cache = volume(objs, "DaemonSet", "sentinel3-synclocal", "local-data")
    claim = cache["ephemeral"]["volumeClaimTemplate"]
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast-ssd",
                             "resources": {"requests": {"storage": "500Gi"}}}
    assert claim["metadata"]["labels"] == {"app.kubernetes.io/component": "synclocal-cache"}
    scratch = volume(objs, "Deployment", "sentinel3-executor", "execute")
    assert scratch["ephemeral"]["volumeClaimTemplate"]["spec"]["storageClassName"] == "fast-ssd"
    assert claimed_storage_classes(objs) == {
        "fast-ssd": ["Deployment/sentinel3-executor", "DaemonSet/sentinel3-synclocal"]}


def test_default_cache_size_is_100gi() -> None:
    cache = volume(render(storage_classes={"local-ssd": "fast-ssd"}), "DaemonSet",
                   "sentinel3-synclocal", "local-data")
    assert cache["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"] == {
        "requests": {"storage": "100Gi"}}


def test_emptydirs_without_the_class_or_with_scratch_volume_false() -> None:
    for objs in (render(), render(storage_classes={"local-ssd": "fast-ssd"},
                                  scratch_volume=False)):
        assert volume(objs, "DaemonSet", "sentinel3-synclocal", "local-data") == {
            "name": "local-data", "emptyDir": {}}
        assert volume(objs, "Deployment", "sentinel3-executor", "execute") == {
            "name": "execute", "emptyDir": {"sizeLimit": "20Gi"}}
        assert claimed_storage_classes(objs) == {}


def test_built_in_local_profile_names_the_class_but_claims_nothing() -> None:
    # The local cluster does not run the provisioner unless asked: `env deploy -F local`
    # keeps working there; a profile with scratch_volume: true opts in.
    local = dataclasses.replace(local_profile(), registry="harbor.example.org")  # no cluster
    assert local.storage_classes["local-ssd"] == "mmerep-local-ssd"
    objs = environments.render_environment(local, "htcondor-batch", "sentinel3:v0.1.0",
                                           resolve=False).objects
    assert claimed_storage_classes(objs) == {}
    opted_in = environments.render_environment(
        dataclasses.replace(local, scratch_volume=True), "htcondor-batch",
        "sentinel3:v0.1.0", resolve=False).objects
    assert set(claimed_storage_classes(opted_in)) == {"mmerep-local-ssd"}


def test_synclocal_off_claims_only_scratch() -> None:
    objs = render(params={"synclocal": False}, storage_classes={"local-ssd": "fast-ssd"})
    assert claimed_storage_classes(objs) == {"fast-ssd": ["Deployment/sentinel3-executor"]}
