"""CI pipeline time: first run (empty buildah store) against three rebuilds with the
Dockerfile unchanged:
  rerun:          the same commit again, same store (a retried pipeline on a shell runner)
  rerun, empty:   the same commit again on an empty store (a Kubernetes runner's pod)
  docs commit:    a new commit touching only README.md: the context changed, so the build
                  runs, with buildah's layer cache (same store); the processor's revision
                  label changes, so its digest does and the flavour is rebuilt too
In the reruns the build jobs find their build key's tag in the registry and build and
push nothing.

The pipeline is the one the CI templates define, run by gitlab-ci-local's shell
executor (testkit/pipeline.py): build processor, build the "interactive" flavour
FROM it by digest, publish (scan off: Trivy is not installable here). Two processors:
  small:      base + script + a trivial RUN (the pipeline test's image)
  with data:  the same plus a build step writing PAYLOAD_MB of generated tables, standing
              in for the compile/fetch steps real processor builds spend their time on
Two times per run:
  wall:       the gitlab-ci-local process, which adds ~0.9 s of its own per pipeline
              (Node start-up, reading the YAML, JSON-schema validation)
  duration:   what GitLab reports as the pipeline's duration: its jobs' run time,
              artifact upload and download included (the jobs run one after another)
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

from testkit import pipeline as harness

PAYLOAD_MB = 256


CASES = ("first", "rerun", "rerun_empty", "docs")
LABELS = {"first": "first run (empty store)", "rerun": "rebuild, same commit",
          "rerun_empty": "rebuild, same commit, empty store",
          "docs": "rebuild, docs-only commit (layer cache)"}


def duration(output: str) -> float:
    """The pipeline's duration as GitLab counts it: each job's run time ("finished in")
    plus its artifact upload and download, without gitlab-ci-local's own start-up."""
    total = 0.0
    # Job lines start with the job's name; "pipeline finished in" is gitlab-ci-local's total.
    pattern = (r"^(?!pipeline )\S+\s+(?:finished|exported artifacts|imported artifacts)"
               r" in ([\d.]+) (ms|s)$")
    for value, unit in re.findall(pattern, output, re.M):
        total += float(value) / (1000 if unit == "ms" else 1)
    return total


def _pipelines(name: str, payload_mb: int, tools: harness.Tools, registry: harness.Registry,
               base: str, work: Path) -> dict[str, tuple[float, float]]:
    """(wall, duration) seconds of each case."""
    ci_yml = harness.gitlab_ci_yml("plain", registry=registry.address,
                                   flavours=["interactive"], scan=False, severity="CRITICAL",
                                   base_ref=f"{registry.address}/{harness.BASE_REPO}@{base}")
    repo = harness.make_processor_repo(work / name, ci_yml, payload_mb=payload_mb)
    storage = work / f"{name}-storage"
    results = {}
    try:
        results["first"] = harness.run_pipeline(repo, tools, storage=storage)
        results["rerun"] = harness.run_pipeline(repo, tools, storage=storage)
        results["rerun_empty"] = harness.run_pipeline(repo, tools,
                                                      storage=work / f"{name}-empty")
        (repo / "README.md").write_text("A test processor, documented better.\n")
        harness.commit(repo, "docs only")
        results["docs"] = harness.run_pipeline(repo, tools, storage=storage)
    finally:
        for path in (storage, work / f"{name}-empty", work / name):
            shutil.rmtree(path, ignore_errors=True)
    for case, result in results.items():
        if result.returncode != 0:
            raise RuntimeError(f"{name}: {case} failed:\n{result.output[-3000:]}")
    if "unchanged: " not in results["rerun_empty"].output:
        raise RuntimeError(f"{name}: the rerun on an empty store rebuilt")
    if "Using cache" not in results["docs"].output:
        raise RuntimeError(f"{name}: the docs-only commit did not use the layer cache")
    return {case: (r.seconds, duration(r.output)) for case, r in results.items()}


def _rows(name: str, runs: list[dict[str, tuple[float, float]]]) -> list[dict[str, object]]:
    med = {case: [statistics.median(r[case][i] for r in runs) for i in (0, 1)]
           for case in CASES}
    rows: list[dict[str, object]] = []
    for case in CASES:
        wall, dur = med[case]
        row: dict[str, object] = {"case": f"{name}: {LABELS[case]}", "wall_s": round(wall, 2),
                                  "duration_s": round(dur, 2)}
        if case != "first":
            row["wall_speedup"] = round(med["first"][0] / wall, 2)
            row["duration_speedup"] = round(med["first"][1] / dur, 2)
        if case == "rerun":
            row["target"] = ">=3"
        row["rounds"] = len(runs)
        rows.append(row)
    return rows


def run(payload_mb: int = PAYLOAD_MB, rounds: int = 3) -> list[dict[str, object]]:
    tools = harness.find_tools()
    cases = {"small": 0, f"with {payload_mb} MB data": payload_mb}
    with tempfile.TemporaryDirectory(prefix="mmerep-bench-pipeline-") as tmp:
        work = Path(tmp)
        with harness.Registry(work / "registry") as registry:
            base = harness.push_base_image(registry.address)
            runs: dict[str, list[dict[str, tuple[float, float]]]] = {c: [] for c in cases}
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
