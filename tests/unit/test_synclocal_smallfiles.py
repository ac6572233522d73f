"""Many small files, as a user stages them: the worker processes' batched records, a
parent directory that cannot be made, and the command stopped by Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmerep.synclocal import index as ix
from mmerep.synclocal.copy import PIECE, copy_small, file_checksum, unnamed_temporaries
from mmerep.synclocal.errors import SyncError
from mmerep.synclocal.layout import Layout, writer_lock
from mmerep.synclocal.sources import SourceFile
from mmerep.synclocal.stage import StageOptions, StageReport, stage_dataset
from testkit.pagecache import cached_fraction


def make_tree(src: Path, dirs: int, per_dir: int, size: int) -> Path:
    rnd = random.Random(dirs * per_dir)
    for d in range(dirs):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(per_dir):
            (src / f"d{d}" / f"f{i:04d}.dat").write_bytes(rnd.randbytes(size))
    return src


def stage(root: Path, sources: list[str], **kw: object) -> StageReport:
    layout = Layout(root)
    with writer_lock(layout):
        return stage_dataset(layout, "ds", sources, StageOptions(**kw))  # type: ignore[arg-type]


def staged(root: Path, src: Path) -> ix.Index:
    """Every file under the dataset equals its source; every index entry is true."""
    index = ix.load(Layout(root), "ds")
    assert index is not None
    for path in (root / "ds").rglob("*"):
        if path.is_file():
            rel = path.relative_to(root / "ds")
            assert path.read_bytes() == (src / rel).read_bytes(), f"partial or stale {rel}"
    for rel, entry in index.files.items():
        assert file_checksum(root / "ds" / rel, index.chunk_size) == entry.checksum, rel
    return index


def test_workers_records_arrive_in_batches_and_all_are_kept(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "bulk", 3, 200, 3000)
    report = stage(tmp_path / "ssd", [str(src)], processes=2, verify=True)
    assert report.complete and report.files_copied == 600
    assert report.bytes_copied == 600 * 3000
    index = staged(tmp_path / "ssd", src)
    assert len(index.files) == 600 and all(e.checksum for e in index.files.values())
    unverified = stage(tmp_path / "ssd2", [str(src)], processes=2, verify=False)
    assert unverified.complete
    index = ix.load(Layout(tmp_path / "ssd2"), "ds")
    assert index is not None and {e.checksum for e in index.files.values()} == {None}


def test_a_parent_that_cannot_be_made_fails_its_files_alone(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "bulk", 3, 150, 1000)
    (tmp_path / "ssd" / "ds").mkdir(parents=True)
    (tmp_path / "ssd" / "ds" / "d1").write_bytes(b"in the way")
    report = stage(tmp_path / "ssd", [str(src)], processes=2)
    assert not report.complete and report.files_copied == 300
    assert len(report.failures) == 150
    assert report.failures[0].reason.startswith(f"cannot create {tmp_path}/ssd/ds/d1: ")
    assert (tmp_path / "ssd" / "ds" / "d2" / "f0149.dat").exists()


def _copiers(root: Path) -> list[int]:
    """Processes still running a stage into ``root`` (the command or its workers)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(root).encode() in cmd and b"synclocal" in cmd:
            found.append(int(pid))
    return found


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143,
                                                    "interrupted by SIGTERM")])
def test_stopped_command_leaves_only_whole_files_and_resumes(
        tmp_path: Path, sig: int, code: int, said: str) -> None:
    src = make_tree(tmp_path / "bulk", 2, 200, 20_000)
    root = tmp_path / "ssd"
    journal = root / ".synclocal" / "index" / "ds.journal"
    cmd = [sys.executable, "-m", "mmerep", "synclocal", "stage", str(src), "--dataset", "ds",
           "--to", str(root)]
    proc = subprocess.Popen([*cmd, "--bwlimit", "2M"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and b'"op":"put"' in journal.read_bytes():
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert err.strip().splitlines() == [said], err
    assert _copiers(root) == [], "a worker outlived the stopped command"
    assert not list((root / ".synclocal" / "tmp").iterdir()), "temporaries left behind"
    before = staged(root, src)
    assert not before.complete and 1 <= len(before.files) < 400

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert f"{len(before.files)} already staged" in again.stdout
    after = staged(root, src)
    assert after.complete and len(after.files) == 400



def test_copies_end_on_disk_and_leave_the_page_cache_to_the_jobs(tmp_path: Path) -> None:
    """Write-behind: each worker's copies are written back and dropped a few files later,
    the sources dropped once read (reusing the same pages halved the CPU of a run)."""
    src = make_tree(tmp_path / "bulk", 2, 200, 64 * 1024)
    sources = sorted(p for p in src.rglob("*") if p.is_file())
    for p in sources:  # on disk, as a bulk tier's files are: clean pages can be dropped
        fd = os.open(p, os.O_RDONLY)
        os.fdatasync(fd)
        os.close(fd)
    assert cached_fraction(sources) > 0.9  # just written
    report = stage(tmp_path / "ssd", [str(src)], processes=2)
    assert report.complete and report.files_copied == 400
    copies = sorted(p for p in (tmp_path / "ssd" / "ds").rglob("*") if p.is_file())
    assert len(copies) == 400
    assert cached_fraction(copies) < 0.05
    assert cached_fraction(sources) < 0.05
    staged(tmp_path / "ssd", src)  # and every copy is whole and true to its checksum


def test_workers_leave_no_temporary_behind(tmp_path: Path) -> None:
    """Each worker has a temporary directory of its own (creating files in one shared
    directory made them wait on its lock); a finished run leaves none of them."""
    src = make_tree(tmp_path / "src", 3, 120, 2048)
    report = stage(tmp_path / "ssd", [str(src)], processes=2)
    assert report.complete and report.files_copied == 360
    assert list(Layout(tmp_path / "ssd").tmp_dir.iterdir()) == []
    assert len(staged(tmp_path / "ssd", src).files) == 360


def test_index_snapshot_is_the_json_of_the_index(tmp_path: Path) -> None:
    """The snapshot is formatted by hand for speed: it must be the very JSON that
    json.dumps writes, for names and sources with quotes, backslashes and non-ASCII."""
    import json

    index = ix.Index("ds", sources=['/bulk/"q"', "/bulk/é"], chunk_size=1 << 26,
                     complete=True, updated=1.5, bytes=3, errors=["a: no \\ way"])
    index.files = {
        'b/"x".dat': ix.Entry('/bulk/"q"/b/"x".dat', 1, 10**18, 10**18 + 1, 7, "ab" * 16),
        "a/é\n.dat": ix.Entry("/bulk/é/a/é\n.dat", 2, 5, 6, 8, None),
        "0": ix.Entry("/bulk/0", 0, 0, 0, 0, "00" * 16)}
    raw = ix.snapshot(index)
    assert raw == json.dumps(index.to_json(), separators=(",", ":")).encode()
    assert list(json.loads(raw)["files"]) == ["0", "a/é\n.dat", 'b/"x".dat']
    layout = Layout(tmp_path / "ssd")
    layout.ensure()
    ix.save(layout, index)
    again = ix.load(layout, "ds")
    assert again is not None and again.files == index.files and again.complete


def _fs(path: Path) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True,
                          text=True, check=True).stdout.strip()


def _source(path: Path, data: bytes, mode: int, mtime_ns: int) -> SourceFile:
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return SourceFile.of(str(path), path.name, os.stat(path))


def test_small_copies_on_ext4_have_no_name_until_whole(tmp_path: Path) -> None:
    """On ext4 a worker writes each small copy as an unnamed file (O_TMPFILE) in its final
    directory and links it there once whole: the temporary directory is never used, a
    killed worker's half-written file is freed by the kernel, and a file already at the
    final name (an older version) is replaced in one rename. Elsewhere (tmpfs here)
    copies are named in the temporary directory and renamed, as before."""
    if _fs(tmp_path) != "ext2/ext3":
        pytest.skip(f"needs an ext4 temporary directory; {tmp_path} is {_fs(tmp_path)}")
    tmp_dir, final_dir = tmp_path / "tmp", tmp_path / "ds"
    tmp_dir.mkdir()
    final_dir.mkdir()
    assert unnamed_temporaries(str(tmp_dir))
    assert list(tmp_dir.iterdir()) == []  # the probe left nothing
    if _fs(Path("/dev/shm")) == "tmpfs":
        assert not unnamed_temporaries("/dev/shm")

    view = memoryview(bytearray(PIECE))
    final = final_dir / "a.nc"
    first = _source(tmp_path / "a.nc", b"first version" * 100, 0o640, 1_600_000_000 * 10**9)
    checksum = copy_small(first, str(tmp_dir / "0-a.nc"), str(final), True, view,
                          unnamed=True)
    assert final.read_bytes() == b"first version" * 100
    st = final.stat()
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o640, 1_600_000_000 * 10**9)
    assert checksum == file_checksum(final, 64 << 20)
    assert list(tmp_dir.iterdir()) == []

    second = _source(tmp_path / "a.nc", b"second", 0o644, 1_700_000_000 * 10**9)
    copy_small(second, str(tmp_dir / "1-a.nc"), str(final), True, view, unnamed=True)
    assert final.read_bytes() == b"second" and final.stat().st_mode & 0o777 == 0o644
    assert list(tmp_dir.iterdir()) == []
    assert sorted(p.name for p in final_dir.iterdir()) == ["a.nc"]

    gone = final_dir / "removed" / "b.nc"  # its directory vanished under the run
    with pytest.raises(SyncError, match=r"b\.nc"):
        copy_small(second, str(tmp_dir / "2-b.nc"), str(gone), True, view, unnamed=True)
    assert list(tmp_dir.iterdir()) == [] and not gone.parent.exists()
