"""CI pipeline wall time: first run (empty buildah store) vs a rebuild with the Dockerfile
unchanged (same store, so buildah's layer cache is reused), twice:
  rerun:       the same commit built again (a retried pipeline): every step cached
  docs commit: a new commit touching only README.md: the processor's layers are cached,
               but its revision label changes, so its digest does, and the flavour built
               FROM that digest is rebuilt

The pipeline is the one the CI templates define, run by gitlab-ci-local's shell
executor (tests/pipeline/harness.py): build processor, build the "interactive" flavour
FROM it by digest, publish (scan off: Trivy is not installable here). Two processors:
  small:      base + script + a trivial RUN (the pipeline test's image)
  with data:  the same plus a build step writing PAYLOAD_MB of generated tables, standing
              in for the compile/fetch steps real processor builds spend their time on
Target: the rebuild (rerun) at least 3x faster than the first run.

    .venv/bin/python bench/bench_pipeline.py [PAYLOAD_MB [ROUNDS]]   (medians of ROUNDS)
"""

from __future__ import annotations

import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pipeline import harness

PAYLOAD_MB = 256


def job_seconds(output: str) -> float:
    """The jobs' own time (gitlab-ci-local's "finished in N ms|s" per job), without the
    runner's fixed cost of parsing, copying the repository and handling artifacts."""
    total = 0.0
    for value, unit in re.findall(r"^\S+\s+finished in ([\d.]+) (ms|s)$", output, re.M):
        total += float(value) / (1000 if unit == "ms" else 1)
    return total


def _pipelines(name: str, payload_mb: int, tools: harness.Tools, registry: harness.Registry,
               base: str, work: Path) -> tuple[float, float, float, int, float, float]:
    """First run, same-commit rerun, docs-only commit: wall seconds, cached steps, and the
    jobs' own seconds for the first run and the rerun."""
    ci_yml = harness.gitlab_ci_yml("plain", registry=registry.address,
                                   flavours=["interactive"], scan=False, severity="CRITICAL",
                                   base_ref=f"{registry.address}/{harness.BASE_REPO}@{base}")
    repo = harness.make_processor_repo(work / name, ci_yml, payload_mb=payload_mb)
    storage = work / f"{name}-storage"
    try:
        first = harness.run_pipeline(repo, tools, storage=storage)
        rerun = harness.run_pipeline(repo, tools, storage=storage)
        (repo / "README.md").write_text("A test processor, documented better.\n")
        harness.commit(repo, "docs only")
        docs = harness.run_pipeline(repo, tools, storage=storage)
        cached = sum(1 for line in rerun.output.splitlines()
                     if line.startswith("mmerep:build:processor") and "Using cache" in line)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        shutil.rmtree(work / name, ignore_errors=True)
    for what, result in (("first pipeline", first), ("rerun", rerun), ("docs commit", docs)):
        if result.returncode != 0:
            raise RuntimeError(f"{name}: {what} failed:\n{result.output[-3000:]}")
    return (first.seconds, rerun.seconds, docs.seconds, cached, job_seconds(first.output),
            job_seconds(rerun.output))


def _rows(name: str, runs: list[tuple[float, float, float, int, float, float]]
          ) -> list[dict[str, object]]:
    first, rerun, docs = (statistics.median(r[i] for r in runs) for i in range(3))
    jobs_first, jobs_rerun = (statistics.median(r[i] for r in runs) for i in (4, 5))
    return [
        {"case": f"{name}: first run (empty store)", "median_s": round(first, 2),
         "ratio": 1.0, "rounds": len(runs)},
        {"case": f"{name}: rebuild, same commit", "median_s": round(rerun, 2),
         "speedup": round(first / rerun, 2), "cached_steps": runs[0][3], "target": ">=3"},
        {"case": f"{name}: rebuild, docs-only commit", "median_s": round(docs, 2),
         "speedup": round(first / docs, 2)},
        {"case": f"{name}: jobs' own time, first run vs rebuild",
         "first_s": round(jobs_first, 2), "rebuild_s": round(jobs_rerun, 2),
         "speedup": round(jobs_first / jobs_rerun, 2) if jobs_rerun else None},
    ]


def run(payload_mb: int = PAYLOAD_MB, rounds: int = 3) -> list[dict[str, object]]:
    tools = harness.find_tools()
    cases = {"small": 0, f"with {payload_mb} MB data": payload_mb}
    with tempfile.TemporaryDirectory(prefix="mmerep-bench-pipeline-") as tmp:
        work = Path(tmp)
        with harness.Registry(work / "registry") as registry:
            base = harness.push_base_image(registry.address)
            runs: dict[str, list[tuple[float, float, float, int, float, float]]] = {
                c: [] for c in cases}
            for i in range(rounds):  # interleaved, so machine load spreads over both
                for case, payload in cases.items():
                    runs[case].append(_pipelines(f"{case.split()[0]}-{i}", payload, tools,
                                                 registry, base, work))
    return [row for case in cases for row in _rows(case, runs[case])]


if __name__ == "__main__":
    payload = int(sys.argv[1]) if len(sys.argv) > 1 else PAYLOAD_MB
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for row in run(payload, rounds):
        print("  ".join(f"{k}={v}" for k, v in row.items()))
