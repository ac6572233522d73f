"""The CI templates' pipeline, run for real: gitlab-ci-local runs the jobs with the
shell executor, buildah builds into a private vfs store, images land in a registry on
127.0.0.1. Trivy cannot be installed here: the main run has scan off, and the gating
of publish by the scan job is tested with a stand-in `trivy` that reports a finding.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmerep.registry import RegistryClient
from testkit import pipeline as harness
from testkit.pipeline import PipelineRun, Registry, Tools
from tests.pipeline.conftest import base_reference, fail_with_log

pytestmark = pytest.mark.pipeline

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def test_pipeline_runs_build_and_publish_jobs(pipeline_run: PipelineRun) -> None:
    out = pipeline_run.result.output
    for job in ("mmerep:build:processor", "mmerep:build:interactive", "mmerep:publish"):
        assert re.search(rf"PASS\s+(\[.*?\]\s+)?{re.escape(job)}\b", out), job
    # Not enabled: no job for them.
    for job in ("mmerep:scan", "mmerep:build:htcondor-batch", "mmerep:build:jupyter"):
        assert job not in out, job


def test_build_env_holds_the_digests(pipeline_run: PipelineRun) -> None:
    env = pipeline_run.build_env
    for kind, prefix in (("processor", "PROCESSOR"), ("interactive", "INTERACTIVE")):
        assert DIGEST.fullmatch(env[f"{prefix}_DIGEST"]), env
        assert env[f"{prefix}_IMAGE"] == (f"{pipeline_run.registry}/"
                                          f"{pipeline_run.repos[kind]}@{env[f'{prefix}_DIGEST']}")
    assert env["MMEREP_TAGS"] == pipeline_run.tags[0]
    # Each build job's own dotenv report carries its digest to the later jobs.
    report = pipeline_run.result.artifact("mmerep:build:processor",
                                          ".gitlab-ci-reports/dotenv/build.env")
    assert harness.read_dotenv(report)["PROCESSOR_DIGEST"] == env["PROCESSOR_DIGEST"]


def test_published_tags_resolve_to_the_build_env_digests(pipeline_run: PipelineRun) -> None:
    client = RegistryClient(pipeline_run.registry)
    (tag,) = pipeline_run.tags
    assert len(tag) == 8
    for kind, repo in pipeline_run.repos.items():
        assert client.resolve(repo, tag) == pipeline_run.digests[kind]
        assert tag in client.tags(repo)


def test_flavour_is_built_from_the_processor_digest(pipeline_run: PipelineRun) -> None:
    reg, repos, digests = pipeline_run.registry, pipeline_run.repos, pipeline_run.digests
    processor = harness.image_config_of(reg, repos["processor"], digests["processor"])
    flavour = harness.image_config_of(reg, repos["interactive"], digests["interactive"])
    pinned = f"{reg}/{repos['processor']}@{digests['processor']}"
    assert flavour["config"]["Labels"]["org.opencontainers.image.base.name"] == pinned
    # Same layers underneath: the flavour's first layers are exactly the processor's.
    base_layers = processor["rootfs"]["diff_ids"]
    assert flavour["rootfs"]["diff_ids"][:len(base_layers)] == base_layers
    assert len(flavour["rootfs"]["diff_ids"]) > len(base_layers)
    assert flavour["config"]["User"] == "1000"
    # And the processor is built FROM the test's own base image.
    base = harness.image_config_of(reg, harness.BASE_REPO, pipeline_run.base_digest)
    assert base_layers[:1] == base["rootfs"]["diff_ids"]
    labels = processor["config"]["Labels"]
    assert labels["org.opencontainers.image.revision"].startswith(pipeline_run.tags[0])


def test_credentials_are_used_but_never_printed(pipeline_run: PipelineRun) -> None:
    out = pipeline_run.result.output
    assert "registry credentials for" in out
    password = pipeline_run.extra["password"]
    logs = out + "".join(pipeline_run.result.job_log(job) for job in (
        "mmerep:build:processor", "mmerep:build:interactive", "mmerep:publish"))
    assert password not in logs
    # The auth file lives only as long as its job's shell, and so do the jobs' other
    # temporary files (digest files, build contexts of embedded Containerfiles).
    assert not list((pipeline_run.extra["storage"] / "tmp").glob("mmerep-*"))


def test_rebuild_reuses_the_layer_cache(pipeline_run: PipelineRun, tools: Tools,
                                         tmp_path: Path) -> None:
    repo = harness.clone(pipeline_run.extra["repo"], tmp_path / "processor")
    (repo / "README.md").write_text("A test processor, second commit.\n")
    short_sha = harness.commit(repo, "docs only")
    result = harness.run_pipeline(repo, tools, storage=pipeline_run.extra["storage"])
    if result.returncode != 0:
        fail_with_log(result, "the rebuild failed")
    build_log = result.job_log("mmerep:build:processor")
    assert "Using cache" in build_log
    env = harness.read_dotenv(result.artifact("mmerep:publish", "build.env"))
    client = RegistryClient(pipeline_run.registry)
    assert client.resolve(pipeline_run.repos["processor"], short_sha) == env["PROCESSOR_DIGEST"]
    old = harness.image_config_of(pipeline_run.registry, pipeline_run.repos["processor"],
                                  pipeline_run.digests["processor"])
    new = harness.image_config_of(pipeline_run.registry, pipeline_run.repos["processor"],
                                  env["PROCESSOR_DIGEST"])
    # Only the revision label differs: every layer is the one built the first time.
    assert new["rootfs"]["diff_ids"] == old["rootfs"]["diff_ids"]
    # The first pipeline's tags did not move.
    assert client.resolve(pipeline_run.repos["processor"],
                          pipeline_run.tags[0]) == pipeline_run.digests["processor"]


def test_retried_pipeline_reuses_the_images_even_on_an_empty_runner(
        pipeline_run: PipelineRun, tools: Tools, tmp_path: Path) -> None:
    """The same commit again, on a runner whose buildah store is empty (as a Kubernetes
    runner's always is): every image's inputs are unchanged, so nothing is built or pushed,
    and build.env names the first pipeline's digests."""
    repo = harness.clone(pipeline_run.extra["repo"], tmp_path / "processor")
    result = harness.run_pipeline(repo, tools, storage=tmp_path / "empty-store")
    if result.returncode != 0:
        fail_with_log(result, "the retried pipeline failed")
    for kind in ("processor", "interactive"):
        log = result.job_log(f"mmerep:build:{kind}")
        assert "unchanged: " in log and "reusing " in log, log[-2000:]
        assert "STEP 1" not in log and "Copying blob" not in log, log[-2000:]
    env = harness.read_dotenv(result.artifact("mmerep:publish", "build.env"))
    assert env["PROCESSOR_DIGEST"] == pipeline_run.digests["processor"]
    assert env["INTERACTIVE_DIGEST"] == pipeline_run.digests["interactive"]
    assert not (tmp_path / "empty-store" / "root").exists(), "buildah was never run"


def test_rebuild_always_builds_and_keeps_the_tags(pipeline_run: PipelineRun, tools: Tools,
                                                  tmp_path: Path) -> None:
    """MMEREP_REBUILD=always (input rebuild): the build runs (layer cache) although an
    identical image exists; the same layers give the same digest, so no tag moves."""
    repo = harness.clone(pipeline_run.extra["repo"], tmp_path / "processor")
    result = harness.run_pipeline(repo, tools, storage=pipeline_run.extra["storage"],
                                  variables={"MMEREP_REBUILD": "always"})
    if result.returncode != 0:
        fail_with_log(result, "the forced rebuild failed")
    log = result.job_log("mmerep:build:processor")
    assert "MMEREP_REBUILD=always: building" in log and "Using cache" in log, log[-2000:]
    env = harness.read_dotenv(result.artifact("mmerep:publish", "build.env"))
    assert env["PROCESSOR_DIGEST"] == pipeline_run.digests["processor"]
    bad = harness.run_pipeline(repo, tools, storage=pipeline_run.extra["storage"],
                               variables={"MMEREP_REBUILD": "sometimes"})
    assert bad.returncode != 0
    assert "MMEREP_REBUILD is 'sometimes': use changed or always" in bad.output


def test_registry_layer_cache_serves_a_runner_with_an_empty_store(
        pipeline_run: PipelineRun, tools: Tools, tmp_path: Path) -> None:
    """layer_cache: registry. A commit builds on one empty runner and pushes its layers to
    PROJECT/buildcache/; the next commit (context changed) builds on another empty runner
    and takes every unchanged step from there."""
    repo = harness.clone(pipeline_run.extra["repo"], tmp_path / "processor")
    cache = {"MMEREP_LAYER_CACHE": "registry"}
    for n in (1, 2):
        (repo / "README.md").write_text(f"A test processor, revision {n}.\n")
        harness.commit(repo, f"docs {n}")
        result = harness.run_pipeline(repo, tools, storage=tmp_path / f"runner-{n}",
                                      variables=cache)
        if result.returncode != 0:
            fail_with_log(result, f"pipeline {n} with the registry layer cache failed")
    log = result.job_log("mmerep:build:processor")
    cache_repo = f"{pipeline_run.registry}/{harness.PROJECT}/buildcache/processor/" \
                 f"{harness.IMAGE_NAME}"
    assert f"layer cache: {cache_repo}" in log
    assert log.count(f"Cache pulled from remote {cache_repo}") >= 3, log[-3000:]
    assert "Using cache" in log
    client = RegistryClient(pipeline_run.registry)
    assert client.all_tags(f"{harness.PROJECT}/buildcache/processor/{harness.IMAGE_NAME}")
    bad = harness.run_pipeline(repo, tools, storage=tmp_path / "runner-bad",
                               variables={"MMEREP_LAYER_CACHE": "s3"})
    assert bad.returncode != 0
    assert "MMEREP_LAYER_CACHE is 's3': use local or registry" in bad.output


def test_published_tags_are_immutable(pipeline_run: PipelineRun, tools: Tools,
                                      registry: Registry, tmp_path: Path) -> None:
    """Same commit, another image (a different base): publish refuses to move the tag."""
    repo = harness.clone(pipeline_run.extra["repo"], tmp_path / "processor")
    assert harness.short_sha(repo) == pipeline_run.tags[0]
    other_base = harness.push_base_image(registry.address, tag="2", note="another base")
    result = harness.run_pipeline(repo, tools, storage=pipeline_run.extra["storage"],
                                  variables={"MMEREP_BUILD_ARGS": "BASE_IMAGE="
                                             + base_reference(registry, other_base)})
    assert result.returncode != 0, result.output[-3000:]
    assert re.search(r"PASS\s+mmerep:build:processor", result.output)
    assert re.search(r"FAIL\s+mmerep:publish", result.output)
    assert "published tags are immutable" in result.output
    client = RegistryClient(pipeline_run.registry)
    for kind, repo_name in pipeline_run.repos.items():
        assert client.resolve(repo_name, pipeline_run.tags[0]) == pipeline_run.digests[kind]


def test_scan_failure_stops_publishing(pipeline_run: PipelineRun, tools: Tools,
                                       tmp_path: Path) -> None:
    """scan on, severity HIGH: a finding fails the scan job and nothing is published."""
    stub = tmp_path / "bin"
    stub.mkdir()
    calls = tmp_path / "trivy-calls"
    (stub / "trivy").write_text(f"""#!/bin/sh
# Stand-in for Trivy (not installable here): records its arguments, reports a finding.
echo "$@" >> {calls}
echo "Total: 1 (HIGH: 1, CRITICAL: 0)"
exit 1
""")
    (stub / "trivy").chmod(0o755)
    repo = harness.clone(pipeline_run.extra["repo"], tmp_path / "processor")
    ci = (repo / ".gitlab-ci.yml").read_text()
    (repo / ".gitlab-ci.yml").write_text(ci.replace("MMEREP_SCAN: 'false'", "MMEREP_SCAN: 'true'")
                                         .replace("MMEREP_SEVERITY: CRITICAL",
                                                  "MMEREP_SEVERITY: HIGH"))
    short_sha = harness.commit(repo, "scan on")
    result = harness.run_pipeline(repo, tools, storage=pipeline_run.extra["storage"],
                                  extra_path=stub)
    assert result.returncode != 0, result.output[-3000:]
    assert re.search(r"FAIL\s+mmerep:scan", result.output)
    assert not re.search(r"PASS\s+mmerep:publish", result.output)
    args = calls.read_text().splitlines()
    assert args and "--severity HIGH,CRITICAL" in args[0] and "--exit-code 1" in args[0]
    assert "--insecure" in args[0]
    assert f"{pipeline_run.registry}/{pipeline_run.repos['processor']}@sha256:" in args[0]
    client = RegistryClient(pipeline_run.registry)
    assert short_sha not in client.tags(pipeline_run.repos["processor"])


def test_component_runs_the_same_pipeline(pipeline_run: PipelineRun, tools: Tools,
                                          registry: Registry, tmp_path: Path) -> None:
    """The CI/CD component (spec:inputs), included locally with inputs, does the same."""
    repo = harness.clone(pipeline_run.extra["repo"], tmp_path / "processor")
    (repo / ".gitlab-ci.yml").write_text(harness.gitlab_ci_yml(
        "component", registry=registry.address, flavours=["interactive"], scan=False,
        severity="CRITICAL", base_ref=base_reference(registry, pipeline_run.base_digest)))
    short_sha = harness.commit(repo, "component include")
    result = harness.run_pipeline(repo, tools, storage=pipeline_run.extra["storage"])
    if result.returncode != 0:
        fail_with_log(result, "the component pipeline failed")
    env = harness.read_dotenv(result.artifact("mmerep:publish", "build.env"))
    client = RegistryClient(pipeline_run.registry)
    for kind, repo_name in pipeline_run.repos.items():
        assert client.resolve(repo_name, short_sha) == env[f"{kind.upper()}_DIGEST"]
    assert "mmerep:scan" not in result.output


def test_real_flavour_containerfile_is_used(pipeline_run: PipelineRun, tools: Tools,
                                            tmp_path: Path) -> None:
    """Without MMEREP_FLAVOUR_DIR the embedded htcondor-batch Containerfile is built, FROM
    the processor digest. It needs a package manager (and HTCondor's repository), which the
    test base lacks: it must fail at its RUN step with a message that says so."""
    repo = harness.clone(pipeline_run.extra["repo"], tmp_path / "processor")
    ci = (repo / ".gitlab-ci.yml").read_text()
    assert "MMEREP_FLAVOURS: interactive" in ci and "MMEREP_FLAVOUR_DIR: flavours" in ci
    (repo / ".gitlab-ci.yml").write_text(ci.replace("MMEREP_FLAVOURS: interactive",
                                                    "MMEREP_FLAVOURS: htcondor-batch")
                                         .replace("MMEREP_FLAVOUR_DIR: flavours",
                                                  "MMEREP_FLAVOUR_DIR: ''"))
    harness.commit(repo, "real htcondor-batch flavour")
    result = harness.run_pipeline(repo, tools, storage=pipeline_run.extra["storage"])
    assert result.returncode != 0
    log = result.job_log("mmerep:build:htcondor-batch")
    processor = f"{pipeline_run.registry}/{pipeline_run.repos['processor']}@sha256:"
    assert re.search(rf"STEP 1/\d+: FROM {re.escape(processor)}[0-9a-f]{{64}}", log), log[-2000:]
    assert "LABEL org.opencontainers.image.title=\"mme-rep htcondor-batch environment\"" in log
    assert "htcondor-batch: the processor image needs apt-get or dnf" in log
    assert re.search(r"FAIL\s+mmerep:build:htcondor-batch", result.output)
