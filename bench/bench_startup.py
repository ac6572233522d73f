"""CLI start-up: `mme-rep --help` against `python -c pass` (target: under 3x).

The commands are run interleaved, round after round, and each one's median is taken:
the machine's load drifts, and interleaving spreads the drift over all of them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "mme-rep --help": [sys.executable, "-m", "mmerep", "--help"],
    "mme-rep --version": [sys.executable, "-m", "mmerep", "--version"],
    # The floor any typer CLI pays: the framework's own import.
    "python -c 'import typer' (floor)": [sys.executable, "-c", "import typer"],
}


def _once(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def run(rounds: int = 25) -> list[dict[str, object]]:
    for cmd in CASES.values():  # warm the file cache and the .pyc files
        _once(cmd)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(rounds):
        for name, cmd in CASES.items():
            times[name].append(_once(cmd))
    medians = {name: statistics.median(t) for name, t in times.items()}
    baseline = medians["python -c pass"]
    rows: list[dict[str, object]] = []
    for name, value in medians.items():
        row: dict[str, object] = {"case": name, "median_ms": round(value * 1000, 1),
                                  "ratio": round(value / baseline, 2)}
        if name == "mme-rep --help":
            row["target"] = "<3"
        rows.append(row)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
