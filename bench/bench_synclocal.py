"""Benchmark: synclocal stage (verification on) against `cp -r` and `rsync -a`.

Cases: (a) 4 large files and (b) many 64 KiB files; full size 4 x 1 GiB and 20,000 x
64 KiB, ``--quick`` 4 x 32 MiB and 2,000 x 64 KiB. Every tool copies into a fresh
destination. Before every run the source is flushed and dropped from the page cache
with posix_fadvise(DONTNEED), which touches only these files (unlike
/proc/sys/vm/drop_caches, used only with ``--drop-caches``); the fraction of the source
still cached is measured with mincore(2) and reported. Times are given for the copy
alone and for copy + syncfs (data on disk), since a copy that fits in RAM otherwise
measures memory speed.

    python bench/bench_synclocal.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mmerep.synclocal import Layout, StageOptions, stage_dataset, writer_lock

MiB = 1 << 20
DROP_CACHES = "/proc/sys/vm/drop_caches"
_libc = ctypes.CDLL(None, use_errno=True)


def make_source(base: Path, count: int, size: int) -> list[Path]:
    base.mkdir(parents=True)
    paths = []
    for i in range(count):
        sub = base / f"d{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        p = sub / f"f{i:06d}.dat"
        with open(p, "wb") as f:
            left = size
            while left:
                n = min(left, 16 * MiB)
                f.write(os.urandom(n))
                left -= n
            f.flush()
            os.fsync(f.fileno())
        paths.append(p)
    return paths


def drop_from_cache(paths: list[Path], drop_caches: bool) -> str:
    if drop_caches:
        os.sync()
        with open(DROP_CACHES, "w") as f:
            f.write("1\n")
        return "drop_caches"
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return "fadvise"


def cached_fraction(paths: list[Path]) -> float:
    """Share of the source's pages in the page cache, by mmap + mincore(2)."""
    _libc.mmap.restype = ctypes.c_void_p
    _libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                           ctypes.c_int, ctypes.c_long]
    page = mmap.PAGESIZE
    cached = total = 0
    for p in paths:
        size = p.stat().st_size
        if not size:
            continue
        pages = (size + page - 1) // page
        vec = (ctypes.c_ubyte * pages)()
        fd = os.open(p, os.O_RDONLY)
        try:
            addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                return float("nan")
            try:
                if _libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
                    return float("nan")
            finally:
                _libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))
        finally:
            os.close(fd)
        cached += sum(v & 1 for v in vec)
        total += pages
    return cached / total if total else 0.0


def syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _libc.syncfs(fd)
    finally:
        os.close(fd)


def _cli_available() -> bool:
    out = subprocess.run([sys.executable, "-m", "mmerep", "synclocal", "stage", "--help"],
                         capture_output=True, text=True)
    return out.returncode == 0 and "--to" in out.stdout


def tools(jobs: int) -> dict[str, Callable[[Path, Path], None] | None]:
    def engine(src: Path, dest: Path) -> None:
        layout = Layout(dest)
        with writer_lock(layout):
            report = stage_dataset(layout, src.name, [str(src)], StageOptions(jobs=jobs))
        report.raise_for_failures()

    def cli(src: Path, dest: Path) -> None:
        subprocess.run([sys.executable, "-m", "mmerep", "synclocal", "stage", str(src),
                        "--to", str(dest), "--jobs", str(jobs)], check=True,
                       stdout=subprocess.DEVNULL)

    return {
        "cp -r": lambda s, d: subprocess.run(["cp", "-r", str(s), f"{d}/"], check=True),
        "rsync -a": (lambda s, d: subprocess.run(["rsync", "-a", str(s), f"{d}/"], check=True))
        if shutil.which("rsync") else None,
        "synclocal": engine,
        "synclocal (CLI process)": cli if _cli_available() else None,
    }


def run_case(work: Path, case: str, count: int, size: int, jobs: int, repeat: int,
             drop_caches: bool) -> list[dict]:
    """Every tool ``repeat`` times, interleaved (tool after tool, round after round), so
    a drift in the machine's disk speed spreads over all of them; the best run counts."""
    src = work / case / "src"
    paths = make_source(src, count, size)
    total = count * size
    available = tools(jobs)
    rows: dict[str, dict] = {}
    best: dict[str, tuple[float, float]] = {}
    for tool, fn in available.items():
        rows[tool] = {"case": case, "tool": tool, "files": count, "bytes": total}
        if fn is None:
            rows[tool]["note"] = "unavailable (not installed)" if "rsync" in tool else \
                "unavailable (`mme-rep synclocal` not registered in the CLI yet)"
    for i in range(repeat):
        for tool, fn in available.items():
            if fn is None:
                continue
            dest = work / case / f"dst-{tool.split()[0]}-{i}"
            dest.mkdir()
            method = drop_from_cache(paths, drop_caches)
            rows[tool]["source_cached_before"] = round(cached_fraction(paths), 3)
            rows[tool]["cache_drop"] = method
            t0 = time.perf_counter()
            fn(src, dest)
            t1 = time.perf_counter()
            syncfs(dest)
            t2 = time.perf_counter()
            copied = sum(f.stat().st_size for f in (dest / "src").rglob("*") if f.is_file())
            if copied != total:
                raise RuntimeError(f"{tool} copied {copied} of {total} bytes")
            if tool not in best or t2 - t0 < best[tool][1]:
                best[tool] = (t1 - t0, t2 - t0)
            shutil.rmtree(dest)
            syncfs(work)  # the deletion's writes land before the next tool starts
    for tool, (copy_s, synced_s) in best.items():
        rows[tool].update(copy_s=round(copy_s, 3), copy_sync_s=round(synced_s, 3),
                          mb_per_s=round(total / copy_s / 1e6),
                          mb_per_s_synced=round(total / synced_s / 1e6), runs=repeat)
    shutil.rmtree(work / case)
    return list(rows.values())


def run(quick: bool, *, jobs: int = 8, repeat: int = 1, base: str | None = None,
        drop_caches: bool = False) -> list[dict]:
    large, small = (32 * MiB, 2_000) if quick else (1024 * MiB, 20_000)
    work = Path(tempfile.mkdtemp(prefix="mmerep-bench-", dir=base))
    try:
        return (run_case(work, "a: 4 large files", 4, large, jobs, repeat, drop_caches)
                + run_case(work, f"b: {small} x 64 KiB", small, 64 * 1024, jobs, repeat,
                           drop_caches))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ratios(rows: list[dict]) -> list[str]:
    lines = []
    for case, baseline, target in (("a", "cp -r", 0.9), ("b", "rsync -a", 2.0),
                                   ("b", "cp -r", None)):
        by = {r["tool"]: r for r in rows if r["case"].startswith(case)}
        ours, base = by.get("synclocal", {}), by.get(baseline, {})
        if "copy_s" not in ours or "copy_s" not in base:
            lines.append(f"({case}) synclocal / {baseline}: n/a ({base.get('note', 'missing')})")
            continue
        r1 = base["copy_s"] / ours["copy_s"]
        r2 = base["copy_sync_s"] / ours["copy_sync_s"]
        goal = f", target >= {target}x: {'met' if r2 >= target else 'NOT met'}" if target else ""
        lines.append(f"({case}) synclocal / {baseline} throughput: {r1:.2f}x copy, "
                     f"{r2:.2f}x copy+sync{goal}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 x 32 MiB and 2,000 x 64 KiB")
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; the best is kept")
    ap.add_argument("--dir", default=None, help="where to create the files (default: $TMPDIR)")
    ap.add_argument("--drop-caches", action="store_true",
                    help=f"write {DROP_CACHES} (system-wide) instead of per-file fadvise")
    args = ap.parse_args()
    writable = os.access(DROP_CACHES, os.W_OK)
    rows = run(args.quick, jobs=args.jobs, repeat=args.repeat, base=args.dir,
               drop_caches=args.drop_caches and writable)
    print(f"{'case':22} {'tool':24} {'copy s':>8} {'MB/s':>6} {'+sync s':>8} {'MB/s':>6} "
          f"{'src cached':>10}")
    for r in rows:
        if "copy_s" in r:
            print(f"{r['case']:22} {r['tool']:24} {r['copy_s']:8.3f} {r['mb_per_s']:6d} "
                  f"{r['copy_sync_s']:8.3f} {r['mb_per_s_synced']:6d} "
                  f"{r['source_cached_before']:10.0%}")
        else:
            print(f"{r['case']:22} {r['tool']:24} {r['note']}")
    for line in ratios(rows):
        print(line)
    how = "drop_caches" if args.drop_caches and writable else "posix_fadvise(DONTNEED) per file"
    print(f"page cache: source dropped before each run with {how}; {DROP_CACHES} is "
          f"{'writable' if writable else 'not writable'}; synclocal verifies (XXH3-128), "
          f"jobs={args.jobs}, cpus={os.cpu_count()}")
    with contextlib.suppress(OSError):
        print(f"load average: {os.getloadavg()[0]:.2f} (other work on the machine skews times)")


if __name__ == "__main__":
    main()
