"""Many small files in forked worker processes.

For a 64 KiB file the system calls take tens of microseconds and Python's own work
about as long again; threads would take turns on the GIL for that part, so
several threads copy small files no faster than one. Forked workers each have their
own interpreter. Each takes every n-th file and reports one line per file through a
pipe (``K CHECKSUM`` for a copied file, JSON for the rare rest); the parent records what
one read brings as one batch. Only the parent writes the index, so its ordering rules
still hold. A worker dies with its parent (PR_SET_PDEATHSIG), so a killed run leaves no
copier behind.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import gc
import json
import os
import selectors
import signal
import threading
import time
from collections.abc import Callable, Sequence

from mmerep.synclocal import errors, writeback
from mmerep.synclocal.copy import (
    PIECE,
    Changed,
    Failure,
    PieceHook,
    Throttle,
    copy_small,
    failure_of,
)
from mmerep.synclocal.errors import LocalWriteError, SyncError
from mmerep.synclocal.sources import SourceFile

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)




class WriteBehind:
    """Each copy's writeback starts as soon as it is in place; ``WINDOW`` copies later it
    is waited for and its pages dropped. A plain buffered copy of many files fills
    memory with new dirty pages, and on this VM writing into new pages was half of all
    the CPU a many-small-files run took (perf: the kernel's copy into the page cache);
    reusing the same few pages (the source's are dropped once read, too) took that copy
    from 42% to 2% of the samples. The copies end on disk, and the page cache keeps the
    jobs' working set.
    Without sync_file_range (another OS, a file system that refuses it), descriptors are
    just closed. A writeback error of an already reported copy is the kernel's to log,
    as it is for any buffered write."""

    WINDOW = 16

    def __init__(self) -> None:
        self.fds: collections.deque[int] = collections.deque()
        self._sfr = writeback.resolve()

    def __call__(self, fd: int) -> None:
        if self._sfr is not None:
            try:
                self._sfr(fd, 0, 0, writeback.WRITE)
            except OSError:
                self._sfr = None
        if self._sfr is None:
            os.close(fd)
            return
        self.fds.append(fd)
        if len(self.fds) > self.WINDOW:
            self._settle(self.fds.popleft())

    def _settle(self, fd: int) -> None:
        try:  # never an error for the file being copied now: this one is in place
            if self._sfr is not None:
                with contextlib.suppress(OSError):
                    self._sfr(fd, 0, 0, writeback.SETTLE)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)

    def close(self) -> None:
        while self.fds:
            self._settle(self.fds.popleft())


def _child(files: Sequence[SourceFile], first: int, step: int, out: int, tmp_dir: str,
           dest: str, verify: bool, bwlimit: int | None, hook: PieceHook | None) -> None:
    _die_with_parent()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    view = memoryview(bytearray(PIECE))
    throttle = Throttle(bwlimit) if bwlimit else None
    pending: list[str] = []
    last = time.monotonic()
    ahead: dict[int, int] = {}  # file -> its descriptor, opened by read-ahead
    behind = WriteBehind()
    for k in range(first, len(files), step):
        fd = _prefetch(files, k + step * PREFETCH)
        if fd is not None:
            ahead[k + step * PREFETCH] = fd
        f = files[k]
        tmp = f"{tmp_dir}/{k:08x}-{os.path.basename(f.rel)[:60]}"
        stop = False
        try:
            if throttle:
                throttle.take(f.size)
            checksum = copy_small(f, tmp, os.path.join(dest, f.rel), verify, view, hook,
                                  rfd=ahead.pop(k, None), behind=behind)
            pending.append(f"{k} {checksum or '-'}")  # the common line, read without json
        except Changed:
            pending.append(json.dumps(["changed", k]))
        except BaseException as exc:
            failure = failure_of(f.path, exc)
            pending.append(json.dumps(["failed", k, failure.kind.__name__, failure.reason]))
            stop = isinstance(exc, LocalWriteError)  # the disk is full for everyone
        if stop or len(pending) >= 64 or time.monotonic() - last > 0.1:
            _send(out, pending)
            last = time.monotonic()
        if stop:
            break
    for fd in ahead.values():
        os.close(fd)
    behind.close()  # the last copies on disk before the worker says it is done
    _send(out, pending)


PREFETCH = 8  # files ahead whose reads each worker asks the kernel to start


def _prefetch(files: Sequence[SourceFile], k: int) -> int | None:
    """Start reading a file this worker will copy soon: with the source on disk, several
    reads in flight keep the disk busy while the worker copies the current file.
    Returns the open descriptor, which the copy then reads (one open and one close less
    per file); None for what cannot be read ahead (gone, a pipe), which the copy itself
    opens and reports."""
    if k >= len(files):
        return None
    try:
        fd = os.open(files[k].path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    except OSError:
        os.close(fd)
        return None
    return fd


def _send(fd: int, lines: list[str]) -> None:
    if lines:
        view = memoryview(("\n".join(lines) + "\n").encode())
        lines.clear()
        while view:
            view = view[os.write(fd, view):]


def _kind(name: str) -> type[SyncError]:
    kind = getattr(errors, name, SyncError)
    return kind if isinstance(kind, type) and issubclass(kind, SyncError) else SyncError


def copy_in_processes(files: Sequence[SourceFile], nprocs: int, *, tmp_dir: str, dest: str,
                      verify: bool, bwlimit: int | None, hook: PieceHook | None,
                      stop: threading.Event,
                      on_done: Callable[[list[tuple[SourceFile, str | None]]], None],
                      on_failure: Callable[[Failure], None],
                      on_changed: Callable[[SourceFile], None]) -> bool:
    """Copy ``files`` (each at most one piece) with ``nprocs`` workers.

    Returns False if the workers had to be stopped; their temporary files are then the
    caller's to remove.
    """
    sel = selectors.DefaultSelector()
    pids: list[int] = []
    partial: dict[int, bytes] = {}
    reported: set[int] = set()
    rate = max(1, bwlimit // nprocs) if bwlimit else None
    # Objects that exist at the fork are never collected in the workers: a collection
    # would write to every one of them and copy the parent's whole heap page by page
    # (a command's heap, with its CLI framework loaded, is several times the engine's).
    # The parent thaws them after the last fork, unless its caller had frozen its own.
    thaw = gc.get_freeze_count() == 0
    gc.freeze()
    try:
        for w in range(nprocs):
            # Each worker creates its temporaries in a directory of its own: creating a
            # file locks its directory, and in one shared directory the workers spun on
            # that lock (perf: 4% of a run's CPU in rwsem_spin_on_owner from open).
            own_tmp = f"{tmp_dir}/p{w}"
            os.makedirs(own_tmp, exist_ok=True)
            r, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - measured in the parent, through the pipe
                code = 1
                try:
                    os.close(r)
                    _child(files, w, nprocs, wfd, own_tmp, dest, verify, rate, hook)
                    code = 0
                finally:
                    os._exit(code)
            os.close(wfd)
            pids.append(pid)
            if w == nprocs - 1 and thaw:
                thaw = False
                gc.unfreeze()
            partial[r] = b""
            sel.register(r, selectors.EVENT_READ)
        while partial and not stop.is_set():
            for key, _ in sel.select(0.2):
                fd = int(key.fd)
                data = os.read(fd, 1 << 16)
                if not data:
                    sel.unregister(fd)
                    os.close(fd)
                    del partial[fd]
                    continue
                *lines, partial[fd] = (partial[fd] + data).split(b"\n")
                done: list[tuple[SourceFile, str | None]] = []
                for line in lines:
                    if not line.startswith(b"["):  # "K CHECKSUM": file K copied
                        head, _, checksum = line.partition(b" ")
                        n = int(head)
                        reported.add(n)
                        done.append((files[n], None if checksum == b"-" else checksum.decode()))
                        continue
                    msg = json.loads(line)
                    f = files[msg[1]]
                    reported.add(msg[1])
                    if msg[0] == "changed":
                        on_changed(f)
                    else:
                        kind = _kind(msg[2])
                        on_failure(Failure(f.path, msg[3], kind))
                if done:
                    on_done(done)
    finally:
        if thaw:  # a fork failed
            gc.unfreeze()
        stopped = bool(partial)
        for pid in pids:
            if stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            if not stopped and status != 0:
                code = os.waitstatus_to_exitcode(status)
                for k in range(pids.index(pid), len(files), nprocs):
                    if k not in reported:
                        on_failure(Failure(files[k].path, f"worker process ended with {code}",
                                           SyncError))
        for fd in partial:
            sel.unregister(fd)
            os.close(fd)
        sel.close()
        if not stopped:  # empty unless a worker died mid-copy; the next run clears it then
            for w in range(nprocs):
                with contextlib.suppress(OSError):
                    os.rmdir(f"{tmp_dir}/p{w}")
    return not stopped
