"""Run the CI templates' pipeline on this machine: gitlab-ci-local (shell executor) drives
the real job scripts, buildah builds into a private vfs store, and a CNCF distribution
registry on 127.0.0.1 receives the images. Shared by the pipeline tests and
bench/bench_pipeline.py; no pytest here.

No base image can be pulled here, so the base is assembled from this machine's own
binaries (dash, head, mkdir, cat, sha256sum and the libraries they load) and pushed
with mmerep.registry: enough for a Dockerfile with RUN steps.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmerep.cipipeline import render_gitlab_ci
from mmerep.paths import cache_dir
from mmerep.registry import OCI_CONFIG, Blob, RegistryClient, image_config, layer_from_files
from testkit.registry import Registry, ToolMissing, free_port  # noqa: F401  (re-exported)

REPO_ROOT = Path(__file__).resolve().parents[1]
SETUP = ".ci/setup-tools.sh"
GITLAB_CI_LOCAL_VERSION = "4.65"
PROJECT = "mme-rep"
IMAGE_NAME = "sentinel3"
BASE_REPO = "mme-rep-test/base"
BASE_BINARIES = ("/bin/dash", "/usr/bin/head", "/bin/mkdir", "/bin/cat", "/usr/bin/sha256sum")
# Variables of an outer CI must not leak into the jobs gitlab-ci-local runs.
_OUTER_PREFIXES = ("CI_", "GITLAB_", "MMEREP_", "REGISTRY_AUTH_FILE", "TRIVY_")

TEST_FLAVOUR = """\
# Test-only flavour: what a real flavour does (FROM the processor pinned by digest, add
# files, non-root user), without the network the real ones need.
ARG PROCESSOR_IMAGE
FROM ${PROCESSOR_IMAGE}
ARG PROCESSOR_IMAGE
LABEL org.opencontainers.image.title="test interactive environment" \\
      org.opencontainers.image.base.name="${PROCESSOR_IMAGE}"
COPY motd /etc/motd
USER 1000
"""

PROCESS_SH = """\
#!/bin/sh
# The test processor: reports its inputs, as a real one would process a product.
echo "sentinel3 test processor: $*"
"""


def gitlab_ci_local_candidates() -> list[Path]:
    found = shutil.which("gitlab-ci-local")
    local = cache_dir() / "npm" / "node_modules" / ".bin" / "gitlab-ci-local"
    return [local, *([Path(found)] if found else [])]


@dataclass(frozen=True)
class Tools:
    buildah: str
    gitlab_ci_local: str
    rsync: str
    git: str
    skopeo: str


def find_tools() -> Tools:
    """Every tool the pipeline needs, or ToolMissing saying how to install them."""
    paths: dict[str, str | None] = {name: shutil.which(name)
                                    for name in ("buildah", "rsync", "git", "skopeo")}
    gcl = next((p for p in gitlab_ci_local_candidates() if p.is_file()), None)
    paths["gitlab-ci-local"] = str(gcl) if gcl else None
    missing = sorted(name for name, path in paths.items() if path is None)
    if missing:
        raise ToolMissing(f"missing for the pipeline test: {', '.join(missing)}; run {SETUP} "
                          f"(apt-get: buildah rsync git skopeo; npm: gitlab-ci-local@"
                          f"{GITLAB_CI_LOCAL_VERSION} into {cache_dir() / 'npm'})")
    version = subprocess.run([str(gcl), "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    if not version.startswith(GITLAB_CI_LOCAL_VERSION + "."):
        raise ToolMissing(f"gitlab-ci-local {version or '?'} at {gcl}; the pipeline test is "
                          f"pinned to {GITLAB_CI_LOCAL_VERSION}.x: run {SETUP}")
    return Tools(buildah=str(paths["buildah"]), gitlab_ci_local=str(gcl),
                 rsync=str(paths["rsync"]), git=str(paths["git"]), skopeo=str(paths["skopeo"]))


def _libraries(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) > parts.index("=>") + 1:
            libs.append(parts[parts.index("=>") + 1])
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])  # the dynamic loader, by the path binaries name it
    return [lib for lib in libs if lib.startswith("/")]


def push_base_image(registry: str, tag: str = "1", note: str = "") -> str:
    """A minimal base image (sh and a few tools) built from this machine's binaries;
    a ``note`` makes another image (a file holding it)."""
    files: dict[str, bytes] = {}
    for binary in BASE_BINARIES:
        target = "/bin/sh" if binary.endswith("dash") else binary
        files[target] = Path(binary).read_bytes()
        for lib in _libraries(binary):
            files[lib] = Path(lib).read_bytes()
    files["/etc/passwd"] = b"root:x:0:0:root:/root:/bin/sh\nprocessor:x:1000:0::/tmp:/bin/sh\n"
    if note:
        files["/etc/mmerep-test-note"] = note.encode()
    layer, diff_id = layer_from_files(files)
    config = json.loads(image_config([diff_id], user="0:0", entrypoint=["/bin/sh"], labels={
        "org.opencontainers.image.title": "mme-rep test base"}).data)
    # buildah checks that the history accounts for every layer.
    config["history"] = [{"created": "2025-01-01T00:00:00Z",
                          "created_by": "mme-rep pipeline test: base from host binaries"}]
    blob = Blob(OCI_CONFIG, json.dumps(config, sort_keys=True).encode())
    return RegistryClient(registry).push_image(BASE_REPO, tag, [layer], blob)


def dockerfile(payload_mb: int) -> str:
    """The test processor: base by build arg, a script, and a build step.

    ``payload_mb`` > 0 makes the build step write that much generated data, as a real
    processor's build step (compiling, fetching auxiliary tables) takes time and space.
    """
    payload = (f" && head -c {payload_mb * 1024 * 1024} /dev/urandom "
               "> /opt/processor/data/tables.bin" if payload_mb else "")
    return f"""\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
COPY process.sh /opt/processor/process.sh
RUN mkdir -p /opt/processor/data && echo built > /opt/processor/data/BUILD{payload}
LABEL org.opencontainers.image.title="{IMAGE_NAME} test processor"
USER 1000
ENTRYPOINT ["/opt/processor/process.sh"]
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True, env=_clean_env()).stdout.strip()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_OUTER_PREFIXES)}


def gitlab_ci_yml(kind: str, *, registry: str, flavours: list[str], scan: bool,
                  severity: str, base_ref: str, tls_verify: bool = False) -> str:
    """The processor repository's `.gitlab-ci.yml`, as `render_gitlab_ci` writes it, with
    the include pointed at the local copy of ci_templates/ (gitlab-ci-local cannot fetch
    include:project or include:component from a GitLab server)."""
    if kind == "plain":
        document = yaml.safe_load(render_gitlab_ci(
            flavours, registry=registry, project=PROJECT, image_name=IMAGE_NAME, scan=scan,
            severity=severity))
        document["include"] = [{"local": "ci_templates/mme-rep.gitlab-ci.yml"}]
        document["variables"].update(MMEREP_FLAVOUR_DIR="flavours",
                                     MMEREP_BUILD_ARGS=f"BASE_IMAGE={base_ref}",
                                     MMEREP_TLS_VERIFY="true" if tls_verify else "false")
        return yaml.safe_dump(document, sort_keys=False)
    if kind == "component":
        document = yaml.safe_load(render_gitlab_ci(
            flavours, registry=registry, project=PROJECT, image_name=IMAGE_NAME, scan=scan,
            severity=severity, component_ref="gitlab.example.org/mme-rep/ci/mme-rep@1.0.0"))
        inputs = document["include"][0]["inputs"]
        inputs.update(flavour_dir="flavours", build_args=f"BASE_IMAGE={base_ref}",
                      tls_verify="true" if tls_verify else "false")
        document["include"] = [{"local": "ci_templates/component/template.yml",
                                "inputs": inputs}]
        return yaml.safe_dump(document, sort_keys=False)
    raise ValueError(kind)


def make_processor_repo(path: Path, ci_yml: str, *, payload_mb: int = 0) -> Path:
    """A processor's git repository: Dockerfile, script, test flavour, CI config, templates."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO_ROOT / "ci_templates", path / "ci_templates", dirs_exist_ok=True)
    (path / "Dockerfile").write_text(dockerfile(payload_mb))
    (path / "process.sh").write_text(PROCESS_SH)
    (path / "process.sh").chmod(0o755)
    (path / "README.md").write_text("A test processor.\n")
    flavour = path / "flavours" / "interactive"
    flavour.mkdir(parents=True, exist_ok=True)
    (flavour / "Containerfile").write_text(TEST_FLAVOUR)
    (flavour / "motd").write_text("Welcome to the test interactive environment.\n")
    (path / ".gitlab-ci.yml").write_text(ci_yml)
    (path / ".gitignore").write_text(".gitlab-ci-local/\n")
    _git(path, "init", "-q", "-b", "main")
    _git(path, "config", "user.email", "ci-test@mme-rep.invalid")
    _git(path, "config", "user.name", "mme-rep pipeline test")
    commit(path, "processor")
    return path


def commit(repo: Path, message: str) -> str:
    """Commit everything; returns the short SHA (what the pipeline tags with)."""
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return short_sha(repo)


def short_sha(repo: Path) -> str:
    """$CI_COMMIT_SHORT_SHA of the repository's HEAD (8 characters, as GitLab)."""
    return _git(repo, "rev-parse", "--short=8", "HEAD")


def clone(repo: Path, target: Path) -> Path:
    """A copy of the processor repository (its own gitlab-ci-local state)."""
    subprocess.run(["git", "clone", "-q", str(repo), str(target)], check=True,
                   capture_output=True, env=_clean_env())
    _git(target, "config", "user.email", "ci-test@mme-rep.invalid")
    _git(target, "config", "user.name", "mme-rep pipeline test")
    return target


def safe_job_name(job: str) -> str:
    """gitlab-ci-local's directory name for a job (``Utils.safeDockerString``)."""
    return re.sub(r"[^\w-]+", lambda m: base64.urlsafe_b64encode(m.group().encode())
                  .decode().rstrip("="), job)


@dataclass
class PipelineResult:
    returncode: int
    seconds: float
    output: str
    repo: Path

    def artifact(self, job: str, name: str) -> Path:
        """A file the job exported as an artifact."""
        return self.repo / ".gitlab-ci-local" / "artifacts" / safe_job_name(job) / name

    def job_log(self, job: str) -> str:
        path = self.repo / ".gitlab-ci-local" / "output" / f"{safe_job_name(job)}.log"
        return path.read_text() if path.exists() else ""


def run_pipeline(repo: Path, tools: Tools, *, storage: Path,
                 variables: dict[str, str] | None = None, extra_path: Path | None = None,
                 timeout: float = 600) -> PipelineResult:
    """Run the repository's pipeline with gitlab-ci-local's shell executor.

    Every job runs in its own copy of the repository (--shell-isolation); buildah keeps
    its images and layer cache in ``storage`` (vfs), shared by the jobs and across runs.
    """
    (storage / "tmp").mkdir(parents=True, exist_ok=True)
    variables = {"MMEREP_BUILDAH_ROOT": str(storage / "root"),
                 "MMEREP_BUILDAH_RUNROOT": str(storage / "runroot"),
                 "TMPDIR": str(storage / "tmp"),
                 **(variables or {})}
    cmd = [tools.gitlab_ci_local, "--force-shell-executor", "--shell-isolation",
           "--no-artifacts-to-source", "--no-color", "--home", str(storage / "gcl-home")]
    for key, value in variables.items():
        cmd += ["--variable", f"{key}={value}"]
    env = _clean_env()
    if extra_path is not None:
        env["PATH"] = f"{extra_path}{os.pathsep}{env.get('PATH', '')}"
    (storage / "gcl-home").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)
    seconds = time.perf_counter() - start
    return PipelineResult(proc.returncode, seconds, proc.stdout + proc.stderr, repo)


def read_dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def fetch_json(registry: str, repo: str, reference: str, what: str = "manifests",
               accept: str = "application/vnd.oci.image.manifest.v1+json") -> Any:
    """A manifest (by tag or digest) or a blob (``what="blobs"``) as JSON."""
    client = RegistryClient(registry)
    resp = client.session.get(f"{client.base}/v2/{repo}/{what}/{reference}",
                              headers={"Accept": accept}, timeout=client.timeout)
    resp.raise_for_status()
    return resp.json()


def image_config_of(registry: str, repo: str, reference: str) -> dict[str, Any]:
    manifest = fetch_json(registry, repo, reference)
    config: dict[str, Any] = fetch_json(registry, repo, manifest["config"]["digest"], "blobs")
    return config


@dataclass
class PipelineRun:
    """What one pipeline run of the test processor left behind (the `pipeline_run` fixture)."""

    registry: str              # host:port of the registry on 127.0.0.1
    repos: dict[str, str]      # kind -> repository: "processor" -> mme-rep/processor/sentinel3
    tags: list[str]            # published tags ($CI_COMMIT_SHORT_SHA)
    digests: dict[str, str]    # kind -> sha256:... from build.env
    build_env: dict[str, str]  # the publish job's build.env, as is
    base_digest: str           # the test base image the processor is built FROM
    result: PipelineResult
    extra: dict[str, Any] = field(default_factory=dict)

    def reference(self, kind: str, tag: str | None = None) -> str:
        return f"{self.registry}/{self.repos[kind]}:{tag or self.tags[0]}"


def repository(kind: str) -> str:
    return f"{PROJECT}/{kind}/{IMAGE_NAME}"
