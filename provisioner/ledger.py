"""Reservations of node-local disk space: pure data and the best-fit choice.

A node's ledger lives in the API (a ConfigMap written with its resourceVersion, so two
writers can never both win); this module only decides. The invariant every function
keeps: on each disk, the sum of reservations never exceeds what the disk can give.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Disk:
    """One disk (one file system mounted under the agent's root), as its agent reports it.

    ``allocatable``: what volumes may take in all (free space plus what our volumes
    already use), so file-system metadata and foreign files are never promised.
    """

    name: str
    path: str
    size: int
    allocatable: int
    free: int = 0
    quota: bool = False


@dataclass(frozen=True)
class Reservation:
    claim_uid: str
    claim: str  # namespace/name
    disk: str
    size: int
    at: float = 0.0  # when it was made (time.time())


@dataclass(frozen=True)
class Lost:
    """A claim whose node was lost: its copy, to create anew once the old one is gone."""

    claim_uid: str
    claim: dict[str, Any]
    at: float


@dataclass
class NodeLedger:
    """``ahead``: bytes per disk the leading controller (``ahead_holder``) set aside for
    claims to come, so it can create their PVs before naming them in the ledger (the bytes
    were recorded first; see ``refill_ahead``)."""

    node: str
    disks: dict[str, Disk] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    lost: dict[str, Lost] = field(default_factory=dict)
    ahead: dict[str, int] = field(default_factory=dict)
    ahead_holder: str = ""

    def reserved(self, disk: str) -> int:
        return sum(r.size for r in self.reservations.values() if r.disk == disk)

    def held(self, disk: str) -> int:
        """Reserved for claims plus set aside ahead: what nobody else may give."""
        return self.reserved(disk) + self.ahead.get(disk, 0)

    def available(self, disk: str) -> int:
        d = self.disks.get(disk)
        return 0 if d is None else d.allocatable - self.held(disk)

    def largest_available(self) -> int:
        return max((self.available(d) for d in self.disks), default=0)

    def total_available(self) -> int:
        return sum(max(0, self.available(d)) for d in self.disks)

    def overbooked(self) -> list[str]:
        """Disks whose reservations exceed what they can give (must stay empty)."""
        return [d for d in self.disks if self.available(d) < 0]

    def with_disks(self, disks: Iterable[Disk]) -> NodeLedger:
        return replace(self, disks={d.name: d for d in disks})


def best_fit(ledger: NodeLedger, size: int) -> Disk | None:
    """The disk whose free space fits ``size`` most tightly (ties: by name), or None.

    Tight fits keep the big free areas whole for big claims later.
    """
    fits = [(ledger.available(name), name) for name in ledger.disks
            if ledger.available(name) >= size]
    if not fits or size <= 0:
        return None
    return ledger.disks[min(fits)[1]]


@dataclass(frozen=True)
class Plan:
    """What to do with a batch of claims on one node."""

    ledger: NodeLedger  # the ledger with the new reservations
    placed: dict[str, Reservation]  # claim uid -> its reservation (new or existing)
    refused: dict[str, str]  # claim uid -> why it does not fit
    new: tuple[str, ...] = ()  # uids reserved by this plan (the ledger must be written)


def plan(ledger: NodeLedger, claims: Iterable[tuple[str, str, int]], now: float) -> Plan:
    """Reserve space for ``claims`` (uid, namespace/name, bytes), biggest first.

    A claim that already holds a reservation keeps it (creating its PV again is
    idempotent); the others get the best-fitting disk or a reason why not.
    """
    reservations = dict(ledger.reservations)
    work = replace(ledger, reservations=reservations)
    placed: dict[str, Reservation] = {}
    refused: dict[str, str] = {}
    new: list[str] = []
    for uid, key, size in sorted(claims, key=lambda c: (-c[2], c[0])):
        if uid in reservations:
            placed[uid] = reservations[uid]
            continue
        disk = best_fit(work, size)
        if disk is None:
            refused[uid] = (f"node {ledger.node} has no local disk with {size} bytes free "
                            f"(largest free: {max(0, work.largest_available())} bytes on "
                            f"{len(work.disks)} disk(s))")
            continue
        reservations[uid] = placed[uid] = Reservation(uid, key, disk.name, size, now)
        new.append(uid)
    return Plan(work, placed, refused, tuple(new))


def refill_ahead(ledger: NodeLedger, holder: str, fraction: float) -> NodeLedger:
    """The ledger with ``holder``'s set-aside bytes topped up: on each disk, ``fraction`` of
    what it can give, never more than is free after the reservations."""
    ahead = {}
    for name, disk in ledger.disks.items():
        free = disk.allocatable - ledger.reserved(name)
        want = min(free, int(disk.allocatable * fraction))
        if want > 0:
            ahead[name] = want
    return replace(ledger, ahead=ahead, ahead_holder=holder if ahead else "")


def fit_ahead(budget: dict[str, int], size: int) -> str | None:
    """The disk whose set-aside bytes fit ``size`` most tightly, or None."""
    fits = [(left, name) for name, left in budget.items() if left >= size]
    return min(fits)[1] if fits and size > 0 else None


# -- the API form: ConfigMap data -------------------------------------------------------

def ledger_data(ledger: NodeLedger) -> dict[str, str]:
    return {
        "node": ledger.node,
        "reservations": json.dumps({u: asdict(r) for u, r in sorted(
            ledger.reservations.items())}, sort_keys=True),
        "lost": json.dumps({u: asdict(v) for u, v in sorted(ledger.lost.items())},
                           sort_keys=True),
        "ahead": json.dumps({"holder": ledger.ahead_holder, "disks": ledger.ahead},
                            sort_keys=True),
    }


def ledger_from_data(node: str, data: Mapping[str, str] | None,
                     disks: Iterable[Disk] = ()) -> NodeLedger:
    data = data or {}
    reservations = {u: Reservation(**r) for u, r in json.loads(
        data.get("reservations") or "{}").items()}
    lost = {u: Lost(**v) for u, v in json.loads(data.get("lost") or "{}").items()}
    ahead = json.loads(data.get("ahead") or "{}")
    return NodeLedger(node, {d.name: d for d in disks}, reservations, lost,
                      {k: int(v) for k, v in (ahead.get("disks") or {}).items()},
                      ahead.get("holder") or "")


def disks_data(disks: Iterable[Disk]) -> str:
    return json.dumps([asdict(d) for d in sorted(disks, key=lambda d: d.name)],
                      sort_keys=True)


def disks_from_data(text: str | None) -> list[Disk]:
    return [Disk(**d) for d in json.loads(text or "[]")]
