"""Deciding what a run has to do: compare the sources with the index and the disk."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field

from mmerep.synclocal.copy import file_checksum
from mmerep.synclocal.errors import DestinationFull
from mmerep.synclocal.index import Index
from mmerep.synclocal.sources import SourceFile


@dataclass
class Plan:
    copy: list[SourceFile] = field(default_factory=list)
    skip: list[SourceFile] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    recheck_failures: list[str] = field(default_factory=list)

    @property
    def bytes_to_copy(self) -> int:
        return sum(f.size for f in self.copy)


def unchanged(f: SourceFile, index: Index, dest: str, verify: bool) -> bool:
    """Skip only what the index vouches for and the disk still agrees with."""
    e = index.files.get(f.rel)
    if e is None or e.src != f.path or (verify and e.checksum is None):
        return False
    if (e.size, e.mtime_ns, e.ctime_ns, e.ino) != (f.size, f.mtime_ns, f.ctime_ns, f.ino):
        return False
    try:
        st = os.lstat(os.path.join(dest, f.rel))
    except OSError:
        return False
    return st.st_size == e.size and st.st_mtime_ns == e.mtime_ns


def make_plan(files: Sequence[SourceFile], index: Index, dest: str, *, verify: bool,
              recheck: bool, jobs: int) -> Plan:
    plan = Plan()
    for f in files:
        (plan.skip if unchanged(f, index, dest, verify) else plan.copy).append(f)
    wanted = {f.rel for f in files}
    plan.stale = sorted(rel for rel in index.files if rel not in wanted)
    if recheck and plan.skip:
        from concurrent.futures import ThreadPoolExecutor  # with logging: 10 ms at start

        def matches(f: SourceFile) -> bool:
            path = os.path.join(dest, f.rel)
            return file_checksum(path, index.chunk_size) == index.files[f.rel].checksum

        with ThreadPoolExecutor(max(1, jobs)) as pool:
            ok = list(pool.map(matches, plan.skip))
        bad = [f for f, good in zip(plan.skip, ok, strict=True) if not good]
        plan.recheck_failures = [f.rel for f in bad]
        plan.skip = [f for f, good in zip(plan.skip, ok, strict=True) if good]
        plan.copy.extend(bad)
    return plan


def bytes_needed(plan: Plan, index: Index) -> int:
    replaced = sum(index.files[f.rel].size for f in plan.copy if f.rel in index.files)
    return plan.bytes_to_copy - replaced


def check_space(root: str, need: int, free: int | None = None) -> None:
    """Fail before copying anything rather than fill the disk and stop half-way. ``free``:
    as measured before the run began copying (early.py), else now."""
    if free is None:
        free = shutil.disk_usage(root).free
    if need > free:
        raise DestinationFull(
            f"{root} has {human_size(free)} free but the dataset needs {human_size(need)} more",
            hint="free space, run `mme-rep synclocal evict`, or stage less")


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
