"""The cache: eviction decisions as data, and eviction, pins and LRU on a real directory."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from mmerep.synclocal import index as ix
from mmerep.synclocal.cache import (
    DatasetInfo,
    Usage,
    evict,
    list_datasets,
    pin,
    plan_eviction,
    unpin,
)
from mmerep.synclocal.errors import SyncError
from mmerep.synclocal.layout import Layout, writer_lock
from mmerep.synclocal.stage import stage_dataset

MiB = 1 << 20


def ds(name: str, size: int, last_used: float, pinned: bool = False) -> DatasetInfo:
    return DatasetInfo(name, True, size, 1, updated=0.0, last_used=last_used,
                       pinned_by=["job-1"] if pinned else [])


SETS = [ds("a", 30, last_used=100), ds("b", 30, last_used=300), ds("c", 30, last_used=200)]


def test_below_the_high_watermark_nothing_is_evicted() -> None:
    assert plan_eviction(SETS, Usage(90, 100), high=0.9, low=0.5) == []


def test_above_high_evicts_least_recently_used_down_to_low() -> None:
    assert plan_eviction(SETS, Usage(91, 100), high=0.9, low=0.5) == ["a", "c"]
    assert plan_eviction(SETS, Usage(91, 100), high=0.9, low=0.65) == ["a"]


def test_pinned_and_protected_datasets_are_never_chosen() -> None:
    sets = [ds("a", 30, 100, pinned=True), ds("b", 30, 300), ds("c", 30, 200)]
    assert plan_eviction(sets, Usage(95, 100), high=0.9, low=0.1) == ["c", "b"]
    assert plan_eviction(sets, Usage(95, 100), high=0.9, low=0.1, protect={"c"}) == ["b"]


def test_datasets_still_wanted_go_last() -> None:
    assert plan_eviction(SETS, Usage(95, 100), high=0.9, low=0.65,
                         keep_if_possible={"a"}) == ["c"]
    assert plan_eviction(SETS, Usage(95, 100), high=0.9, low=0.1,
                         keep_if_possible={"a"}) == ["c", "b", "a"]


def test_room_needed_for_the_next_dataset_counts() -> None:
    assert plan_eviction(SETS, Usage(60, 100), high=0.9, low=0.8, need=40) == ["a"]
    assert plan_eviction(SETS, Usage(60, 100), high=0.9, low=0.8, need=20) == []


def test_impossible_watermarks_are_refused() -> None:
    with pytest.raises(SyncError, match="watermarks"):
        plan_eviction(SETS, Usage(1, 100), high=0.5, low=0.8)


def make_dataset(root: Path, tmp: Path, name: str, size: int, used_at: float) -> None:
    src = tmp / "bulk" / name
    src.mkdir(parents=True)
    (src / "data.nc").write_bytes(random.Random(name).randbytes(size))
    layout = Layout(root)
    with writer_lock(layout):
        stage_dataset(layout, name, [str(src)])
    os.utime(layout.use_path(name), (used_at, used_at))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "ssd"
    make_dataset(r, tmp_path, "old", MiB, used_at=1_000)
    make_dataset(r, tmp_path, "mid", MiB, used_at=2_000)
    make_dataset(r, tmp_path, "new", MiB, used_at=3_000)
    return r


def test_evict_removes_lru_data_and_index_and_keeps_pinned(root: Path) -> None:
    layout = Layout(root)
    pin(layout, "old", "job-7")
    with writer_lock(layout):
        rep = evict(layout, high=0.5, low=0.4, capacity=4 * MiB)
    assert [name for name, _ in rep.evicted] == ["mid", "new"]
    assert rep.kept_pinned == ["old"]
    assert (root / "old" / "data.nc").exists()
    assert not (root / "mid").exists() and ix.load(layout, "mid") is None
    assert [d.name for d in list_datasets(layout)] == ["old"]
    assert rep.after.used == MiB
    assert not any((root / ".synclocal" / "trash").iterdir())


def test_unpin_makes_it_evictable_and_counts_as_use(root: Path) -> None:
    layout = Layout(root)
    pin(layout, "old", "job-7")
    pin(layout, "old", "job-8")
    assert unpin(layout, "old", "job-7") == ["job-8"]
    assert unpin(layout, "old", "job-8") == []
    with pytest.raises(SyncError, match="not pinned by"):
        unpin(layout, "old", "job-8")
    with writer_lock(layout):
        rep = evict(layout, high=0.5, low=0.4, capacity=4 * MiB)
    assert [name for name, _ in rep.evicted] == ["mid", "new"]  # "old" was just used


def test_status_lists_state_size_last_use_and_pins(root: Path) -> None:
    layout = Layout(root)
    pin(layout, "mid", "job-1")
    info = {d.name: d for d in list_datasets(layout)}
    assert set(info) == {"old", "mid", "new"}
    assert info["old"].complete and info["old"].bytes == MiB and info["old"].files == 1
    assert info["old"].last_used == 1_000 and info["mid"].pinned_by == ["job-1"]


def test_a_pin_may_come_before_the_data(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "ssd")
    pin(layout, "future", "job-1")
    (only,) = list_datasets(layout)
    assert only.name == "future" and only.pinned and not only.complete
