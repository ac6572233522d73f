"""Large files go to disk as they are copied and leave no trail in the page cache.

On a real ext4 file system (a loop-mounted image, whatever file system the tests' temporary
directory is on): tmpfs has no writeback and keeps every page, which would prove nothing.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmerep.synclocal import index as ix
from mmerep.synclocal.copy import file_checksum
from mmerep.synclocal.layout import Layout, writer_lock
from mmerep.synclocal.stage import StageOptions, stage_dataset
from testkit.pagecache import cached_fraction

MiB = 1 << 20
_libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Path]:
    image, mnt = tmp_path / "disk.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(640 * MiB)  # sparse; two 100 MiB sources and their copies
    steps = (["mkfs.ext4", "-q", "-F", str(image)], ["mount", "-o", "loop", str(image), str(mnt)])
    for cmd in steps:
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            reason = f"cannot make a loop-mounted ext4 ({' '.join(cmd[:2])}): {out.stderr.strip()}"
            if os.environ.get("CI"):
                pytest.fail(reason)  # a test that silently does not run proves nothing
            pytest.skip(reason)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)


def write_synced(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())  # clean pages: cached, and droppable
    return data


def test_large_files_are_exact_and_leave_the_page_cache_as_they_go(ext4: Path) -> None:
    # 100 MiB + a few bytes: two 64 MiB chunks, 8 MiB windows, a tail of no whole window.
    size = 100 * MiB + 4321
    data = [write_synced(ext4 / "src" / f"f{i}.nc", size, seed=i) for i in range(2)]
    for i in range(2):
        assert cached_fraction(ext4 / "src" / f"f{i}.nc") > 0.9  # as a busy node has it
    layout = Layout(ext4 / "ssd")
    with writer_lock(layout):
        report = stage_dataset(layout, "ds", [str(ext4 / "src")], StageOptions(jobs=3))
    report.raise_for_failures()
    assert report.complete
    index = ix.load(layout, "ds")
    assert index is not None
    for i in range(2):
        copy, src = ext4 / "ssd" / "ds" / f"f{i}.nc", ext4 / "src" / f"f{i}.nc"
        # Measured before anything reads them again.
        copy_cached, src_cached = cached_fraction(copy), cached_fraction(src)
        # The source was read once and dropped; the copy is on disk, and dropped too.
        assert src_cached < 0.05, src_cached
        assert copy_cached < 0.05, copy_cached
        assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(data[i]).digest()
        assert index.files[f"f{i}.nc"].checksum == file_checksum(src, index.chunk_size)
