"""Where things live under a synclocal root, and the lock that serialises writers.

    ROOT/<dataset>/...            the staged files, what jobs read
    ROOT/.synclocal/index/        one index (+ journal) per dataset
    ROOT/.synclocal/tmp/          files being copied; renamed into place when complete
    ROOT/.synclocal/pins/<ds>/    one empty file per holder that pins a dataset
    ROOT/.synclocal/use/<ds>      its mtime is the dataset's last use (for LRU)

Temporary files live outside the dataset directories, so a reader of a dataset never
sees a partial file, not even under a hidden name. They are on the same file system
as the datasets, so the final rename is atomic.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mmerep.synclocal.errors import Busy, SyncError

META = ".synclocal"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def check_dataset_name(name: str) -> str:
    if not _NAME.match(name):
        raise SyncError(f"invalid dataset name {name!r}",
                        hint="use letters, digits, '.', '_' and '-', starting with a letter "
                        "or digit, at most 200 characters")
    return name


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def meta(self) -> Path:
        return self.root / META

    @property
    def tmp_dir(self) -> Path:
        return self.meta / "tmp"

    @property
    def index_dir(self) -> Path:
        return self.meta / "index"

    def dataset_dir(self, name: str) -> Path:
        return self.root / check_dataset_name(name)

    def index_path(self, name: str) -> Path:
        return self.index_dir / f"{check_dataset_name(name)}.json"

    def journal_path(self, name: str) -> Path:
        return self.index_dir / f"{check_dataset_name(name)}.journal"

    def pins_dir(self, name: str) -> Path:
        return self.meta / "pins" / check_dataset_name(name)

    def use_path(self, name: str) -> Path:
        return self.meta / "use" / check_dataset_name(name)

    def ensure(self) -> None:
        try:
            for d in (self.tmp_dir, self.index_dir, self.meta / "pins", self.meta / "use"):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SyncError(f"cannot prepare {self.root}: {exc.strerror}",
                            hint="check that the directory is writable") from exc

    def mark_used(self, name: str) -> None:
        """Staging, pinning and unpinning count as use: LRU eviction reads this mtime."""
        path = self.use_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        os.utime(path)

    def last_used(self, name: str) -> float | None:
        try:
            return self.use_path(name).stat().st_mtime
        except FileNotFoundError:
            return None

    def clear_tmp(self) -> int:
        """Remove leftovers of a killed run; only called while holding the writer lock."""
        n = 0
        if self.tmp_dir.is_dir():
            for entry in os.scandir(self.tmp_dir):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                n += 1
        return n


@contextmanager
def writer_lock(layout: Layout, *, wait: bool = False) -> Iterator[None]:
    """One process at a time stages or evicts under a root; readers and pins never wait."""
    layout.ensure()
    path = layout.meta / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise Busy(f"another synclocal process (pid {holder}) is staging or evicting "
                       f"in {layout.root}",
                       hint="wait for it to finish, or stop the daemon") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


@contextmanager
def pins_lock(layout: Layout) -> Iterator[None]:
    """Short lock: eviction decides and moves a dataset aside while no pin can appear."""
    layout.ensure()
    fd = os.open(layout.meta / "pins.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
