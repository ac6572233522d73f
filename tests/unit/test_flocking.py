"""Flocking's pure parts: ENV@MEMBER, where a sibling's collector is reached, the
profile's collector exposure."""

from __future__ import annotations

import pytest

from mmerep.campaign.flocking import (
    Sibling,
    collector_address,
    flock_params,
    parse_sibling,
    pool_secret,
)
from mmerep.errors import UsageError
from mmerep.profiles import validate

BASE = {"namespace": "s3", "registry": "harbor.example.org", "project": "mme-rep"}


def test_env_at_member() -> None:
    assert parse_sibling("sentinel3@dev-b") == Sibling("sentinel3", "dev-b")
    for bad in ("sentinel3", "@dev-b", "Sentinel3@dev-b", "a@b@c"):
        with pytest.raises(UsageError, match="is not ENV@MEMBER"):
            parse_sibling(bad)


def test_where_the_siblings_collector_is_reached() -> None:
    plain = validate("b", BASE)
    assert collector_address(plain, "s3b", None) == "s3b-collector.s3.svc:9618"
    named = validate("b", {**BASE, "flocking": {
        "address": "{env}.{namespace}.example.org:443"}})
    assert collector_address(named, "s3b", None) == "s3b.s3.example.org:443"
    lb = {"spec": {"type": "LoadBalancer"},
          "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}}
    assert collector_address(plain, "s3b", lb) == "192.0.2.7:9618"
    with pytest.raises(UsageError, match="no load-balancer address yet"):
        collector_address(plain, "s3b", {"spec": {"type": "LoadBalancer"}})


def test_the_profile_says_how_collectors_are_exposed() -> None:
    profile = validate("b", {**BASE, "flocking": {"service_type": "LoadBalancer"}})
    assert flock_params(profile, "htcondor-batch", {"executors": "2"}) == {
        "collector_service_type": "LoadBalancer", "executors": "2"}
    assert flock_params(profile, "htcondor-batch", {"collector_service_type": "NodePort"}) == {
        "collector_service_type": "NodePort"}
    assert flock_params(profile, "jupyter", {}) == {}  # no such parameter there
    with pytest.raises(UsageError, match=r"flocking\.service_type 'Ingress' is not valid"):
        validate("b", {**BASE, "flocking": {"service_type": "Ingress"}})
    with pytest.raises(UsageError, match="flocking: unknown key 'adress'"):
        validate("b", {**BASE, "flocking": {"adress": "x:1"}})


def test_the_shared_password_stays_part_of_the_environment() -> None:
    secret = pool_secret("s3a", "s3", "htcondor-batch", "c2VjcmV0")
    assert secret["metadata"]["name"] == "s3a-pool"
    assert secret["metadata"]["labels"]["app.kubernetes.io/instance"] == "s3a"
    assert secret["data"] == {"password": "c2VjcmV0"}
