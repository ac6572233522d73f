"""Staging one dataset: plan, copy in parallel, record in the index, report.

Workers pull (file, chunk) items from one shared iterator, so many small files and the
chunks of a large file keep all threads busy alike. The worker that finishes a file's
last chunk checks the source, renames the file into place and records it; if the
source changed meanwhile, it copies the file again (a few times) from the new version.
The caller holds the root's writer lock.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from mmerep.synclocal import index as ix
from mmerep.synclocal.copy import (
    DEFAULT_CHUNK,
    MAX_ATTEMPTS,
    PIECE,
    Changed,
    Failure,
    FileCopy,
    PieceHook,
    Throttle,
    copy_small,
    failure_of,
)
from mmerep.synclocal.early import EarlyCopies
from mmerep.synclocal.errors import (
    LocalWriteError,
    SourceChanged,
    SourceUnreadable,
    SyncError,
)
from mmerep.synclocal.layout import Layout, check_dataset_name
from mmerep.synclocal.plan import bytes_needed, check_space, make_plan
from mmerep.synclocal.procs import copy_in_processes
from mmerep.synclocal.sources import SourceFile, resolve


@dataclass(frozen=True)
class StageProgress:
    """How far one dataset's staging is (files and bytes), sent to ``on_progress``."""

    dataset: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


OnStageProgress = Callable[[StageProgress], None]


@dataclass
class StageOptions:
    jobs: int = 8
    verify: bool = True
    recheck: bool = False
    chunk_size: int = DEFAULT_CHUNK
    bwlimit: int | None = None
    progress: OnStageProgress | None = None
    # At most one progress call per interval (and a last one at the end): a caller that
    # redraws a terminal on each call costs CPU that the copy itself needs.
    progress_interval: float = 0.2
    piece_hook: PieceHook | None = None  # between pieces; tests change a source here
    make_room: Callable[[int], None] | None = None  # the daemon evicts to fit this many bytes
    cancel: threading.Event | None = None  # set it to stop soon (SIGTERM in the daemon)
    processes: int | None = None  # for small files; None: one per CPU when there are many


@dataclass
class StageReport:
    dataset: str
    files_total: int = 0
    files_copied: int = 0
    files_skipped: int = 0
    files_removed: int = 0
    bytes_total: int = 0
    bytes_copied: int = 0
    seconds: float = 0.0
    retried: int = 0
    verify_failures: int = 0
    failures: list[Failure] = field(default_factory=list)
    complete: bool = False  # every file of the dataset is staged and in the index


    @property
    def throughput(self) -> float:
        return self.bytes_copied / self.seconds if self.seconds > 0 else 0.0

    def raise_for_failures(self) -> None:
        if not self.failures:
            return
        first = self.failures[0]
        more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        raise first.kind(f"dataset {self.dataset}: {first.path}: {first.reason}{more}",
                         hint="fix the source and run again; verified files are skipped")


PROCESS_THRESHOLD = 256  # fewer small files than this do not repay forking


class _Stop(threading.Event):
    """Set by an abort inside the run, or from outside through ``cancel``."""

    def __init__(self, cancel: threading.Event | None) -> None:
        super().__init__()
        self._cancel = cancel

    def is_set(self) -> bool:
        return super().is_set() or (self._cancel is not None and self._cancel.is_set())


class _Run:
    def __init__(self, layout: Layout, index: ix.Index, journal: ix.Journal,
                 report: StageReport, opts: StageOptions, dest: str) -> None:
        self.layout, self.index, self.journal = layout, index, journal
        self.report, self.opts, self.dest = report, opts, dest
        self.stop = _Stop(opts.cancel)
        self.abort: SyncError | None = None
        self.throttle = Throttle(opts.bwlimit) if opts.bwlimit else None
        self._lock = threading.Lock()
        self._names = itertools.count()
        self.tmp = str(layout.tmp_dir)
        self.files_todo = 0
        self.bytes_todo = 0
        self._files_done = 0
        self._bytes_done = 0
        self._last_tick = 0.0
        self._tick_lock = threading.Lock()

    def new_copy(self, f: SourceFile) -> FileCopy:
        tmp = f"{self.tmp}/{next(self._names):08x}-{os.path.basename(f.rel)[:60]}"
        return FileCopy(f, tmp, os.path.join(self.dest, f.rel), self.index.chunk_size,
                        self.opts.verify)

    def items(self, files: Sequence[SourceFile]) -> Iterator[tuple[FileCopy | SourceFile, int]]:
        """(file, -1) for a file of one piece, (its copy, chunk) for the rest."""
        for f in files:
            if f.size <= PIECE:
                yield f, -1
            else:
                fc = self.new_copy(f)
                for i in range(fc.nchunks):
                    yield fc, i

    def on_bytes(self, n: int) -> None:
        with self._lock:
            self._bytes_done += n
        self.tick()

    def tick(self, force: bool = False) -> None:
        if self.opts.progress is None:
            return
        interval = self.opts.progress_interval
        if not force and time.monotonic() - self._last_tick < interval:
            return  # the common case, decided without a lock
        # Checked again under the lock: several workers pass the first test at once.
        with self._tick_lock:
            now = time.monotonic()
            if not force and now - self._last_tick < interval:
                return
            self._last_tick = now
            self.opts.progress(StageProgress(self.report.dataset, self._files_done,
                                             self.files_todo, self._bytes_done, self.bytes_todo))

    def copy_small(self, f: SourceFile, buf: bytearray) -> None:
        tmp = f"{self.tmp}/{next(self._names):08x}-{os.path.basename(f.rel)[:60]}"
        try:
            if self.throttle:
                self.throttle.take(f.size)
            checksum = copy_small(f, tmp, os.path.join(self.dest, f.rel), self.opts.verify,
                                  memoryview(buf), self.opts.piece_hook)
        except Changed:
            fc = self.new_copy(f)  # retried like any file; the temporary is gone already
            fc.error = Changed()
            self.complete(fc, buf)
            return
        except BaseException as exc:
            self.fail(f.path, exc)
            return
        self.on_bytes(f.size)
        self.record(f, checksum)

    def run_chunk(self, fc: FileCopy, i: int, buf: bytearray) -> None:
        if fc.error is None and not self.stop.is_set():
            try:
                fc.run_chunk(i, buf, throttle=self.throttle, hook=self.opts.piece_hook,
                             stop=self.stop, on_bytes=self.on_bytes)
            except BaseException as exc:
                fc.error = exc
        if fc.chunk_done():
            self.complete(fc, buf)

    def complete(self, fc: FileCopy, buf: bytearray) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if fc.error is None and not self.stop.is_set():
                try:
                    self.record(fc.src, fc.finish())
                    return
                except BaseException as exc:
                    fc.error = exc
            fc.discard()
            if self.stop.is_set():
                return
            if not isinstance(fc.error, Changed) or attempt == MAX_ATTEMPTS:
                break
            try:
                fresh = SourceFile.of(fc.src.path, fc.src.rel, os.stat(fc.src.path))
            except OSError as exc:
                fc.error = exc
                break
            with self._lock:
                self.report.retried += 1
                self.report.verify_failures += 1
            fc = self.new_copy(fresh)
            for i in range(fc.nchunks):
                try:
                    fc.run_chunk(i, buf, throttle=self.throttle, hook=self.opts.piece_hook,
                                 stop=self.stop, on_bytes=self.on_bytes)
                except BaseException as exc:
                    fc.error = exc
                    break
        assert fc.error is not None
        self.fail(fc.src.path, fc.error)

    def record(self, s: SourceFile, checksum: str | None) -> None:
        entry = ix.Entry(s.path, s.size, s.mtime_ns, s.ctime_ns, s.ino, checksum)
        self.journal.put(s.rel, entry)
        with self._lock:
            self.index.files[s.rel] = entry
            self.report.files_copied += 1
            self.report.bytes_copied += s.size
            self._files_done += 1
        self.tick()

    def fail(self, path: str, exc: BaseException) -> None:
        self.add_failure(failure_of(path, exc))

    def add_failure(self, failure: Failure) -> None:
        with self._lock:
            if failure.kind is SourceChanged:
                self.report.verify_failures += 1
            if issubclass(failure.kind, LocalWriteError):
                # The local disk is full or failing: every other file would fail too.
                self.abort = self.abort or failure.kind(failure.reason)
                self.stop.set()
            self.report.failures.append(failure)

    def done_elsewhere(self, done: list[tuple[SourceFile, str | None]]) -> None:
        """``record`` for files the worker processes copied, a batch at a time."""
        entries = [(f.rel, ix.Entry(f.path, f.size, f.mtime_ns, f.ctime_ns, f.ino, checksum))
                   for f, checksum in done]
        self.journal.put_many(entries)
        size = sum(e.size for _, e in entries)
        with self._lock:
            self.index.files.update(entries)
            self.report.files_copied += len(entries)
            self.report.bytes_copied += size
            self._files_done += len(entries)
            self._bytes_done += size
        self.tick()

    def work(self, items: Iterator[tuple[FileCopy | SourceFile, int]],
             lock: threading.Lock) -> None:
        buf = bytearray(PIECE)
        while not self.stop.is_set():
            with lock:
                item = next(items, None)
            if item is None:
                return
            what, i = item
            try:
                if isinstance(what, SourceFile):
                    self.copy_small(what, buf)
                else:
                    self.run_chunk(what, i, buf)
            except BaseException as exc:  # e.g. the journal's disk is full: never lose a file
                self.fail(what.path if isinstance(what, SourceFile) else what.src.path, exc)


def stage_dataset(layout: Layout, name: str, sources: Sequence[str],
                  opts: StageOptions | None = None) -> StageReport:
    """Make ``ROOT/name`` an exact, verified copy of ``sources``; resumes where it stopped."""
    opts = opts or StageOptions()
    check_dataset_name(name)
    started = time.monotonic()
    layout.ensure()
    layout.clear_tmp()  # leftovers of a killed run; safe, we hold the writer lock
    index = ix.load(layout, name) or ix.Index(dataset=name)
    index.chunk_size = index.chunk_size or opts.chunk_size
    dest = str(layout.dataset_dir(name))
    early = EarlyCopies.maybe(layout, index, sources, dest, _nprocs(opts), PROCESS_THRESHOLD,
                              verify=opts.verify, recheck=opts.recheck, bwlimit=opts.bwlimit,
                              hook=opts.piece_hook, make_room=opts.make_room)
    try:
        files, problems = resolve(sources, avoid=str(layout.root),
                                  on_files=early.listed if early else None)
        plan = make_plan(files, index, dest, verify=opts.verify, recheck=opts.recheck,
                         jobs=opts.jobs)
        report = StageReport(name, files_total=len(files), files_skipped=len(plan.skip),
                             bytes_total=sum(f.size for f in files),
                             verify_failures=len(plan.recheck_failures))
        report.failures = [Failure(p.path, p.reason, SourceUnreadable) for p in problems]
        unchanged = not plan.copy and not plan.stale and index.sources == list(sources)
        if unchanged and index.complete and not problems:
            if early:
                early.abandon()
            report.seconds = time.monotonic() - started
            report.complete = True
            return report
        need = bytes_needed(plan, index)
        if opts.make_room and need > 0:
            opts.make_room(need)
        check_space(str(layout.root), need, early.free if early else None)
        journal = ix.Journal(layout, name)
    except BaseException:
        if early:  # nothing was placed: the early copies go with the refusal
            early.abandon()
        raise
    run = _Run(layout, index, journal, report, opts, dest)
    run.files_todo, run.bytes_todo = len(plan.copy), plan.bytes_to_copy
    try:
        journal.begin(index.chunk_size)
        _remove(journal, index, dest, plan.stale, report)
        journal.delete_many([f.rel for f in plan.copy if f.rel in index.files])
        for f in plan.copy:
            index.files.pop(f.rel, None)
        todo = _make_dirs(dest, plan.copy, run)
        todo = _small_files_in_processes(run, todo, early)
        early = None
        _run_workers(run, todo, opts.jobs)
    finally:
        if early:  # stopped before the workers were handed over
            early.abandon()
        try:
            journal.close()
        except SyncError as exc:  # the last records are lost: those files are copied again
            run.abort = run.abort or exc
        report.seconds = time.monotonic() - started
        index.sources = list(sources)
        # From the index itself, not from counters: complete means every file is in it.
        index.complete = report.complete = (
            not report.failures and not run.stop.is_set()
            and all(f.rel in index.files for f in files))
        index.errors = [f"{f.path}: {f.reason}" for f in report.failures[:20]]
        with contextlib.suppress(OSError):  # a full disk: the journal still tells the truth
            ix.save(layout, index)
    run.tick(force=True)
    if run.abort:
        raise run.abort
    if index.complete:
        layout.mark_used(name)
    return report


def _remove(journal: ix.Journal, index: ix.Index, dest: str, rels: list[str],
            report: StageReport) -> None:
    journal.delete_many(rels)
    for rel in rels:
        index.files.pop(rel, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(dest, rel))
        report.files_removed += 1


def _make_dirs(dest: str, files: list[SourceFile], run: _Run) -> list[SourceFile]:
    """Create every parent once, up front; files whose parent cannot exist fail alone."""
    bad: dict[str, tuple[str, OSError]] = {}
    # Parents from the relative names ("a/b/c.nc" -> "a/b"): path functions per file
    # cost a second of CPU at a million files.
    for d in sorted({f.rel.rpartition("/")[0] for f in files}):
        parent = f"{dest}/{d}" if d else dest
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            bad[d] = (parent, exc)
    if not bad:
        return files
    todo = []
    for f in files:
        failed = bad.get(f.rel.rpartition("/")[0])
        if failed:
            run.fail(f.path, SyncError(f"cannot create {failed[0]}: {failed[1].strerror}"))
        else:
            todo.append(f)
    return todo


def _nprocs(opts: StageOptions) -> int:
    """Worker processes for a run with many small files."""
    if opts.processes is not None:
        return opts.processes
    # One per CPU: the workers' read-ahead (procs.PREFETCH) keeps the disk busy, and
    # more workers than CPUs measured slower and less steady (2 CPUs, 20,000 cold
    # 64 KiB files: 2 workers 1.6-2.0 s, 4 workers 1.5-4.3 s, rsync 3.6-4.3 s).
    return min(opts.jobs, os.cpu_count() or 1)


def _small_files_in_processes(run: _Run, files: list[SourceFile],
                              early: EarlyCopies | None) -> list[SourceFile]:
    """Copy the one-piece files in worker processes when it pays; returns the rest.
    Workers that started during the listing (``early``) place their copies now and
    take the rest."""
    small = [f for f in files if f.size <= PIECE]
    workers = early.workers if early else None
    if workers is None:
        nprocs = _nprocs(run.opts) if len(small) >= PROCESS_THRESHOLD else 0
        if nprocs < 2 or not small:
            return files
    changed: list[SourceFile] = []
    try:
        if early is not None and workers is not None:
            sent = early.sent()
            early.workers = None  # the run's from here on
            workers.stop = run.stop
            workers.on_done, workers.on_failure = run.done_elsewhere, run.add_failure
            workers.on_changed = changed.append
            for failure in early.failures:
                run.add_failure(failure)
            changed.extend(early.changed)
            kept = {f.rel for f in small}  # those whose parent could not be made are not
            workers.go({k for k, f in enumerate(workers.files) if f.rel not in kept})
            workers.add([f for f in small if f.rel not in sent])
            finished = workers.finish()
        else:
            finished = copy_in_processes(
                small, nprocs, tmp_dir=run.tmp, dest=run.dest, verify=run.opts.verify,
                bwlimit=run.opts.bwlimit, hook=run.opts.piece_hook, stop=run.stop,
                on_done=run.done_elsewhere, on_failure=run.add_failure,
                on_changed=changed.append)
    except BaseException:  # Ctrl-C, SIGTERM: the workers are gone, so are their temporaries
        if workers is not None:
            workers.close()
        run.layout.clear_tmp()
        raise
    if not finished:
        run.layout.clear_tmp()  # what the stopped workers left; no other copy is running
    buf = bytearray(PIECE)
    for f in changed:  # rare: copied again here, from its new version
        fc = run.new_copy(f)
        fc.error = Changed()
        run.complete(fc, buf)
    return [f for f in files if f.size > PIECE]


def _run_workers(run: _Run, files: list[SourceFile], jobs: int) -> None:
    items, lock = run.items(files), threading.Lock()
    threads = [threading.Thread(target=run.work, args=(items, lock), daemon=True,
                                name=f"synclocal-{i}") for i in range(max(1, jobs))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)  # a timed join lets Ctrl-C reach the main thread
    except KeyboardInterrupt:
        run.stop.set()
        for t in threads:
            t.join()
        raise
