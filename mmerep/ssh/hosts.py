"""Host names ``<env>-<component>.<profile>.<cluster>``, read right to left.

``<cluster>`` is the profile's ``ssh_domain`` (which may hold dots), else its kube context.
The environment name may hold dashes; the component cannot, so it is the last part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from mmerep.errors import UsageError

_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


# NamedTuples, not dataclasses, on the proxy's path: `dataclasses` costs more to import.
class SshHost(NamedTuple):
    env: str
    component: str
    profile: str

    def name(self, domain: str) -> str:
        return host_name(self.env, self.component, self.profile, domain)


def domain_of(profile: Any) -> str | None:
    """The cluster part of a profile's host names: its ssh_domain, else its context."""
    return profile.ssh_domain or profile.context or None


def host_name(env: str, component: str, profile: str, domain: str) -> str:
    return f"{env}-{component}.{profile}.{domain}"


def host_pattern(profile: Any) -> str:
    """The ``Host`` pattern matching every environment of ``profile``."""
    domain = domain_of(profile)
    if not domain:
        raise UsageError(f"profile {profile.name} has neither ssh_domain nor context",
                         hint=f"mme-rep profile add {profile.name} --ssh-domain CLUSTER ... "
                         "(the last part of its host names)")
    return f"*.{profile.name}.{domain}"


def parse_host(host: str, profiles: Iterable[Any]) -> SshHost:
    """Which environment, component and profile ``host`` names; UsageError if none."""
    host = host.lower().rstrip(".")
    candidates = []
    for profile in profiles:
        domain = domain_of(profile)
        suffix = f".{profile.name}.{domain}".lower() if domain else None
        if suffix and host.endswith(suffix):
            candidates.append((len(suffix), profile.name, host[: -len(suffix)]))
    if not candidates:
        raise UsageError(f"{host} names no profile's environment",
                         hint="host names read <env>-<component>.<profile>.<ssh_domain or "
                         "context>; see mme-rep profile list")
    _, profile_name, head = max(candidates)  # the most specific suffix wins
    env, dash, component = head.rpartition("-")
    if not dash or "." in head or not _LABEL.match(env) or not _LABEL.match(component):
        raise UsageError(f"{host}: {head!r} is not <environment>-<component>",
                         hint=f"e.g. sentinel3-scheduler.{profile_name}.... "
                         "(mme-rep env list shows the environments)")
    return SshHost(env, component, profile_name)
