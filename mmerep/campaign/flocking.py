"""Flocking: one environment's schedd sends the jobs its own executors cannot take to a
sibling environment's pool, on another member (HTCondor's FLOCK_TO / FLOCK_FROM).

The two pools authenticate each other with a shared pool password: ``--flock-with``
copies the sibling's (from its ``<env>-pool`` Secret, read through the gateway, never
printed) into this environment's ``<env>-pool`` Secret before the deploy, which keeps
it. The sibling's collector is reached the way its member profile says: ``flocking:
{address: HOST:PORT}`` (``{env}`` and ``{namespace}`` are filled in), else the live
Service's load-balancer address (``service_type: LoadBalancer``), else the in-cluster
name (same cluster only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmerep.campaign.capacity import connect
from mmerep.errors import UsageError
from mmerep.grammar.names import DNS_LABEL
from mmerep.profiles import Profile

CONDOR_PORT = 9618


@dataclass(frozen=True)
class Sibling:
    env: str
    member: str


def parse_sibling(text: str) -> Sibling:
    """``ENV@MEMBER`` -> Sibling; UsageError when it is not that."""
    env, at, member = text.partition("@")
    if not at or not DNS_LABEL.fullmatch(env) or not DNS_LABEL.fullmatch(member):
        raise UsageError(f"--flock-with '{text}' is not ENV@MEMBER",
                         hint="e.g. --flock-with sentinel3@dev-b (an environment and the "
                         "profile it runs on)")
    return Sibling(env, member)


def collector_address(profile: Profile, env: str, service: dict[str, Any] | None) -> str:
    """Where sibling pools reach ``env``'s collector on ``profile``'s cluster (pure)."""
    explicit = profile.flocking.get("address")
    if explicit:
        return explicit.format(env=env, namespace=profile.namespace)
    spec = (service or {}).get("spec") or {}
    ingress = ((service or {}).get("status") or {}).get("loadBalancer", {}).get("ingress")
    if spec.get("type") == "LoadBalancer" and ingress:
        host = ingress[0].get("hostname") or ingress[0].get("ip")
        return f"{host}:{CONDOR_PORT}"
    if spec.get("type") == "LoadBalancer":
        raise UsageError(f"the collector of {env} on {profile.name} has no load-balancer "
                         "address yet", hint="wait for it, or give the profile "
                         "flocking: {address: HOST:PORT}")
    return f"{env}-collector.{profile.namespace}.svc:{CONDOR_PORT}"


def flock_params(profile: Profile, template: str, params: dict[str, str]) -> dict[str, str]:
    """The deploy's parameters with the member profile's collector exposure as default
    (for templates that have the parameter)."""
    from mmerep.templates import load_template

    kind = profile.flocking.get("service_type")
    if kind and "collector_service_type" in load_template(template).parameters:
        return {"collector_service_type": kind, **params}
    return params


def sibling_pool(sibling: Sibling, profile: Profile) -> tuple[str, str]:
    """The sibling's collector address and pool password (base64, as the Secret holds
    it), read on its member; UsageError when the sibling is not deployed there."""
    kube = connect(profile, fast=False)
    secret = kube.get("v1", "Secret", f"{sibling.env}-pool", profile.namespace)
    if secret is None or "password" not in (secret.get("data") or {}):
        raise UsageError(f"environment {sibling.env} is not deployed on {sibling.member} "
                         f"(no pool secret in namespace {profile.namespace})",
                         hint="deploy the sibling first, or check ENV@MEMBER")
    service = kube.get("v1", "Service", f"{sibling.env}-collector", profile.namespace)
    return collector_address(profile, sibling.env, service), secret["data"]["password"]


def pool_secret(env: str, namespace: str, template: str, password_b64: str) -> dict[str, Any]:
    """This environment's pool Secret holding the shared password (labelled as the
    deploy labels its generated secrets, so it stays part of the environment)."""
    from mmerep.templates import standard_labels

    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": f"{env}-pool", "namespace": namespace,
                         "labels": standard_labels(env, template, "pool")},
            "data": {"password": password_b64}}


def share_password(kube: Any, env: str, namespace: str, template: str, password_b64: str,
                   namespace_object: dict[str, Any]) -> None:
    """Put the sibling's pool password into this environment's pool Secret before its
    deploy; refuse (nothing changed) when the environment already has another one."""
    existing = kube.get("v1", "Secret", f"{env}-pool", namespace)
    current = ((existing or {}).get("data") or {}).get("password")
    if current == password_b64:
        return
    if current is not None:
        raise UsageError(f"environment {env} already has its own pool password, not the "
                         "sibling's", hint="flocking pools share one: delete the "
                         "environment first, or flock the other way round")
    if kube.get("v1", "Namespace", namespace) is None:
        kube.apply(namespace_object)
    kube.apply(pool_secret(env, namespace, template, password_b64))
