"""How much of some files the page cache holds (mmap + mincore(2)): what the synclocal
tests and benchmark check after a copy that should leave no trail, or before one that
should read from disk."""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Iterable
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def _check(ok: bool, what: str) -> None:
    if not ok:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def cached_fraction(paths: Path | Iterable[Path]) -> float:
    """Share of these files' pages in the page cache (0.0 for no data); OSError when the
    kernel will not tell."""
    cached = total = 0
    for p in [paths] if isinstance(paths, Path) else paths:
        size = p.stat().st_size
        if not size:
            continue
        vec = (ctypes.c_ubyte * -(-size // mmap.PAGESIZE))()
        fd = os.open(p, os.O_RDONLY)
        try:
            addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            _check(addr not in (None, ctypes.c_void_p(-1).value), f"mmap {p}")
            try:
                _check(_libc.mincore(addr, size, vec) == 0, f"mincore {p}")
            finally:
                _libc.munmap(addr, size)
        finally:
            os.close(fd)
        cached += sum(v & 1 for v in vec)
        total += len(vec)
    return cached / total if total else 0.0
