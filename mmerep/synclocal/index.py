"""The per-dataset index: what is staged, from which source version, with which checksum.

A snapshot (JSON) is rewritten at the end of a run; during a run, changes go to an
append-only journal so that 20,000 small files do not rewrite a 20,000-entry file each.
The order of operations keeps the index truthful if the process dies at any point:
an entry is added only after its file was renamed into place, and removed (and the
removal written to the OS) before its file is replaced or deleted. A file without an
entry is simply copied again by the next run.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mmerep.synclocal.copy import write_error
from mmerep.synclocal.layout import Layout

_str = json.encoder.encode_basestring_ascii

VERSION = 1
ALGORITHM = "xxh3-128"


@dataclass
class Entry:
    src: str
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    checksum: str | None


@dataclass
class Index:
    dataset: str
    sources: list[str] = field(default_factory=list)
    chunk_size: int = 0
    complete: bool = False
    updated: float = 0.0
    bytes: int = 0
    files: dict[str, Entry] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**self.header(),
                "files": {rel: vars(e) for rel, e in sorted(self.files.items())}}

    def header(self) -> dict[str, Any]:
        return {"version": VERSION, "dataset": self.dataset, "algorithm": ALGORITHM,
                "chunk_size": self.chunk_size, "sources": self.sources,
                "complete": self.complete, "updated": self.updated, "bytes": self.bytes,
                "errors": self.errors}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Index:
        return cls(dataset=data["dataset"], sources=list(data.get("sources", [])),
                   chunk_size=int(data.get("chunk_size", 0)),
                   complete=bool(data.get("complete")), updated=float(data.get("updated", 0)),
                   bytes=int(data.get("bytes", 0)), errors=list(data.get("errors", [])),
                   files={rel: Entry(**e) for rel, e in data.get("files", {}).items()})


def snapshot(index: Index) -> bytes:
    """``to_json()`` as compact JSON, the same bytes as ``json.dumps`` gives, with the
    entries formatted by hand: json.dumps of a dict per file took most of the time a
    20,000-file run spends after its last copy (the parent waits for it alone)."""
    head = json.dumps(index.header(), separators=(",", ":"))
    files = ",".join([
        f'{_str(rel)}:{{"src":{_str(e.src)},"size":{e.size},"mtime_ns":{e.mtime_ns},'
        f'"ctime_ns":{e.ctime_ns},"ino":{e.ino},"checksum":'
        f'{"null" if e.checksum is None else _str(e.checksum)}}}'
        for rel, e in sorted(index.files.items())])
    return f'{head[:-1]},"files":{{{files}}}}}'.encode()


def load(layout: Layout, dataset: str) -> Index | None:
    """The snapshot with the journal replayed on top; None if the dataset was never staged."""
    snap, jpath = layout.index_path(dataset), layout.journal_path(dataset)
    index = None
    if snap.exists():
        index = Index.from_json(json.loads(snap.read_text()))
    if jpath.exists():
        index = index or Index(dataset=dataset)
        _replay(index, jpath.read_bytes())
    return index


def _replay(index: Index, raw: bytes) -> None:
    for line in raw.splitlines():
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a torn last line from a killed writer; that file is copied again
        op = rec.pop("op", None)
        index.complete = False  # a journal means a run started after the snapshot
        if op == "put":
            rel = rec.pop("rel")
            index.files[rel] = Entry(**rec)
        elif op == "del":
            index.files.pop(rec["rel"], None)
        elif op == "begin":
            index.chunk_size = index.chunk_size or int(rec.get("chunk_size", 0))
    index.bytes = sum(e.size for e in index.files.values())


def save(layout: Layout, index: Index) -> None:
    """Atomically replace the snapshot, then drop the journal it now contains."""
    index.bytes = sum(e.size for e in index.files.values())
    index.updated = time.time()
    path = layout.index_path(index.dataset)
    tmp = path.with_suffix(".json.tmp")
    data = snapshot(index)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    layout.journal_path(index.dataset).unlink(missing_ok=True)


def remove(layout: Layout, dataset: str) -> None:
    layout.index_path(dataset).unlink(missing_ok=True)
    layout.journal_path(dataset).unlink(missing_ok=True)


def _fsync_dir(path: os.PathLike[str] | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _put_line(rel: str, e: Entry) -> bytes:
    # Formatted by hand: json.dumps per file costs more than the copy itself.
    checksum = "null" if e.checksum is None else f'"{e.checksum}"'
    return (f'{{"op":"put","rel":{_str(rel)},"src":{_str(e.src)},"size":{e.size},'
            f'"mtime_ns":{e.mtime_ns},"ctime_ns":{e.ctime_ns},"ino":{e.ino},'
            f'"checksum":{checksum}}}\n').encode()


class Journal:
    """Thread-safe journal writer; additions are batched, removals written at once."""

    FLUSH_SECONDS = 0.5
    FLUSH_LINES = 512

    def __init__(self, layout: Layout, dataset: str) -> None:
        self.path = str(layout.journal_path(dataset))
        self._fd = os.open(self.path,
                           os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()
        self._buf: list[bytes] = []
        self._last = time.monotonic()

    def _line(self, rec: dict[str, Any]) -> bytes:
        return json.dumps(rec, separators=(",", ":")).encode() + b"\n"

    def begin(self, chunk_size: int) -> None:
        """Marks the dataset in flux, and carries what a journal-only index needs."""
        with self._lock:
            self._buf.append(self._line({"op": "begin", "at": time.time(),
                                         "chunk_size": chunk_size}))
            self._flush_locked()

    def put(self, rel: str, entry: Entry) -> None:
        line = _put_line(rel, entry)
        with self._lock:
            self._buf.append(line)
            if (len(self._buf) >= self.FLUSH_LINES
                    or time.monotonic() - self._last > self.FLUSH_SECONDS):
                self._flush_locked()

    def put_many(self, entries: list[tuple[str, Entry]]) -> None:
        """``put`` for a batch (what the small-file workers reported at once): one lock
        and one clock reading for the lot."""
        lines = [_put_line(rel, e) for rel, e in entries]
        with self._lock:
            self._buf.extend(lines)
            if (len(self._buf) >= self.FLUSH_LINES
                    or time.monotonic() - self._last > self.FLUSH_SECONDS):
                self._flush_locked()

    def delete(self, rel: str) -> None:
        """Written before the file goes, so the index never names a file that is not there."""
        with self._lock:
            self._buf.append(self._line({"op": "del", "rel": rel}))
            self._flush_locked()

    def delete_many(self, rels: list[str]) -> None:
        if rels:
            with self._lock:
                self._buf.extend(self._line({"op": "del", "rel": rel}) for rel in rels)
                self._flush_locked()

    def _flush_locked(self) -> None:
        if self._buf:
            # The leading newline ends any line torn by an earlier failed write (ENOSPC),
            # so a later record is never glued to it and lost.
            view = memoryview(b"\n" + b"".join(self._buf))
            self._buf.clear()
            try:
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError as exc:
                raise write_error(exc, self.path) from exc
        self._last = time.monotonic()

    def close(self) -> None:
        with self._lock:
            try:
                self._flush_locked()
            finally:
                os.close(self._fd)
