"""Staging a dataset: what lands on the local disk, what the index says, what a re-run does."""

from __future__ import annotations

import os
import random
import sys
import threading
from pathlib import Path

import pytest

from mmerep.synclocal import index as ix
from mmerep.synclocal.copy import file_checksum
from mmerep.synclocal.errors import SourceMissing, SyncError
from mmerep.synclocal.layout import Layout, writer_lock
from mmerep.synclocal.stage import StageOptions, stage_dataset


def write(path: Path, size: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def tree(src: Path) -> dict[str, bytes]:
    return {str(p.relative_to(src)): p.read_bytes() for p in sorted(src.rglob("*"))
            if p.is_file()}


def stage(root: Path, name: str, sources: list[str], **kw: object) -> object:
    layout = Layout(root)
    with writer_lock(layout):
        return stage_dataset(layout, name, sources, StageOptions(**kw))  # type: ignore[arg-type]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    s = tmp_path / "bulk" / "olci"
    write(s / "big.nc", 3 * 1024 * 1024 + 17, seed=1)
    for i in range(30):
        write(s / "day" / f"{i:02d}.nc", 1000 + i * 311, seed=100 + i)
    write(s / "empty.nc", 0)
    return s


def assert_index_matches_disk(root: Path, name: str) -> ix.Index:
    """What a user checks: every indexed file exists, has its size and its checksum."""
    index = ix.load(Layout(root), name)
    assert index is not None
    for rel, entry in index.files.items():
        path = root / name / rel
        assert path.stat().st_size == entry.size, rel
        assert file_checksum(path, index.chunk_size) == entry.checksum, rel
    return index


def test_stage_copies_exactly_and_records_checksums(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ssd"
    report = stage(root, "olci", [str(src)], chunk_size=1 << 20, jobs=4)
    assert report.complete and report.files_copied == 32 and report.failures == []
    assert tree(root / "olci") == tree(src)
    index = assert_index_matches_disk(root, "olci")
    assert index.complete and len(index.files) == 32
    big = src / "big.nc"
    assert (root / "olci" / "big.nc").stat().st_mtime_ns == big.stat().st_mtime_ns
    # Chunked (4 chunks of 1 MiB) and whole-file checksums are computed the same way.
    assert index.files["big.nc"].checksum == file_checksum(big, 1 << 20)
    assert not list((root / ".synclocal" / "tmp").iterdir())


def test_rerun_skips_verified_and_recopies_changed_or_removes_deleted(
        tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ssd"
    stage(root, "olci", [str(src)])
    write(src / "day" / "03.nc", 5000, seed=999)
    (src / "day" / "04.nc").unlink()
    report = stage(root, "olci", [str(src)])
    assert (report.files_copied, report.files_removed) == (1, 1)
    assert report.files_skipped == 30
    assert tree(root / "olci") == tree(src)
    assert "day/04.nc" not in assert_index_matches_disk(root, "olci").files


_OPENED: list[str] = []
_WATCHING: list[str] = []  # the prefix whose opens the audit hook records, when set


def _record_opens(event: str, args: tuple) -> None:
    if event == "open" and _WATCHING and str(args[0]).startswith(_WATCHING[0]):
        _OPENED.append(str(args[0]))


sys.addaudithook(_record_opens)  # a process-wide hook, idle unless a test sets _WATCHING


def test_nothing_to_do_opens_no_source_and_copies_nothing(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ssd"
    stage(root, "olci", [str(src)])
    local = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (root / "olci").rglob("*")}
    _OPENED.clear()
    _WATCHING.append(str(src))
    try:
        report = stage(root, "olci", [str(src)])
    finally:
        _WATCHING.clear()
    assert _OPENED == []  # size, mtime and inode from the index decide; no byte is read
    assert (report.files_copied, report.bytes_copied, report.files_skipped) == (0, 0, 32)
    assert report.complete
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in (root / "olci").rglob("*")} == local  # not one local file rewritten
    # The hook does see a source being read once there is something to copy.
    write(src / "big.nc", 3 * 1024 * 1024 + 17, seed=2)
    _WATCHING.append(str(src))
    try:
        stage(root, "olci", [str(src)])
    finally:
        _WATCHING.clear()
    assert str(src / "big.nc") in _OPENED


def test_unverified_copy_is_hashed_when_verification_is_asked_for(
        tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ssd"
    stage(root, "olci", [str(src)], verify=False)
    assert all(e.checksum is None for e in ix.load(Layout(root), "olci").files.values())
    report = stage(root, "olci", [str(src)], verify=True)
    assert report.files_copied == 32
    assert_index_matches_disk(root, "olci")


def test_recheck_finds_a_corrupted_local_copy(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "ssd"
    stage(root, "olci", [str(src)])
    victim = root / "olci" / "day" / "07.nc"
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[10] ^= 0xFF  # bit rot: same size, same mtime
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert stage(root, "olci", [str(src)]).files_copied == 0  # cheap check cannot see it
    report = stage(root, "olci", [str(src)], recheck=True)
    assert report.verify_failures == 1 and report.files_copied == 1
    assert victim.read_bytes() == (src / "day" / "07.nc").read_bytes()


def test_globs_map_relative_to_their_fixed_directories(tmp_path: Path) -> None:
    bulk = tmp_path / "bulk"
    write(bulk / "2019" / "01" / "a.nc", 10)
    write(bulk / "2019" / "02" / "b.nc", 20)
    write(bulk / "2019" / "02" / "skip.txt", 5)
    write(bulk / "aux" / "lut.dat", 7)
    root = tmp_path / "ssd"
    stage(root, "mix", [str(bulk / "2019" / "*" / "*.nc"), str(bulk / "aux" / "lut.dat")])
    assert sorted(tree(root / "mix")) == ["01/a.nc", "02/b.nc", "lut.dat"]


def test_two_sources_colliding_on_one_name_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "a" / "x.nc", 1)
    write(tmp_path / "b" / "x.nc", 2)
    with pytest.raises(SyncError, match="same file"):
        stage(tmp_path / "ssd", "ds", [str(tmp_path / "a"), str(tmp_path / "b")])


def test_staging_into_its_own_source_is_refused(tmp_path: Path, src: Path) -> None:
    with pytest.raises(SyncError, match=r"destination .* is inside the source"):
        stage(src / "cache", "ds", [str(src)])
    root = tmp_path / "ssd"
    stage(root, "olci", [str(src)])
    with pytest.raises(SyncError, match="inside the destination"):
        stage(root, "again", [str(root / "olci")])


def test_missing_source_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "ssd"
    with pytest.raises(SourceMissing, match="does not exist"):
        stage(root, "ds", [str(tmp_path / "nowhere")])
    with pytest.raises(SourceMissing, match="matches nothing"):
        stage(root, "ds", [str(tmp_path / "*.nc")])
    assert not (root / "ds").exists() and ix.load(Layout(root), "ds") is None


def test_progress_reports_up_to_the_total(tmp_path: Path, src: Path) -> None:
    seen = []
    stage(tmp_path / "ssd", "olci", [str(src)], progress=seen.append)
    assert seen and seen[-1].bytes_done == seen[-1].bytes_total == sum(
        len(v) for v in tree(src).values())
    assert seen[-1].files_done == seen[-1].files_total == 32
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)


def test_bandwidth_limit_slows_the_copy(tmp_path: Path) -> None:
    write(tmp_path / "s" / "f", 4 << 20)
    report = stage(tmp_path / "ssd", "ds", [str(tmp_path / "s")], bwlimit=8 << 20)
    assert report.seconds >= 0.3  # 4 MiB at 8 MiB/s, the first 1 MiB piece goes at once


def test_many_small_files_are_copied_by_worker_processes(tmp_path: Path) -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: small files stay in this process")
    src = tmp_path / "many"
    for i in range(300):
        write(src / f"{i:03d}.dat", 4096, seed=i)
    pids = tmp_path / "pids"

    def note_pid(rel: str, offset: int) -> None:
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")

    report = stage(tmp_path / "ssd", "many", [str(src)], piece_hook=note_pid)
    assert report.complete and report.files_copied == 300
    workers = set(pids.read_text().split())
    assert len(workers) == min(8, os.cpu_count() or 1) and str(os.getpid()) not in workers
    assert tree(tmp_path / "ssd" / "many") == tree(src)
    assert len(assert_index_matches_disk(tmp_path / "ssd", "many").files) == 300


def test_cancel_stops_soon_and_leaves_a_consistent_incomplete_index(
        tmp_path: Path, src: Path) -> None:
    cancel = threading.Event()
    report = stage(tmp_path / "ssd", "olci", [str(src)], jobs=1, cancel=cancel,
                   piece_hook=lambda rel, off: cancel.set())
    assert not report.complete and report.files_copied < 32
    index = assert_index_matches_disk(tmp_path / "ssd", "olci")
    assert not index.complete
    assert stage(tmp_path / "ssd", "olci", [str(src)]).complete


def test_worker_read_ahead_skips_what_it_cannot_open(tmp_path: Path) -> None:
    """Read-ahead is a hint: a missing file or a FIFO ahead must neither fail nor block."""
    from mmerep.synclocal.procs import _prefetch
    from mmerep.synclocal.sources import SourceFile

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "data").write_bytes(b"x" * 4096)
    files = [SourceFile(str(tmp_path / name), name, 4096, 0, 0, 0, 0o644)
             for name in ("gone", "pipe", "data")]
    opened: list[int | None] = []
    worker = threading.Thread(target=lambda: opened.extend(
        _prefetch(f) for f in files), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "read-ahead blocked on the FIFO"
    assert [fd is not None for fd in opened] == [False, False, True]
    fd = opened[2]
    assert fd is not None
    try:  # the copy reads the descriptor read-ahead opened
        assert os.pread(fd, 10, 0) == b"x" * 10
    finally:
        os.close(fd)
