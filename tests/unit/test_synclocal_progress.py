"""What `synclocal stage` costs beyond the copy: progress reports and the command's bar.

A progress call per file (or per MiB) would cost more than the copy of a small file, and
a terminal redrawn ten times a second takes CPU from the workers: the engine reports at
most once per interval, from one thread at a time, and the command redraws only then.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import typer

from mmerep.cli.synclocal import app
from mmerep.synclocal.layout import Layout, writer_lock
from mmerep.synclocal.stage import StageOptions, StageProgress, stage_dataset
from testkit.terminal import run_on_terminal


def make_files(base: Path, count: int, size: int) -> Path:
    rnd = random.Random(count)
    for i in range(count):
        p = base / f"d{i % 7}" / f"f{i:05d}.dat"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(size))
    return base


class Recorder:
    """Records each progress call, and whether two ever ran at the same time."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, StageProgress]] = []
        self.overlapped = False
        self._inside = threading.Lock()

    def __call__(self, p: StageProgress) -> None:
        if not self._inside.acquire(blocking=False):
            self.overlapped = True
            return
        try:
            self.calls.append((time.monotonic(), p))
            time.sleep(0.002)  # a redraw takes a moment; another worker may arrive
        finally:
            self._inside.release()


def run_stage(tmp_path: Path, src: Path, rec: Recorder, **kw: object) -> float:
    layout = Layout(tmp_path / "ssd")
    opts = StageOptions(progress=rec, **kw)  # type: ignore[arg-type]
    started = time.monotonic()
    with writer_lock(layout):
        report = stage_dataset(layout, "ds", [str(src)], opts)
    report.raise_for_failures()
    return time.monotonic() - started


def assert_throttled(rec: Recorder, seconds: float, interval: float, files: int,
                     size: int) -> None:
    assert not rec.overlapped, "two progress calls ran at once"
    # One per interval, plus the first and the final one; far fewer than files or MiB.
    assert 2 <= len(rec.calls) <= seconds / interval + 2, (len(rec.calls), seconds)
    times = [t for t, _ in rec.calls]
    gaps = [b - a for a, b in itertools.pairwise(times[:-1])]  # the last one is forced
    assert all(g >= interval * 0.95 for g in gaps), min(gaps)
    last = rec.calls[-1][1]
    assert (last.files_done, last.bytes_done) == (files, files * size)
    done = [p.bytes_done for _, p in rec.calls]
    assert done == sorted(done)


def test_small_files_in_worker_processes_report_at_most_once_per_interval(
        tmp_path: Path) -> None:
    src = make_files(tmp_path / "src", 400, 20_000)
    rec = Recorder()
    # 8 MB at 4 MB/s: about 2 s, many intervals long.
    seconds = run_stage(tmp_path, src, rec, processes=2, progress_interval=0.1,
                        bwlimit=4_000_000)
    assert seconds > 1.0
    assert_throttled(rec, seconds, 0.1, 400, 20_000)


def test_chunks_copied_by_threads_report_at_most_once_per_interval(tmp_path: Path) -> None:
    size = 6 << 20
    src = make_files(tmp_path / "src", 4, size)
    rec = Recorder()
    seconds = run_stage(tmp_path, src, rec, jobs=8, chunk_size=1 << 20,
                        progress_interval=0.1, bwlimit=20_000_000)
    assert seconds > 0.8
    assert_throttled(rec, seconds, 0.1, 4, size)


def test_the_command_passes_the_engines_defaults() -> None:
    """`synclocal stage` without options stages as the engine does by default."""
    params = {p.name: p.default for p in typer.main.get_command(app)
              .commands["stage"].params}  # type: ignore[attr-defined]
    engine = StageOptions()
    assert params["jobs"] == engine.jobs
    assert params["verify"] is engine.verify is True
    assert params["recheck"] is engine.recheck is False
    assert params["bwlimit"] is None and engine.bwlimit is None


def test_on_a_terminal_the_bar_is_drawn_only_when_the_engine_reports(tmp_path: Path) -> None:
    src = make_files(tmp_path / "olci", 300, 20_000)  # 6 MB at 2 MB/s: about 3 s
    code, screen = run_on_terminal(
        [sys.executable, "-m", "mmerep", "synclocal", "stage", str(src),
         "--to", str(tmp_path / "ssd"), "--bwlimit", "2M"], timeout=60)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))
    assert code == 0, text
    assert "olci 300/300" in text  # the bar was drawn, to the end
    assert "complete olci: 300 copied" in text
    copy = re.search(r"removed in ([0-9.]+)s", text)
    assert copy, text
    seconds = float(copy.group(1))
    assert seconds > 2.0
    assert (tmp_path / "ssd" / "olci" / "d0" / "f00000.dat").read_bytes() == (
        src / "d0" / "f00000.dat").read_bytes()
    # rich's own refresh thread would redraw 10 times a second whatever the reports; the
    # engine reports at most every 0.2 s (StageOptions.progress_interval), and the bar is
    # drawn once more as it appears, at the forced last report and as it goes.
    redraws = screen.count(b"\x1b[2K")
    assert 3 <= redraws <= seconds / StageOptions().progress_interval + 5, (redraws, seconds)


def test_redirected_the_command_loads_no_terminal_library(tmp_path: Path) -> None:
    """Output to files or pipes (jobs, the daemon's operators) pays no rich import."""
    src = make_files(tmp_path / "olci", 3, 1000)
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "mmerep", "synclocal",
                          "stage", str(src), "--to", str(tmp_path / "ssd")],
                         capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("complete olci: 3 copied"), out.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()
                if line.startswith("import time:")]
    assert "mmerep.synclocal.index" in imported  # the engine ran, and was seen loading
    assert not [m for m in imported if m == "rich" or m.startswith("rich.")]
