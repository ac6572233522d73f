"""`synclocal stage`'s body, without typer or rich: the typer command and the fast path
(``mmerep.cli.fast``) both call ``stage``.

A staging run of many small files takes a few seconds, and typer's import (~70 ms of
CPU) and rich's progress bar (~70 ms more, and a redraw that builds renderables) were a
visible share of it. On a terminal the bar is one line drawn here with ``\\r`` and
``ESC[2K`` when the engine reports (at most every ``StageOptions.progress_interval``);
redirected, nothing is drawn.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from mmerep.cli.plain import console_width

GREEN, RED, RESET = "\x1b[32m", "\x1b[31m", "\x1b[0m"


def stage(sources: list[str], to: Path, dataset: str | None, jobs: int, verify: bool,
          recheck: bool, bwlimit: str | None) -> None:
    """Copy SOURCE... into TO; raises the engine's error for the first failed dataset."""
    import gc
    import glob

    from mmerep.errors import UsageError
    from mmerep.quantity import parse_size
    from mmerep.synclocal import StageOptions, SyncError, stage_dataset, writer_lock
    from mmerep.synclocal.layout import Layout
    from mmerep.synclocal.plan import human_size

    if dataset is not None:
        groups = {dataset: sources}
    else:
        groups = {}
        for s in sources:
            if glob.has_magic(s) or Path(s).is_file():
                raise UsageError(f"{s} is not a directory",
                                 hint="name the dataset for files or globs: --dataset NAME")
            name = Path(s).resolve().name
            if name in groups:
                raise UsageError(f"two sources are named {name}",
                                 hint="stage them one by one with --dataset NAME")
            groups[name] = [s]
    layout = Layout(to.absolute())
    opts = StageOptions(jobs=jobs, verify=verify, recheck=recheck,
                        bwlimit=parse_size(bwlimit, "--bwlimit") if bwlimit else None)
    reports = []
    # What start-up made lives until the process ends: keep the collector from walking
    # it again and again while the engine allocates an entry per file.
    gc.freeze()
    try:
        with writer_lock(layout), progress_bar(sys.stderr) as on_progress:
            opts.progress = on_progress
            for name, srcs in groups.items():
                reports.append(stage_dataset(layout, name, srcs, opts))
    finally:
        gc.unfreeze()
    errors: list[SyncError] = []
    for report in reports:  # after the bar is gone, so the lines stay readable
        rate = f", {report.throughput / 1e6:.0f} MB/s" if report.bytes_copied else ""
        print_status(
            "complete" if report.complete else "incomplete",
            GREEN if report.complete else RED,
            f"{report.dataset}: {report.files_copied} copied "
            f"({human_size(report.bytes_copied)}), {report.files_skipped} already staged, "
            f"{report.files_removed} removed in {report.seconds:.2f}s{rate}"
            + (" (checksums recorded)" if verify else " (not verified)"))
        try:
            report.raise_for_failures()
        except SyncError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def is_terminal(stream: IO[str]) -> bool:
    """A terminal as rich decides it: a tty, or FORCE_COLOR / TTY_COMPATIBLE=1 set."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty or "FORCE_COLOR" in os.environ or os.environ.get("TTY_COMPATIBLE") == "1"


def _colour() -> bool:
    return not os.environ.get("NO_COLOR") and os.environ.get("TERM") not in ("dumb", "unknown")


def print_status(word: str, colour: str, rest: str) -> None:
    if is_terminal(sys.stdout) and _colour():
        word = f"{colour}{word}{RESET}"
    print(f"{word} {rest}", flush=True)


def _size(n: float) -> tuple[float, str]:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return n, unit
        n /= 1000
    return n, "TB"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = int(seconds + 0.999)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Bar:
    """One line redrawn in place: ``DATASET DONE/FILES ━━━━╺━━━ 12.3/125.0 MB 310.2 MB/s
    0:00:01`` (files, bar, bytes, mean rate, time left), never wider than the terminal."""

    WIDTH = 40

    def __init__(self, stream: IO[str], columns: int, colour: bool) -> None:
        self.stream, self.columns, self.colour = stream, columns, colour
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        # In colour the two parts differ by colour alone, as rich draws them.
        self.full, self.empty = ("━", "━") if colour and encoding == "utf8" else ("#", "-")
        self._started: dict[str, tuple[float, int]] = {}

    def line(self, dataset: str, files_done: int, files_total: int, done: int, total: int,
             now: float) -> str:
        total = max(total, done)
        t0, b0 = self._started.setdefault(dataset, (now, done))
        rate = (done - b0) / (now - t0) if now - t0 >= 0.2 and done > b0 else None
        left = (total - done) / rate if rate else None
        scaled, unit = _size(total)
        div = total / scaled if scaled else 1
        speed = "?" if rate is None else "{:.1f} {}/s".format(*_size(rate))
        # Numbers padded to their widest, so the bar neither moves nor changes length.
        digits, size = len(str(files_total)), len(f"{scaled:.1f}")
        tail = f" {done / div:{size}.1f}/{scaled:.1f} {unit} {speed:>10} {_clock(left)}"
        head = f"{dataset} {files_done:{digits}d}/{files_total} "
        room = self.columns - 1 - len(head) - len(tail)
        width = min(self.WIDTH, room)
        if width < 10:  # a narrow terminal: the numbers matter more than bar and name
            line = head + tail.lstrip()
            if len(line) >= self.columns:
                line = f"{files_done:{digits}d}/{files_total}{tail}"
            return line[: self.columns - 1]
        filled = width * done // total if total else width
        bar = self.full * filled, self.empty * (width - filled)
        if self.colour:
            return (f"{head}\x1b[35m{bar[0]}\x1b[90m{bar[1]}{RESET}{tail}")
        return f"{head}{bar[0]}{bar[1]}{tail}"

    def draw(self, text: str) -> None:
        self.stream.write(f"\r\x1b[2K{text}")
        self.stream.flush()


@contextmanager
def progress_bar(stream: IO[str]) -> Iterator[Any]:
    """A callback that redraws the bar on an interactive ``stream``; None elsewhere (the
    engine then makes no progress reports at all). The line is removed at the end."""
    if (not is_terminal(stream) or os.environ.get("TERM") in ("dumb", "unknown")
            or os.environ.get("TTY_INTERACTIVE") == "0"):
        yield None
        return
    bar = Bar(stream, max(20, console_width()), _colour())  # the width rich would take

    def update(p: Any) -> None:
        bar.draw(bar.line(p.dataset, p.files_done, p.files_total, p.bytes_done,
                          p.bytes_total, time.monotonic()))

    stream.write("\x1b[?25l")  # the cursor hidden while the line is redrawn
    try:
        yield update
    finally:
        stream.write("\r\x1b[2K\x1b[?25h")
        stream.flush()
