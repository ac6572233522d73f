"""The local SSD as a cache: what is staged, who pins it, and eviction by watermarks.

When usage rises above the high watermark, least-recently-used datasets go until it
is at or below the low watermark; the gap between the two keeps the daemon from
evicting one dataset per new file. A pinned dataset (a running job reads it) is never
evicted. Deciding is a pure function (``plan_eviction``), tested as data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from mmerep.synclocal import index as ix
from mmerep.synclocal.errors import SyncError
from mmerep.synclocal.layout import Layout, check_dataset_name, pins_lock


@dataclass
class DatasetInfo:
    name: str
    complete: bool
    bytes: int
    files: int
    updated: float
    last_used: float | None
    pinned_by: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def pinned(self) -> bool:
        return bool(self.pinned_by)


@dataclass(frozen=True)
class Usage:
    used: int
    total: int

    @property
    def fraction(self) -> float:
        return self.used / self.total if self.total else 0.0


@dataclass
class EvictionReport:
    before: Usage
    after: Usage
    evicted: list[tuple[str, int]] = field(default_factory=list)
    kept_pinned: list[str] = field(default_factory=list)


def pins(layout: Layout, name: str) -> list[str]:
    d = layout.pins_dir(name)
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def list_datasets(layout: Layout) -> list[DatasetInfo]:
    names: set[str] = set()
    if layout.index_dir.is_dir():
        names |= {p.name.rsplit(".", 1)[0] for p in layout.index_dir.iterdir()
                  if p.suffix in (".json", ".journal")}
    if (layout.meta / "pins").is_dir():
        names |= {p.name for p in (layout.meta / "pins").iterdir() if any(p.iterdir())}
    out = []
    for name in sorted(names):
        idx = ix.load(layout, name) or ix.Index(dataset=name)
        out.append(DatasetInfo(name, idx.complete, idx.bytes, len(idx.files), idx.updated,
                               layout.last_used(name), pins(layout, name), idx.errors))
    return out


def pin(layout: Layout, name: str, holder: str = "manual") -> None:
    """Protect a dataset from eviction; a job pins before it reads and unpins after."""
    check_dataset_name(holder)
    with pins_lock(layout):
        d = layout.pins_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        (d / holder).touch()
    layout.mark_used(name)


def unpin(layout: Layout, name: str, holder: str | None = "manual") -> list[str]:
    """Drop one holder's pin (or all with ``holder=None``); returns the pins left."""
    with pins_lock(layout):
        d = layout.pins_dir(name)
        held = pins(layout, name)
        if holder is not None and holder not in held:
            raise SyncError(f"dataset {name} is not pinned by {holder!r}",
                            hint=f"pinned by: {', '.join(held) or 'nobody'}")
        for h in held if holder is None else [holder]:
            (d / h).unlink()
        left = pins(layout, name)
        if not left:
            with contextlib.suppress(OSError):
                d.rmdir()
    layout.mark_used(name)
    return left


def usage(layout: Layout, capacity: int | None = None) -> Usage:
    """The file system's usage, or the datasets' sum against a quota the operator set."""
    if capacity:
        return Usage(sum(d.bytes for d in list_datasets(layout)), capacity)
    du = shutil.disk_usage(layout.root)
    return Usage(du.used, du.total)


def plan_eviction(datasets: Sequence[DatasetInfo], use: Usage, *, high: float, low: float,
                  need: int = 0, protect: Collection[str] = (),
                  keep_if_possible: Collection[str] = ()) -> list[str]:
    """Names to evict, in order, so that ``used + need`` ends at or below the low mark.

    Nothing happens below the high mark. Unpinned, unprotected datasets go least recently
    used first, except that those in ``keep_if_possible`` (still wanted by the manifest)
    go only after all others.
    """
    if not 0 < low <= high <= 1:
        raise SyncError(f"watermarks must satisfy 0 < low <= high <= 1 (low={low}, "
                        f"high={high})", hint="e.g. --high 0.9 --low 0.8")
    if use.used + need <= high * use.total:
        return []
    target = low * use.total - need
    candidates = [d for d in datasets if not d.pinned and d.name not in protect]
    candidates.sort(key=lambda d: (d.name in keep_if_possible, d.last_used or d.updated))
    chosen, used = [], use.used
    for d in candidates:
        if used <= target:
            break
        chosen.append(d.name)
        used -= d.bytes
    return chosen


def evict(layout: Layout, *, high: float = 0.9, low: float = 0.8, need: int = 0,
          capacity: int | None = None, protect: Collection[str] = (),
          keep_if_possible: Collection[str] = ()) -> EvictionReport:
    """Run the watermark eviction now. The caller holds the writer lock."""
    before = usage(layout, capacity)
    datasets = list_datasets(layout)
    report = EvictionReport(before, before,
                            kept_pinned=[d.name for d in datasets if d.pinned])
    names = plan_eviction(datasets, before, high=high, low=low, need=need, protect=protect,
                          keep_if_possible=keep_if_possible)
    sizes = {d.name: d.bytes for d in datasets}
    trash = layout.meta / "trash"
    trash.mkdir(parents=True, exist_ok=True)
    for name in names:
        with pins_lock(layout):
            if pins(layout, name):
                continue  # pinned since we looked: a job started reading it
            # Index first: a dataset directory without an index is just copied again.
            ix.remove(layout, name)
            src = layout.dataset_dir(name)
            if src.exists():
                os.rename(src, trash / f"{name}.{time.time_ns()}")
            layout.use_path(name).unlink(missing_ok=True)
        report.evicted.append((name, sizes.get(name, 0)))
    for leftover in trash.iterdir():  # outside the pins lock: deleting may take long
        shutil.rmtree(leftover, ignore_errors=True)
    report.after = usage(layout, capacity)
    return report
