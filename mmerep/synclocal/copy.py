"""Copying one file: chunks, hashing while copying, detecting a source that changes.

The data goes through one small reused buffer per thread (1 MiB, it stays in the CPU
cache): read it, hash it, write it. That reads the source once, hashes exactly the bytes
written, and measured within a few percent of cp's in-kernel copy_file_range on one
thread; with several threads it is faster. The hash, XXH3-128, runs at well over
10 GB/s and releases the GIL, so threads scale. A file larger than a chunk is copied as
chunks in parallel; its checksum is then the XXH3-128 of the chunks' digests, which is
why the index records the chunk size. A chunk's destination is written back, and both
files' pages dropped from the page cache, as the copy goes (writeback.py): at the disk's
pace, with the CPU of a copy that allocates no new memory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import xxhash

from mmerep.synclocal.errors import (
    DestinationFull,
    LocalWriteError,
    SourceChanged,
    SourceMissing,
    SourceUnreadable,
    SyncError,
)
from mmerep.synclocal.sources import SourceFile
from mmerep.synclocal.writeback import WriteBehind

PIECE = 1 << 20
DEFAULT_CHUNK = 64 << 20
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)

MAX_ATTEMPTS = 3  # copies of a file whose source keeps changing, before giving up

PieceHook = Callable[[str, int], None]


def _read_umask() -> int:
    """Without changing it (os.umask would, for every thread); unknown means always chmod."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o7777


_UMASK = _read_umask()


class Changed(Exception):
    """The source is not the version we started copying (internal; retried)."""


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str
    kind: type[SyncError]


def failure_of(path: str, exc: BaseException) -> Failure:
    """What a user is told about one file that could not be staged."""
    if isinstance(exc, Changed):
        return Failure(path, f"source changed during the copy ({MAX_ATTEMPTS} attempts)",
                       SourceChanged)
    if isinstance(exc, FileNotFoundError):
        return Failure(path, "source disappeared during the run", SourceMissing)
    if isinstance(exc, SyncError):
        return Failure(path, exc.message, type(exc))
    if isinstance(exc, OSError):
        return Failure(path, f"cannot read: {exc.strerror}", SourceUnreadable)
    return Failure(path, f"{type(exc).__name__}: {exc}", SyncError)


class Throttle:
    """A token bucket shared by all threads: staging must not starve running jobs' I/O."""

    def __init__(self, bytes_per_second: int) -> None:
        self.rate = bytes_per_second
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def take(self, n: int) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + n / self.rate
        if start > now:
            time.sleep(start - now)


def combine(digests: list[bytes]) -> str:
    return digests[0].hex() if len(digests) == 1 else xxhash.xxh3_128_hexdigest(b"".join(digests))


def file_checksum(path: str | os.PathLike[str], chunk_size: int) -> str:
    """The checksum the engine records, recomputed from a file (for --recheck and tests)."""
    digests: list[bytes] = []
    view = memoryview(bytearray(PIECE))  # one buffer, not a new bytes object per MiB
    with open(path, "rb", buffering=0) as f:
        with contextlib.suppress(OSError):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while True:
            h, got = xxhash.xxh3_128(), 0
            while got < chunk_size:
                n = f.readinto(view[: min(PIECE, chunk_size - got)])
                if not n:
                    break
                h.update(view[:n])
                got += n
            if got == 0 and digests:
                break
            digests.append(h.digest())
            if got < chunk_size:
                break
    return combine(digests)


def write_error(exc: OSError, target: str) -> SyncError:
    if exc.errno in FULL_ERRNOS:
        return DestinationFull(f"no space left while writing {target}",
                               hint="free space, run `mme-rep synclocal evict`, or stage less")
    return LocalWriteError(f"cannot write {target}: {exc.strerror}",
                     hint="check the local disk and its permissions")


def place_error(exc: OSError, final: str) -> SyncError:
    """Renaming failed, e.g. a directory is where the file should go."""
    return SyncError(f"cannot place {final}: {exc.strerror}",
                     hint="remove what is in the way in the dataset directory")


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def copy_small(src: SourceFile, tmp: str, final: str | None, verify: bool, view: memoryview,
               hook: PieceHook | None = None, rfd: int | None = None,
               behind: Callable[[int], None] | None = None) -> str | None:
    """A file that fits in one piece, in straight-line system calls.

    Most files of a many-small-files dataset take this path, where per-file overhead,
    not bandwidth, decides the speed. ``rfd``: the source already opened (by read-ahead);
    it is closed here. ``behind``: takes the copy's open descriptor once it is in place
    (the worker processes' write-behind, procs.WriteBehind); the source's pages are then
    dropped as soon as they are read. ``final`` None: the copy stays at ``tmp``, for the
    caller to place.
    """
    if rfd is None:
        rfd = os.open(src.path, os.O_RDONLY)
    try:
        n = os.preadv(rfd, [view[: src.size]], 0)
        if hook:
            hook(src.rel, n)
        st = os.fstat(rfd)
        if behind is not None:  # read once: its pages are better reused for the copies
            with contextlib.suppress(OSError):
                os.posix_fadvise(rfd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(rfd)
    # No links left: the name was deleted or replaced since it was opened. Copied again
    # from the name, which then fails as missing or copies the new version.
    if n != src.size or st.st_nlink == 0 or not src.same_version(st):
        raise Changed
    data = view[:n]
    checksum = xxhash.xxh3_128_hexdigest(data) if verify else None
    try:
        wfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, src.mode)
    except OSError as exc:
        raise write_error(exc, final or tmp) from exc
    try:
        try:
            written = os.write(wfd, data)
            while written < n:
                written += os.write(wfd, data[written:])
            if src.mode & _UMASK:
                os.fchmod(wfd, src.mode)
            os.utime(wfd, ns=(src.mtime_ns, src.mtime_ns))
        finally:
            if behind is None:
                os.close(wfd)
    except BaseException as exc:
        if behind is not None:
            os.close(wfd)
        _unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(exc, final or tmp) from exc
        raise
    if final is None:
        if behind is not None:
            behind(wfd)
        return checksum
    try:
        os.rename(tmp, final)
    except OSError as exc:
        if behind is not None:
            os.close(wfd)
        _unlink(tmp)
        raise place_error(exc, final) from exc
    if behind is not None:
        behind(wfd)
    return checksum


class FileCopy:
    """One file in flight: its temporary name, the write side, the chunks' digests."""

    def __init__(self, src: SourceFile, tmp: str, final: str, chunk_size: int,
                 verify: bool) -> None:
        self.src, self.tmp, self.final = src, tmp, final
        self.chunk_size, self.verify = chunk_size, verify
        self.nchunks = max(1, -(-src.size // chunk_size))
        self.digests: list[bytes] = [b""] * self.nchunks
        self.error: BaseException | None = None
        self._left = self.nchunks
        self._lock = threading.Lock()
        self._wfd: int | None = None

    def _open_dest(self) -> int:
        with self._lock:
            if self._wfd is None:
                try:
                    fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                 self.src.mode)
                except OSError as exc:
                    raise write_error(exc, self.final) from exc
                self._wfd = fd
                if self.nchunks > 1:
                    try:  # reserve the space now: a full disk fails at once, not at 90%
                        os.posix_fallocate(fd, 0, self.src.size)
                    except OSError as exc:
                        if exc.errno in FULL_ERRNOS:
                            raise write_error(exc, self.final) from exc
            return self._wfd

    def run_chunk(self, i: int, buf: bytearray, *, throttle: Throttle | None = None,
                  hook: PieceHook | None = None, stop: threading.Event | None = None,
                  on_bytes: Callable[[int], None] | None = None) -> None:
        """Copy chunk ``i``; reads through its own descriptor so readahead stays sequential."""
        wfd = self._open_dest()
        start = i * self.chunk_size
        end = min(self.src.size, start + self.chunk_size)
        rfd = os.open(self.src.path, os.O_RDONLY)
        try:
            if end - start > PIECE:
                os.posix_fadvise(rfd, start, end - start, os.POSIX_FADV_SEQUENTIAL)
            h = xxhash.xxh3_128() if self.verify else None
            view = memoryview(buf)
            off = start
            behind = WriteBehind(rfd, wfd, start)
            while off < end:
                if stop is not None and stop.is_set():
                    raise InterruptedError("stopped")
                n = os.preadv(rfd, [view[: min(PIECE, end - off)]], off)
                if n == 0:
                    raise Changed  # shorter than when listed: truncated under us
                if throttle:
                    throttle.take(n)
                if h is not None:
                    h.update(view[:n])
                try:
                    written = os.pwrite(wfd, view[:n], off)
                    while written < n:
                        written += os.pwrite(wfd, view[written:n], off + written)
                    off += n
                    behind.wrote(off)
                except OSError as exc:
                    raise write_error(exc, self.final) from exc
                if on_bytes:
                    on_bytes(n)
                if hook:
                    hook(self.src.rel, off)
            # After the read, not before: a change at any moment either precedes some
            # chunk's final fstat (and is seen there) or follows every read (and the
            # copy is a consistent earlier version, which the index records as such).
            if not self.src.same_version(os.fstat(rfd)):
                raise Changed
            try:
                behind.done(end)
            except OSError as exc:
                raise write_error(exc, self.final) from exc
            if h is not None:
                self.digests[i] = h.digest()
        finally:
            os.close(rfd)

    def chunk_done(self) -> bool:
        """True for exactly one caller: the one that finished the last chunk."""
        with self._lock:
            self._left -= 1
            return self._left == 0

    def finish(self) -> str | None:
        """Set mode and mtime, then rename into place: readers see all of it or nothing."""
        wfd = self._wfd
        if wfd is None:  # an empty file: no chunk opened it
            wfd = self._open_dest()
        self._wfd = None
        try:
            if self.src.mode & _UMASK:  # created with the mode already when umask allows
                os.fchmod(wfd, self.src.mode)
            # The source's mtime, like cp -p and rsync -a; a re-run compares it cheaply.
            os.utime(wfd, ns=(self.src.mtime_ns, self.src.mtime_ns))
        except OSError as exc:
            raise write_error(exc, self.final) from exc
        finally:
            os.close(wfd)
        try:
            os.rename(self.tmp, self.final)
        except OSError as exc:
            raise place_error(exc, self.final) from exc
        return combine(self.digests) if self.verify else None

    def discard(self) -> None:
        with self._lock:
            if self._wfd is not None:
                os.close(self._wfd)
                self._wfd = None
        _unlink(self.tmp)
