"""How a user reaches an environment, for the environments table: the SSH host names
``mme-rep ssh config`` writes (same function), or a web environment's address."""

from __future__ import annotations

import functools
from typing import Any

from mmerep.errors import MmerepError
from mmerep.profiles import Profile
from mmerep.ssh.hosts import domain_of, host_name
from mmerep.templates import load_template


@functools.lru_cache(maxsize=64)
def _web(template: str) -> tuple[tuple[str, Any], ...]:
    try:
        return tuple(load_template(template).web.items())
    except MmerepError:  # a template this installation does not have
        return ()


def access(row: dict[str, Any], profile: Profile | None) -> list[str]:
    """SSH host names (in the profile's namespace, where its host names lead), else the
    web address (its ingress, else the command that opens it); [] when neither."""
    if profile is None or row["namespace"] != profile.namespace:
        return []
    domain = domain_of(profile)
    if row.get("ssh_components") and domain:
        return [host_name(row["name"], c, profile.name, domain) for c in row["ssh_components"]]
    web = dict(_web(row["template"]))
    if not web:
        return []
    if profile.ingress_domain:
        return [f"https://{row['name']}.{profile.ingress_domain}{web.get('path', '/')}"]
    return [f"mme-rep env open {row['name']} -F {profile.name}"]
