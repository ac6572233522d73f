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
import marshal
import os
import select
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
    _unlink,
    copy_small,
    failure_of,
    place_error,
    unnamed_temporaries,
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


class _Commands:
    """What the parent sends a worker: frames of one kind byte, a 4-byte length and a
    payload (``F``: files as marshalled tuples, ``G``: place what was copied, except the
    marshalled set of files whose parent could not be made); the pipe's end: no more files."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buf, self.eof = fd, bytearray(), False
        os.set_blocking(fd, False)

    def read(self, block: bool) -> list[tuple[bytes, bytes]]:
        if not self.eof:
            if block:
                select.select([self.fd], [], [])
            try:
                data = os.read(self.fd, 1 << 20)
                self.eof = not data
                self.buf += data
            except BlockingIOError:
                pass
        frames = []
        while len(self.buf) >= 5:
            n = int.from_bytes(self.buf[1:5], "little")
            if len(self.buf) < 5 + n:
                break
            frames.append((bytes(self.buf[:1]), bytes(self.buf[5:5 + n])))
            del self.buf[:5 + n]
        return frames


def _frame(kind: bytes, payload: bytes) -> bytes:
    return kind + len(payload).to_bytes(4, "little") + payload


def _child(cmd: int, out: int, tmp_dir: str, dest: str, verify: bool, bwlimit: int | None,
           hook: PieceHook | None, placed: bool) -> None:
    """Copy the files the parent sends. ``placed`` False: copies wait in ``tmp_dir``
    until the parent says go (the listing still runs and the space is not checked yet)."""
    _die_with_parent()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    view = memoryview(bytearray(PIECE))
    throttle = Throttle(bwlimit) if bwlimit else None
    pending: list[str] = []
    last = time.monotonic()
    queue: collections.deque[tuple[int, SourceFile]] = collections.deque()
    ahead: dict[int, int | None] = {}  # file -> its descriptor, opened by read-ahead
    waiting: list[tuple[int, str, str, str | None]] = []  # copied, not placed yet
    behind = WriteBehind()
    unnamed = unnamed_temporaries(tmp_dir)
    commands = _Commands(cmd)
    go = placed
    opened = 0
    dropped: set[int] = set()
    stop = False
    while not stop:
        # Asked again only when few are left: a read that finds nothing is a system call.
        for kind, payload in (commands.read(block=not queue) if len(queue) <= PREFETCH + 1
                              else ()):
            if kind == b"F":
                queue.extend((rec[0], SourceFile(*rec[1:])) for rec in marshal.loads(payload))  # noqa: S302 - our parent's
            elif kind == b"G":
                go = True
                dropped = marshal.loads(payload)  # noqa: S302 - from our own parent
                for k, tmp, final, checksum in waiting:
                    if k in dropped:  # its parent could not be made: the parent says so
                        _unlink(tmp)
                        continue
                    try:
                        os.rename(tmp, final)
                    except OSError as exc:
                        _unlink(tmp)
                        pending.append(json.dumps(["failed", k, "SyncError",
                                                   place_error(exc, final).message]))
                        continue
                    pending.append(f"{k} {checksum or '-'}")
                waiting.clear()
        if not queue:
            if commands.eof:
                break
            continue
        # The queue's first ``opened`` files were read ahead (their descriptors in ahead).
        opened = min(opened, len(queue))
        while opened < PREFETCH + 1 and opened < len(queue):
            k2, f2 = queue[opened]
            ahead[k2] = _prefetch(f2)
            opened += 1
        k, f = queue.popleft()
        opened -= 1
        if k in dropped:  # sent before the parent knew it has nowhere to go
            fd = ahead.pop(k, None)
            if fd is not None:
                os.close(fd)
            continue
        tmp = f"{tmp_dir}/{k:08x}-{f.rel.rpartition('/')[2][:60]}"
        final = f"{dest}/{f.rel}"
        try:
            if throttle:
                throttle.take(f.size)
            checksum = copy_small(f, tmp, final if go else None, verify, view, hook,
                                  rfd=ahead.pop(k, None), behind=behind, unnamed=unnamed)
            if go:
                pending.append(f"{k} {checksum or '-'}")  # the common line, read without json
            else:
                waiting.append((k, tmp, final, checksum))
        except Changed:
            pending.append(json.dumps(["changed", k]))
        except BaseException as exc:
            failure = failure_of(f.path, exc)
            pending.append(json.dumps(["failed", k, failure.kind.__name__, failure.reason]))
            stop = isinstance(exc, LocalWriteError)  # the disk is full for everyone
        if stop or len(pending) >= 64 or time.monotonic() - last > 0.1:
            _send(out, pending)
            last = time.monotonic()
    for fd in ahead.values():
        if fd is not None:
            os.close(fd)
    behind.close()  # the last copies on disk before the worker says it is done
    _send(out, pending)


PREFETCH = 8  # files ahead whose reads each worker asks the kernel to start


def _prefetch(f: SourceFile) -> int | None:
    """Start reading a file this worker will copy soon: with the source on disk, several
    reads in flight keep the disk busy while the worker copies the current file.
    Returns the open descriptor, which the copy then reads (one open and one close less
    per file); None for what cannot be read ahead (gone, a pipe), which the copy itself
    opens and reports."""
    try:
        fd = os.open(f.path, os.O_RDONLY | os.O_NONBLOCK)
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


class Workers:
    """``nprocs`` forked copiers fed through pipes: files can be added while the parent
    still lists the source. File K goes to worker K % nprocs. With ``placed`` False the
    copies wait in the workers' temporary directories until ``go``; ``stop`` ends the lot
    (the workers are killed, their temporaries are then the caller's to remove)."""

    BATCH = 512  # files per frame: a worker starts on the first while the rest arrive

    def __init__(self, nprocs: int, *, tmp_dir: str, dest: str, verify: bool,
                 bwlimit: int | None, hook: PieceHook | None, stop: threading.Event,
                 on_done: Callable[[list[tuple[SourceFile, str | None]]], None],
                 on_failure: Callable[[Failure], None],
                 on_changed: Callable[[SourceFile], None], placed: bool = True) -> None:
        self.nprocs, self.stop, self.tmp_dir = nprocs, stop, tmp_dir
        self.closed = False
        self.on_done, self.on_failure, self.on_changed = on_done, on_failure, on_changed
        self.files: list[SourceFile] = []
        self.sel = selectors.DefaultSelector()
        self.pids: list[int] = []
        self.partial: dict[int, bytes] = {}  # result pipe -> its unfinished line
        self.cmds: list[int | None] = []  # command pipe per worker; None once closed
        self.outbox: list[bytearray] = []
        self.closing = False
        self.reported: set[int] = set()
        self._start(tmp_dir, dest, verify, bwlimit, hook, placed)

    def _start(self, tmp_dir: str, dest: str, verify: bool, bwlimit: int | None,
               hook: PieceHook | None, placed: bool) -> None:
        rate = max(1, bwlimit // self.nprocs) if bwlimit else None
        # Objects that exist at the fork are never collected in the workers: a collection
        # would write to every one of them and copy the parent's whole heap page by page
        # (a command's heap, with its CLI framework loaded, is several times the engine's).
        # The parent thaws them after the last fork, unless its caller had frozen its own.
        thaw = gc.get_freeze_count() == 0
        gc.freeze()
        try:
            for w in range(self.nprocs):
                # Each worker creates its temporaries in a directory of its own: creating
                # a file locks its directory, and in one shared directory the workers spun
                # on that lock (perf: 4% of a run's CPU in rwsem_spin_on_owner from open).
                own_tmp = f"{tmp_dir}/p{w}"
                os.makedirs(own_tmp, exist_ok=True)
                r, wfd = os.pipe()
                cr, cw = os.pipe()
                pid = os.fork()
                if pid == 0:  # pragma: no cover - measured in the parent, through the pipe
                    code = 1
                    try:
                        for fd in (r, cw, *self.partial, *(c for c in self.cmds if c)):
                            os.close(fd)  # another worker's pipe kept open never ends
                        _child(cr, wfd, own_tmp, dest, verify, rate, hook, placed)
                        code = 0
                    finally:
                        os._exit(code)
                os.close(wfd)
                os.close(cr)
                os.set_blocking(cw, False)
                self.pids.append(pid)
                self.cmds.append(cw)
                self.outbox.append(bytearray())
                self.partial[r] = b""
                self.sel.register(r, selectors.EVENT_READ)
        except BaseException:
            self.close()
            raise
        finally:
            if thaw:
                gc.unfreeze()

    def add(self, files: Sequence[SourceFile]) -> None:
        start = len(self.files)
        self.files.extend(files)
        n = self.nprocs
        for w in range(n):
            ks = range(start + (w - start) % n, len(self.files), n)
            for i in range(0, len(ks), self.BATCH):
                recs = [(k, f.path, f.rel, f.size, f.mtime_ns, f.ctime_ns, f.ino, f.mode)
                        for k in ks[i:i + self.BATCH] for f in (self.files[k],)]
                self._queue(w, _frame(b"F", marshal.dumps(recs)))
        self.pump(0)

    def go(self, dropped: set[int] | frozenset[int] = frozenset()) -> None:
        """Place the copies made so far, except files ``dropped`` (their temporaries go)."""
        for w in range(self.nprocs):
            self._queue(w, _frame(b"G", marshal.dumps(set(dropped))))
        self.pump(0)

    def _queue(self, w: int, frame: bytes) -> None:
        cmd = self.cmds[w]
        if cmd is None:
            return  # the worker stopped (its disk was full); its files are reported
        if not self.outbox[w]:
            self.sel.register(cmd, selectors.EVENT_WRITE, w)
        self.outbox[w] += frame

    def _flush(self, w: int) -> None:
        cmd = self.cmds[w]
        assert cmd is not None
        try:
            n = os.write(cmd, self.outbox[w])
        except BlockingIOError:
            return
        except BrokenPipeError:
            n = len(self.outbox[w])
        del self.outbox[w][:n]
        if not self.outbox[w]:
            self.sel.unregister(cmd)
            if self.closing:
                self._close_cmd(w)

    def _close_cmd(self, w: int) -> None:
        cmd = self.cmds[w]
        if cmd is not None:
            if self.outbox[w]:
                self.sel.unregister(cmd)
                self.outbox[w].clear()
            os.close(cmd)
            self.cmds[w] = None

    def pump(self, timeout: float) -> None:
        """Send what is queued and record what the workers reported, for ``timeout`` at most."""
        for key, _ in self.sel.select(timeout):
            fd = int(key.fd)
            if key.data is not None:
                self._flush(key.data)
                continue
            data = os.read(fd, 1 << 16)
            if not data:
                self.sel.unregister(fd)
                os.close(fd)
                del self.partial[fd]
                continue
            *lines, self.partial[fd] = (self.partial[fd] + data).split(b"\n")
            self._record(lines)

    def _record(self, lines: list[bytes]) -> None:
        files, reported = self.files, self.reported
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
                self.on_changed(f)
            else:
                self.on_failure(Failure(f.path, msg[3], _kind(msg[2])))
        if done:
            self.on_done(done)

    def finish(self) -> bool:
        """No more files: wait for the workers' last reports. False if they had to be
        stopped (then their temporaries are the caller's to remove)."""
        self.closing = True
        for w in range(self.nprocs):
            if not self.outbox[w]:
                self._close_cmd(w)
        try:
            while self.partial and not self.stop.is_set():
                self.pump(0.2)
        finally:
            stopped = self.close()
        if not stopped:  # empty unless a worker died mid-copy; the next run clears it then
            for w in range(self.nprocs):
                with contextlib.suppress(OSError):
                    os.rmdir(f"{self.tmp_dir}/p{w}")
        return not stopped

    def close(self) -> bool:
        """End the workers (killed unless all have reported); True if they were killed."""
        if self.closed:
            return True
        self.closed = True
        stopped = bool(self.partial)
        for pid in self.pids:
            if stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        n = self.nprocs
        for w, pid in enumerate(self.pids):
            _, status = os.waitpid(pid, 0)
            if not stopped and status != 0:
                code = os.waitstatus_to_exitcode(status)
                for k in range(w, len(self.files), n):
                    if k not in self.reported:
                        self.on_failure(Failure(self.files[k].path,
                                                f"worker process ended with {code}",
                                                SyncError))
        self.pids.clear()
        for w in range(len(self.cmds)):
            self._close_cmd(w)
        for fd in self.partial:
            self.sel.unregister(fd)
            os.close(fd)
        self.partial.clear()
        self.sel.close()
        return stopped


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
    workers = Workers(nprocs, tmp_dir=tmp_dir, dest=dest, verify=verify, bwlimit=bwlimit,
                      hook=hook, stop=stop, on_done=on_done, on_failure=on_failure,
                      on_changed=on_changed)
    try:
        workers.add(files)
    except BaseException:
        workers.close()
        raise
    return workers.finish()
