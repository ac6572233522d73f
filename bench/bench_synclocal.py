"""Benchmark: synclocal stage (verification on) against `cp -r` and `rsync -a`.

Tools: `cp -r`, `rsync -a`, the command `mme-rep synclocal stage` run as a process (the
headline; once on a pseudo-terminal, so its progress bar is drawn, once with its output
redirected) and the same engine called in-process (beside it). Cases: (a) 4 large files
and (b) many 64 KiB files; full size 4 x 1 GiB and 20,000 x
64 KiB, ``--quick`` 4 x 32 MiB and 2,000 x 64 KiB. Every tool copies into a fresh
destination; the many-files copies are deleted only when their case ends (ext4 without
a journal makes file creations after a mass deletion scan the deleted inodes; see
run_case), so the full size with 3 rounds needs about 2 x 4 GiB + 16 x 1.3 GiB of disk.
Before every run the source is flushed and dropped from the page cache
with posix_fadvise(DONTNEED), which touches only these files (unlike
/proc/sys/vm/drop_caches, used only with ``--drop-caches``); the fraction of the source
still cached is measured with mincore(2) and reported. Times are given for the copy
alone and for copy + syncfs (data on disk), since a copy that fits in RAM otherwise
measures memory speed. For the large files, each round also times the disk's ceiling for
a copy (the source read while as many bytes are written, no copier; see disk_ceiling),
and the bench says what share of it each tool reached. ``--case large|small|both`` runs one case.

    python bench/bench_synclocal.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mmerep.synclocal import Layout, StageOptions, stage_dataset, writer_lock
from testkit.pagecache import cached_fraction

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


def _cached(paths: list[Path]) -> float:
    try:
        return cached_fraction(paths)
    except OSError:
        return float("nan")


def syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _libc.syncfs(fd)
    finally:
        os.close(fd)


def _command(src: Path, dest: Path, jobs: int | None) -> list[str]:
    """`mme-rep synclocal stage` as users type it: the command's own defaults unless
    ``--jobs`` is given to the benchmark."""
    cmd = [sys.executable, "-m", "mmerep", "synclocal", "stage", str(src), "--to", str(dest)]
    return cmd + (["--jobs", str(jobs)] if jobs else [])


def _cli_available() -> bool:
    out = subprocess.run([sys.executable, "-m", "mmerep", "synclocal", "stage", "--help"],
                         capture_output=True, text=True)
    return out.returncode == 0 and "--to" in out.stdout


def run_on_terminal(cmd: list[str], columns: int = 100) -> bytes:
    """What ``cmd`` draws on a pseudo-terminal, as in an interactive shell."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run directly, too
    from testkit import terminal

    code, out = terminal.run_on_terminal(cmd, columns)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed on a terminal:\n"
                           f"{out.decode(errors='replace')[-2000:]}")
    return out


def bar_frames(screen: bytes) -> int:
    """How often a drawn progress bar line was redrawn (rich clears the line each time)."""
    return screen.count(b"\x1b[2K")


Tool = Callable[[Path, Path], "dict[str, object] | None"]


def tools(jobs: int | None) -> dict[str, Tool | None]:
    def engine(src: Path, dest: Path) -> None:
        layout = Layout(dest)
        opts = StageOptions(jobs=jobs) if jobs else StageOptions()
        with writer_lock(layout):
            report = stage_dataset(layout, src.name, [str(src)], opts)
        report.raise_for_failures()

    def redirected(src: Path, dest: Path) -> None:
        out = subprocess.run(_command(src, dest, jobs), capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"synclocal stage failed: {out.stderr.strip()}")

    def terminal(src: Path, dest: Path) -> dict[str, object]:
        return {"bar_frames": bar_frames(run_on_terminal(_command(src, dest, jobs)))}

    cli = _cli_available()
    return {
        "cp -r": lambda s, d: subprocess.run(["cp", "-r", str(s), f"{d}/"], check=True) and None,
        "rsync -a": (lambda s, d: subprocess.run(["rsync", "-a", str(s), f"{d}/"],
                                                 check=True) and None)
        if shutil.which("rsync") else None,
        TERMINAL: terminal if cli else None,
        REDIRECTED: redirected if cli else None,
        ENGINE: engine,
    }


def disk_ceiling(paths: list[Path], scratch: Path) -> None:
    """The disk's speed for a copy's traffic without a copier: each source file read by one
    thread while another writes as many bytes (one random MiB over and over) to a scratch
    file, then on disk. Reads and writes share this VM's disk (alone each reached 1.5-1.9
    GB/s, together about 0.93 GB/s each), so no copier can beat this. Both drop the pages
    behind them: new page-cache pages cost much CPU on this VM, and this measures the disk."""
    def read(p: Path) -> None:
        buf, off = bytearray(8 * MiB), 0
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                os.posix_fadvise(f.fileno(), off, n, os.POSIX_FADV_DONTNEED)
                off += n

    def write(target: Path, size: int) -> None:
        piece, done, flushed, settled = os.urandom(MiB), 0, 0, 0
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while done < size:
                done += os.write(fd, piece[: min(MiB, size - done)])
                if done - flushed >= 8 * MiB:  # write-behind, as synclocal's writeback.py
                    _libc.sync_file_range(fd, ctypes.c_int64(flushed),
                                          ctypes.c_int64(done - flushed), 2)
                    if flushed > settled:
                        _libc.sync_file_range(fd, ctypes.c_int64(settled),
                                              ctypes.c_int64(flushed - settled), 7)
                        os.posix_fadvise(fd, settled, flushed - settled,
                                         os.POSIX_FADV_DONTNEED)
                        settled = flushed
                    flushed = done
            os.fsync(fd)
        finally:
            os.close(fd)
            target.unlink()

    threads = [threading.Thread(target=read, args=(p,)) for p in paths] + [
        threading.Thread(target=write, args=(scratch / f"ceiling-{i}", p.stat().st_size))
        for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


CEILING = "disk ceiling: read + write, no copier"
TERMINAL = "mme-rep synclocal stage (terminal)"
REDIRECTED = "mme-rep synclocal stage (redirected)"
ENGINE = "engine in-process"
COMMANDS = (TERMINAL, REDIRECTED)


def _cpu() -> float:
    """CPU seconds of this process and of every child it has waited for (the tools, the
    engine's worker processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_case(work: Path, case: str, count: int, size: int, jobs: int | None, repeat: int,
             drop_caches: bool) -> list[dict]:
    """Every tool ``repeat`` times, interleaved: round after round, each tool once per
    round, the order rotated each round so that no tool always follows the same one (the
    previous tool's deleted files are still being discarded by the file system). Each
    tool's median counts, and each ratio is the median of the rounds' own ratios: tools
    run seconds apart share the machine's load at that moment."""
    src = work / case / "src"
    paths = make_source(src, count, size)
    # Many files: every tool's copy stays until the case ends. On ext4 without a journal
    # (this machine's root file system), creating a file while many inodes of its group
    # were deleted in the last minutes scans them one by one (fs/ext4/ialloc.c,
    # recently_deleted()): `cp -r` of 20,000 x 64 KiB took 1.2 s of CPU into a tree
    # with no deletion before it, 7-12 s right after 20,000-40,000 files were deleted,
    # 62-67% of that in the scan (perf). Deleting between tools made each tool pay for
    # its predecessor's files. A few large files are deleted between runs: no such scan.
    keep = count > 100
    total = count * size
    available = tools(jobs)
    rows: dict[str, dict] = {}
    runs: dict[str, list[tuple[float, float, float]]] = {}
    for tool, fn in available.items():
        rows[tool] = {"case": case, "tool": tool, "files": count, "bytes": total}
        if fn is None:
            rows[tool]["note"] = "unavailable (not installed)" if "rsync" in tool else \
                "unavailable (`mme-rep synclocal` not registered in the CLI)"
        else:
            runs[tool] = []
    order = list(runs)
    alone: list[tuple[float, float, float]] = []
    for i in range(repeat):
        if not keep:  # the large files: what the disk gives a copy's traffic, per round
            drop_from_cache(paths, drop_caches)
            c0, t0 = _cpu(), time.perf_counter()
            disk_ceiling(paths, work / case)
            took = time.perf_counter() - t0
            alone.append((took, took, _cpu() - c0))
        k = i % len(order)
        for tool in order[k:] + order[:k]:
            fn = available[tool]
            assert fn is not None
            dest = work / case / f"dst-{i}-{order.index(tool)}"
            dest.mkdir()
            method = drop_from_cache(paths, drop_caches)
            rows[tool]["source_cached_before"] = round(_cached(paths), 3)
            rows[tool]["cache_drop"] = method
            c0 = _cpu()
            t0 = time.perf_counter()
            extra = fn(src, dest)
            t1 = time.perf_counter()
            c1 = _cpu()
            syncfs(dest)
            t2 = time.perf_counter()
            rows[tool].update(extra or {})
            copied = sum(f.stat().st_size for f in (dest / "src").rglob("*") if f.is_file())
            if copied != total:
                raise RuntimeError(f"{tool} copied {copied} of {total} bytes")
            runs[tool].append((t1 - t0, t2 - t0, c1 - c0))
            if not keep:
                shutil.rmtree(dest)
                syncfs(work)  # the deletion's writes land before the next tool starts
    if alone:
        runs[CEILING] = alone
        rows[CEILING] = {"case": case, "tool": CEILING, "files": count, "bytes": total,
                            "source_cached_before": 0.0}
    for tool, got in runs.items():
        copy_s, synced_s, cpu_s = (statistics.median(x) for x in zip(*got, strict=True))
        rows[tool].update(copy_s=round(copy_s, 3), copy_sync_s=round(synced_s, 3),
                          cpu_s=round(cpu_s, 2), mb_per_s=round(total / copy_s / 1e6),
                          mb_per_s_synced=round(total / synced_s / 1e6), runs=repeat,
                          copy_s_all=[round(g[0], 3) for g in got],
                          synced_s_all=[round(g[1], 3) for g in got])
    shutil.rmtree(work / case)
    return list(rows.values())


def run(quick: bool, *, jobs: int | None = None, repeat: int = 3, base: str | None = None,
        drop_caches: bool = False, case: str = "both") -> list[dict]:
    large, small = (32 * MiB, 2_000) if quick else (1024 * MiB, 20_000)
    work = Path(tempfile.mkdtemp(prefix="mmerep-bench-", dir=base))
    try:
        rows = []
        if case in ("large", "both"):
            rows += run_case(work, "a: 4 large files", 4, large, jobs, repeat, drop_caches)
        if case in ("small", "both"):
            rows += run_case(work, f"b: {small} x 64 KiB", small, 64 * 1024, jobs, repeat,
                             drop_caches)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows + [{"ratio": line} for line in ratios(rows)]


TARGETS = (("a", "cp -r", 1.5), ("b", "rsync -a", 2.0), ("b", "cp -r", None))


def _round_ratio(baseline: list[float], ours: list[float]) -> float:
    return statistics.median(b / o for b, o in zip(baseline, ours, strict=True))


def ratios(rows: list[dict]) -> list[str]:
    """Throughput against the baseline: the median over rounds of baseline time / our
    time (copy + syncfs), the command's first (the headline), the engine's beside it."""
    lines = []
    for case, baseline, target in TARGETS:
        by = {r["tool"]: r for r in rows if r["case"].startswith(case)}
        if not by:  # that case was not run (--case)
            continue
        base = by.get(baseline, {})
        if "copy_s_all" not in base:
            lines.append(f"({case}) vs {baseline}: n/a ({base.get('note', 'missing')})")
            continue
        parts = []
        met = []
        for tool in (*COMMANDS, ENGINE):
            ours = by.get(tool, {})
            if "copy_s_all" not in ours:
                parts.append(f"{tool}: n/a")
                continue
            r = _round_ratio(base["synced_s_all"], ours["synced_s_all"])
            rc = _round_ratio(base["copy_s_all"], ours["copy_s_all"])
            parts.append(f"{tool}: {r:.2f}x (copy alone {rc:.2f}x)")
            if tool in COMMANDS and target:
                met.append(r >= target)
        goal = (f"; target >= {target}x for the command: "
                f"{'met' if met and all(met) else 'NOT met'}") if target else ""
        lines.append(f"({case}) vs {baseline}, throughput with syncfs: " + "; ".join(parts)
                     + goal)
        ceiling = by.get(CEILING, {})
        if "copy_s_all" in ceiling:
            share = [f"{tool} {_round_ratio(ceiling['synced_s_all'], got['synced_s_all']):.0%}"
                     for tool in (baseline, *COMMANDS, ENGINE)
                     if "synced_s_all" in (got := by.get(tool, {}))]
            lines.append(f"({case}) share of the disk's ceiling for a copy ({ceiling['mb_per_s']} "
                         "MB/s read while as much is written, no copier) reached with syncfs: "
                         + ", ".join(share))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 x 32 MiB and 2,000 x 64 KiB")
    ap.add_argument("--jobs", type=int, default=None,
                    help="pass --jobs to synclocal (default: its own default)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds (each tool once per round); medians are reported")
    ap.add_argument("--dir", default=None, help="where to create the files (default: $TMPDIR)")
    ap.add_argument("--case", choices=("large", "small", "both"), default="both",
                    help="only the large files (a), only the many small files (b), or both")
    ap.add_argument("--drop-caches", action="store_true",
                    help=f"write {DROP_CACHES} (system-wide) instead of per-file fadvise")
    args = ap.parse_args()
    writable = os.access(DROP_CACHES, os.W_OK)
    rows = run(args.quick, jobs=args.jobs, repeat=args.repeat, base=args.dir,
               drop_caches=args.drop_caches and writable, case=args.case)
    print(f"{'case':20} {'tool':37} {'copy s':>7} {'MB/s':>5} {'+sync s':>7} {'MB/s':>5} "
          f"{'cpu s':>6} {'src cached':>10}  copy s per round")
    for r in rows:
        if "copy_s" in r:
            print(f"{r['case']:20} {r['tool']:37} {r['copy_s']:7.2f} {r['mb_per_s']:5d} "
                  f"{r['copy_sync_s']:7.2f} {r['mb_per_s_synced']:5d} {r['cpu_s']:6.2f} "
                  f"{r['source_cached_before']:10.0%}  "
                  + " ".join(f"{x:.2f}" for x in r["copy_s_all"])
                  + (f"  (bar drawn {r['bar_frames']} times)" if "bar_frames" in r else ""))
        elif "note" in r:
            print(f"{r['case']:20} {r['tool']:37} {r['note']}")
        else:
            print(r["ratio"])
    how = "drop_caches" if args.drop_caches and writable else "posix_fadvise(DONTNEED) per file"
    print(f"medians of {args.repeat} interleaved rounds; page cache: source dropped before "
          f"each run with {how}; synclocal verifies (XXH3-128), "
          f"jobs={args.jobs or 'default'}, cpus={os.cpu_count()}; cpu s = user + system "
          f"time of the tool's processes; the many-files copies are deleted only when the "
          f"case ends (deleting them between tools made the next one pay ext4's scan of "
          f"recently deleted inodes)")
    with contextlib.suppress(OSError):
        print(f"load average: {os.getloadavg()[0]:.2f} (other work on the machine skews times)")


if __name__ == "__main__":
    main()
