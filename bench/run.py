"""Run every benchmark and print ratios against baselines measured in the same run.

    ./mme-rep.sh bench            # all of them
    ./mme-rep.sh bench startup    # only the named ones
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # testkit

import bench_cluster
import bench_console
import bench_env
import bench_monitor
import bench_pipeline
import bench_provisioner
import bench_reads
import bench_scale
import bench_ssh
import bench_startup
import bench_synclocal

BENCHMARKS = {
    "startup": bench_startup.run,
    "cluster": bench_cluster.run,
    "env": bench_env.run,
    "reads": bench_reads.run,
    "pipeline": bench_pipeline.run,
    "scale": bench_scale.run,
    "monitor": bench_monitor.run,
    "synclocal": lambda: bench_synclocal.run(False),
    "synclocal-quick": lambda: bench_synclocal.run(True),
    "provisioner": bench_provisioner.run,
    "ssh": bench_ssh.run,
    "console": bench_console.run,
}


def set_up() -> None:
    """What the baselines need (rsync, nc, buildah, Chromium, ...: the test command's
    .ci/setup-tools.sh) and the local cluster's binaries: on a fresh machine a benchmark
    would otherwise report its baseline unavailable. Neither is fatal: a benchmark whose
    baseline is missing says so in its row."""
    root = Path(__file__).resolve().parents[1]
    if subprocess.run(["bash", str(root / ".ci" / "setup-tools.sh")]).returncode != 0:
        print("bench: some baseline tools are missing; their rows will say unavailable",
              file=sys.stderr)
    if subprocess.run([sys.executable, "-m", "mmerep", "cluster", "build"],
                      stdout=sys.stderr).returncode != 0:
        print("bench: the cluster binaries are not built; cluster benchmarks will fail",
              file=sys.stderr)


def main(argv: list[str]) -> int:
    if argv[:1] == ["synclocal"] and argv[1:2] and argv[1].startswith("-"):
        # Options for that benchmark alone (`bench synclocal --case small --repeat 5`):
        # its own table and ratios.
        set_up()
        sys.argv = ["bench_synclocal.py", *argv[1:]]
        bench_synclocal.main()
        return 0
    chosen = argv or [n for n in BENCHMARKS if n != "synclocal-quick"]
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    set_up()
    for name in chosen:
        print(f"== {name}")
        for row in BENCHMARKS[name]():
            print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
