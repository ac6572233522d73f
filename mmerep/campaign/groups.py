"""Profile groups at work: place an environment on a member, find it again later, and
list the environments of every profile (clusters read in parallel; one that is down is
reported on its own line, the others still answer)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

from mmerep import environments
from mmerep.campaign.capacity import connect, read_members
from mmerep.campaign.placement import Placement, environment_demand, place
from mmerep.errors import KubeError, MmerepError, UsageError
from mmerep.profiles import Profile

T = TypeVar("T")


def each_member(profiles: list[Profile], fn: Callable[[Profile], T]) -> list[T | MmerepError]:
    """``fn`` on every profile in parallel, in order; a member's error is its result."""
    def safe(p: Profile) -> T | MmerepError:
        try:
            return fn(p)
        except MmerepError as exc:
            return exc

    if not profiles:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(profiles))) as pool:
        return list(pool.map(safe, profiles))


def place_environment(members: list[Profile], template: str, image: str, *,
                      name: str | None, params: dict[str, Any], on: str | None) -> Placement:
    """Where the environment goes: each member's free capacity against what the
    environment, rendered for that member (its default requests), will request."""
    demands = {p.name: environment_demand(environments.render_environment(
        p, template, image, name=name, params=params, resolve=False).objects) for p in members}
    return place(read_members(members), demands, on)


def find_environment(members: list[Profile], env_name: str, on: str | None = None) -> Profile:
    """The member whose namespace holds ``env_name`` (``on`` says which, when given)."""
    names = [p.name for p in members]
    if on is not None:
        if on not in names:
            raise UsageError(f"--on {on}: not a member of the group",
                              hint=f"members: {', '.join(names)}")
        return members[names.index(on)]

    def has(p: Profile) -> bool:
        rows = environments.list_environments(connect(p), p.namespace)
        return any(r["name"] == env_name for r in rows)

    results = each_member(members, has)
    found = [p for p, r in zip(members, results, strict=True) if r is True]
    down = [f"{p.name}: {r.message}" for p, r in zip(members, results, strict=True)
            if isinstance(r, MmerepError)]
    if len(found) == 1:
        return found[0]
    if found:
        raise MmerepError(f"environment {env_name} is on several members: "
                          f"{', '.join(p.name for p in found)}",
                          hint="say which with --on MEMBER")
    unread = f"; not reachable: {'; '.join(down)}" if down else ""
    raise KubeError(f"environment {env_name} is on no member of the group "
                    f"({', '.join(names)}){unread}",
                    hint="mme-rep env list --all shows where each environment is")


def list_everywhere(profiles: list[Profile]) -> list[dict[str, Any]]:
    """Every profile's environments, one row each; a profile whose cluster cannot be read
    gives one row with status ``unreachable`` and the reason. Profiles that share a
    cluster and namespace are read once (the first one's name is shown)."""
    seen: dict[tuple[Any, ...], Profile] = {}
    for p in profiles:
        seen.setdefault((p.kubeconfig, p.context, p.namespace), p)
    targets = list(seen.values())
    results = each_member(targets, lambda p: environments.list_environments(connect(p),
                                                                       p.namespace))
    rows: list[dict[str, Any]] = []
    for p, result in zip(targets, results, strict=True):
        if isinstance(result, MmerepError):
            rows.append({"profile": p.name, "namespace": p.namespace, "name": "-",
                         "template": "-", "revision": "-", "status": "unreachable",
                         "image": "", "updated": "", "error": result.message})
            continue
        rows += [{"profile": p.name, **row} for row in result]
    return rows
