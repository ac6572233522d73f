"""CLI start-up: `mme-rep --help` against `python -c pass` (target: under 3x)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def _best(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(runs: int = 15) -> list[dict[str, object]]:
    _best([sys.executable, "-m", "mmerep", "--help"], 2)  # warm the file cache and .pyc
    baseline = _best([sys.executable, "-c", "pass"], runs)
    helped = _best([sys.executable, "-m", "mmerep", "--help"], runs)
    version = _best([sys.executable, "-m", "mmerep", "--version"], runs)
    # The floor any typer CLI pays: the framework's own import.
    floor = _best([sys.executable, "-c", "import typer"], runs)
    return [
        {"case": "python -c pass", "median_ms": round(baseline * 1000, 1), "ratio": 1.0},
        {"case": "mme-rep --help", "median_ms": round(helped * 1000, 1),
         "ratio": round(helped / baseline, 2), "target": "<3"},
        {"case": "mme-rep --version", "median_ms": round(version * 1000, 1),
         "ratio": round(version / baseline, 2)},
        {"case": "python -c 'import typer' (floor)", "median_ms": round(floor * 1000, 1),
         "ratio": round(floor / baseline, 2)},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
