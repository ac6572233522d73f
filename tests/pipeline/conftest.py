"""Pipeline tier: the CI templates' pipeline run by gitlab-ci-local on this machine.

One registry (CNCF distribution on 127.0.0.1) and one buildah store (vfs, in a temp
dir) per session; `pipeline_run` is one successful pipeline of a small test processor
(plain include, flavour "interactive", scan off: Trivy cannot be installed here). There
is no skip: a missing tool fails every test with what to install (.ci/setup-tools.sh).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit import pipeline as harness
from testkit.pipeline import PipelineRun, Registry, Tools

# Set as CI variables for the run; the test checks that no job log shows it.
SECRET_PASSWORD = "s3cr3t-Pa55w0rd-never-printed"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pipeline: runs the CI templates' pipeline with gitlab-ci-local and buildah")


@pytest.fixture(scope="session")
def tools() -> Tools:
    try:
        return harness.find_tools()
    except harness.ToolMissing as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def pipeline_workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("pipeline")
    try:
        yield work
    finally:
        # The vfs store holds full copies of every layer: do not leave it to pytest's
        # retention of old temp dirs.
        shutil.rmtree(work / "storage", ignore_errors=True)


@pytest.fixture(scope="session")
def registry(tools: Tools, pipeline_workdir: Path) -> Iterator[Registry]:
    try:
        reg = Registry(pipeline_workdir / "registry")
    except harness.ToolMissing as exc:
        problem = str(exc)
    else:
        with reg:
            yield reg
        return
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def base_digest(registry: Registry) -> str:
    return harness.push_base_image(registry.address)


@pytest.fixture(scope="session")
def storage(pipeline_workdir: Path) -> Path:
    """buildah's store, shared by every pipeline of the session (its layer cache too)."""
    return pipeline_workdir / "storage"


def base_reference(registry: Registry, digest: str) -> str:
    return f"{registry.address}/{harness.BASE_REPO}@{digest}"


def fail_with_log(result: harness.PipelineResult, what: str) -> None:
    tail = "\n".join(result.output.splitlines()[-60:])
    pytest.fail(f"{what} (gitlab-ci-local exited {result.returncode}):\n{tail}", pytrace=False)


@pytest.fixture(scope="session")
def pipeline_run(tools: Tools, registry: Registry, base_digest: str, storage: Path,
                 pipeline_workdir: Path) -> PipelineRun:
    """One successful pipeline: processor + interactive built, pushed and tagged.

    Fields: registry (host:port), repos (kind -> repository), tags ([short SHA]),
    digests (kind -> sha256:...), build_env (the publish job's build.env).
    """
    ci_yml = harness.gitlab_ci_yml("plain", registry=registry.address, flavours=["interactive"],
                                   scan=False, severity="CRITICAL",
                                   base_ref=base_reference(registry, base_digest))
    repo = harness.make_processor_repo(pipeline_workdir / "processor", ci_yml)
    short_sha = harness.short_sha(repo)
    result = harness.run_pipeline(repo, tools, storage=storage, variables={
        "MMEREP_REGISTRY_USER": "ci-bot", "MMEREP_REGISTRY_PASSWORD": SECRET_PASSWORD})
    if result.returncode != 0:
        fail_with_log(result, "the pipeline failed")
    env_file = result.artifact("mmerep:publish", "build.env")
    if not env_file.is_file():
        fail_with_log(result, f"the publish job left no build.env artifact ({env_file})")
    build_env = harness.read_dotenv(env_file)
    kinds = ["processor", "interactive"]
    return PipelineRun(
        registry=registry.address,
        repos={kind: harness.repository(kind) for kind in kinds},
        tags=[short_sha],
        digests={kind: build_env.get(f"{kind.upper()}_DIGEST", "") for kind in kinds},
        build_env=build_env, base_digest=base_digest, result=result,
        extra={"repo": repo, "storage": storage, "password": SECRET_PASSWORD})
