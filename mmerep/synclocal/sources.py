"""Turn a dataset's source specs (paths or globs on the bulk tier) into files to copy.

A directory contributes its contents, a file its own name, a glob each match relative
to the glob's fixed leading directories: ``/bulk/s3/2019/*/*.nc`` puts
``/bulk/s3/2019/01/a.nc`` at ``01/a.nc``. Symbolic links are followed, because a link
to the bulk tier on the local SSD would defeat the purpose of staging.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import NamedTuple

from mmerep.synclocal.errors import SourceMissing, SyncError


class SourceFile(NamedTuple):
    """A file to stage, as listed. A named tuple: a frozen dataclass took twice as long
    to make, and a run makes one per file in the parent and again in a worker."""

    path: str
    rel: str
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    mode: int

    @classmethod
    def of(cls, path: str, rel: str, st: os.stat_result) -> SourceFile:
        return cls(path, rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                   stat.S_IMODE(st.st_mode))

    def same_version(self, st: os.stat_result) -> bool:
        """ctime is in the comparison because a writer cannot set it back, unlike mtime."""
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) == (
            self.size, self.mtime_ns, self.ctime_ns, self.ino)


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


class _Scan:
    """What one resolve() collects, and the destination it must not walk into."""

    def __init__(self, avoid: str | None,
                 on_files: Callable[[list[SourceFile]], None] | None = None) -> None:
        self.on_files, self.sent = on_files, 0
        self.files: list[SourceFile] = []
        self.problems: list[Problem] = []
        self.seen: set[tuple[int, int]] = set()
        self.avoid = os.path.realpath(avoid) if avoid else None
        st = os.stat(self.avoid) if self.avoid and os.path.exists(self.avoid) else None
        self.avoid_id = (st.st_dev, st.st_ino) if st else None

    def emit(self) -> None:
        """Hand what was listed since the last call to ``on_files``."""
        if self.on_files is not None and len(self.files) > self.sent:
            batch = self.files[self.sent:]
            self.sent = len(self.files)
            self.on_files(batch)

    def check_outside(self, real: str) -> None:
        """Staging into its own source would copy a tree into itself."""
        a = self.avoid
        if a and (real == a or real.startswith(a + os.sep)):
            raise SyncError(f"source {real} is inside the destination {a}",
                            hint="stage into a directory outside the sources")


def _walk(top: str, prefix: str, scan: _Scan) -> None:
    files, problems, seen = scan.files, scan.problems, scan.seen
    try:
        st = os.stat(top)
        if (st.st_dev, st.st_ino) == scan.avoid_id:
            raise SyncError(f"the destination {scan.avoid} is inside the source {top}",
                            hint="stage into a directory outside the sources")
        if (st.st_dev, st.st_ino) in seen:
            problems.append(Problem(top, "directory loop through a symbolic link"))
            return
        seen.add((st.st_dev, st.st_ino))
        entries = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError as exc:
        problems.append(Problem(top, f"cannot list directory: {exc.strerror}"))
        return
    for entry in entries:
        rel = f"{prefix}/{entry.name}" if prefix else entry.name
        try:
            est = entry.stat()
        except OSError as exc:
            reason = "broken symbolic link" if entry.is_symlink() else exc.strerror
            problems.append(Problem(entry.path, str(reason)))
            continue
        if stat.S_ISDIR(est.st_mode):
            scan.emit()
            _walk(entry.path, rel, scan)
        elif stat.S_ISREG(est.st_mode):
            files.append(SourceFile.of(entry.path, rel, est))
        else:
            problems.append(Problem(entry.path, f"{_kind(est.st_mode)}, cannot be staged"))
    scan.emit()


def _glob_base(spec: str) -> str:
    parts = PurePosixPath(spec).parts
    first_magic = next(i for i, p in enumerate(parts) if glob.has_magic(p))
    return str(PurePosixPath(*parts[:first_magic])) if first_magic else "."


def _add(path: str, rel: str, scan: _Scan, real: str) -> None:
    scan.check_outside(real)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SourceMissing(f"source {path} does not exist",
                            hint="check the path on the bulk file system") from None
    except OSError as exc:
        scan.problems.append(Problem(path, str(exc.strerror)))
        return
    if stat.S_ISDIR(st.st_mode):
        _walk(path, "" if rel == "." else rel, scan)
    elif stat.S_ISREG(st.st_mode):
        scan.files.append(SourceFile.of(path, rel, st))
        scan.emit()
    else:
        scan.problems.append(Problem(path, f"{_kind(st.st_mode)}, cannot be staged"))


def resolve(specs: Sequence[str], avoid: str | None = None,
            on_files: Callable[[list[SourceFile]], None] | None = None,
            ) -> tuple[list[SourceFile], list[Problem]]:
    """Files of a dataset, sorted by path inside it, and what could not be listed.

    ``avoid`` is the destination root: a source inside it, or it inside a source, is
    refused. ``on_files`` is given the files of each directory as it is listed (in the
    order of the walk; a file found twice through overlapping globs comes twice).
    """
    if not specs:
        raise SourceMissing("a dataset needs at least one source path or glob")
    scan = _Scan(avoid, on_files)
    for spec in specs:
        spec = os.path.normpath(spec)
        if glob.has_magic(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise SourceMissing(f"source glob {spec} matches nothing",
                                    hint="check the pattern and the bulk file system mount")
            base = _glob_base(spec)
            real_base = os.path.realpath(base)
            for m in matches:
                rel = os.path.relpath(m, base)
                _add(m, rel, scan, os.path.join(real_base, rel))
        else:
            rel = "." if os.path.isdir(spec) else os.path.basename(spec)
            _add(spec, rel, scan, os.path.realpath(spec))
    _check_unique(scan.files)
    unique = {f.rel: f for f in scan.files}  # overlapping globs may match a file twice
    return sorted(unique.values(), key=lambda f: f.rel), scan.problems


def _check_unique(files: Iterable[SourceFile]) -> None:
    where: dict[str, str] = {}
    for f in files:
        if f.rel in where and where[f.rel] != f.path:
            raise SyncError(f"two sources map to the same file {f.rel!r}: {where[f.rel]} "
                            f"and {f.path}", hint="split them into separate datasets")
        where[f.rel] = f.path
