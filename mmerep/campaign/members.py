"""Members as the campaign plan sees them: executor size, deployed executors and room,
typed in or read live (in parallel; a member that is down is reported, not fatal)."""

from __future__ import annotations

import concurrent.futures
import math

from mmerep.campaign.capacity import Capacity, connect, read_member
from mmerep.campaign.plan import MemberRoom
from mmerep.errors import MmerepError, UsageError
from mmerep.profiles import Profile
from mmerep.quantity import parse_cpu, parse_memory

CAMPAIGN_LABEL = "mme-rep/campaign"
EXECUTORS = "app.kubernetes.io/component=executor,app.kubernetes.io/managed-by=mme-rep"


def executor_size(profile: Profile, cpu: str | None, memory: str | None) -> tuple[float, int]:
    """The executors' CPU and memory: as given, else the profile's default requests."""
    cpu = cpu or profile.requests.get("cpu")
    memory = memory or profile.requests.get("memory")
    if not cpu or not memory:
        raise UsageError(f"profile '{profile.name}' has no default executor size",
                         hint="give --executor-cpu and --executor-memory")
    return parse_cpu(cpu, "--executor-cpu"), parse_memory(memory, "--executor-memory")


def room_in_executors(cap: Capacity, cpu: float, memory: int) -> int:
    return max(0, math.floor(min(cap.free_cpu / cpu, cap.free_memory / memory) + 1e-9))


def deployed_executors(profile: Profile, campaign: str | None) -> int:
    """Executor replicas of the member's environments (of one campaign, when named)."""
    selector = EXECUTORS + (f",{CAMPAIGN_LABEL}={campaign}" if campaign else "")
    kube = connect(profile)
    return sum(int(d.get("spec", {}).get("replicas", 0))
               for d in kube.list_objects("apps/v1", "Deployment", label_selector=selector))


def member_room(profile: Profile, cpu: float, memory: int, room: int | None,
                deployed: int | None, campaign: str | None) -> MemberRoom:
    """One member: typed-in numbers where given, the rest read live."""
    down = None
    if room is None:
        cap = read_member(profile)
        down = cap.down
        room = None if down else room_in_executors(cap, cpu, memory)
    if deployed is None and down is None:
        try:
            deployed = deployed_executors(profile, campaign)
        except MmerepError as exc:
            down = exc.message
    return MemberRoom(profile.name, cpu, memory, deployed=deployed or 0,
                      room=None if down else room, down=down)


def member_rooms(profiles: list[Profile], cpu: str | None, memory: str | None,
                 rooms: dict[str, int], deployed: dict[str, int],
                 campaign: str | None) -> list[MemberRoom]:
    names = [p.name for p in profiles]
    for option, typed in (("--room", rooms), ("--deployed", deployed)):
        for name in typed:
            if name not in names:
                raise UsageError(f"{option} {name}: not a member", hint=f"members: "
                                 f"{', '.join(names)}")
    sizes = {p.name: executor_size(p, cpu, memory) for p in profiles}

    def one(p: Profile) -> MemberRoom:
        return member_room(p, *sizes[p.name], rooms.get(p.name), deployed.get(p.name),
                           campaign)

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(profiles))) as pool:
        return list(pool.map(one, profiles))
