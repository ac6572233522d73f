"""The GitLab CI templates and `render_gitlab_ci`, as data: GitLab's CI JSON schema, the
component's `spec:inputs` header, the embedded job scripts, the flavour Containerfiles.

The schema is GitLab's own `ci.json` as bundled by gitlab-ci-local 4.65.1 (see
tests/data/README.md). The pipeline itself runs in tests/pipeline.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mmerep import cipipeline
from mmerep.cipipeline import FLAVOURS, render_gitlab_ci, write_gitlab_ci
from mmerep.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "ci_templates"
COMPONENT = TEMPLATES / "component" / "template.yml"
PLAIN = TEMPLATES / "mme-rep.gitlab-ci.yml"
SCHEMA = ROOT / "tests" / "data" / "gitlab-ci-schema.json"
JOBS = ["mmerep:build:processor", *(f"mmerep:build:{f}" for f in FLAVOURS), "mmerep:scan",
        "mmerep:publish"]
INTERPOLATION = re.compile(r"\$\[\[\s*inputs\.([\w-]+)\s*\]\]")
FLAVOUR_SETS = [list(c) for n in range(1, len(FLAVOURS) + 1)
                for c in itertools.combinations(FLAVOURS, n)]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def assert_valid(validator: jsonschema.Draft7Validator, document: Any, what: str) -> None:
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, f"{what}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors[:5])


def component_docs() -> tuple[dict[str, Any], dict[str, Any]]:
    header, body = yaml.safe_load_all(COMPONENT.read_text())
    return header, body


def interpolate(node: Any, inputs: dict[str, Any]) -> Any:
    """GitLab's `$[[ inputs.x ]]`: a whole value keeps its type, inside text it is text."""
    if isinstance(node, dict):
        return {interpolate(k, inputs): interpolate(v, inputs) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, inputs) for v in node]
    if isinstance(node, str):
        whole = INTERPOLATION.fullmatch(node.strip())
        if whole:
            return inputs[whole.group(1)]
        return INTERPOLATION.sub(lambda m: _text(inputs[m.group(1)]), node)
    return node


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def component_with(inputs: dict[str, Any]) -> dict[str, Any]:
    header, body = component_docs()
    spec = header["spec"]["inputs"]
    unknown = set(inputs) - set(spec)
    assert not unknown, f"inputs the component does not declare: {unknown}"
    values = {name: inputs.get(name, spec[name]["default"]) for name in spec}
    for name, value in values.items():
        if "options" in spec[name]:
            assert value in spec[name]["options"], (name, value)
        expected = {"string": str, "boolean": bool, "number": (int, float)}[spec[name]["type"]]
        assert isinstance(value, expected), (name, value)
    result: dict[str, Any] = interpolate(body, values)
    return result


def rule_passes(rule_if: str) -> bool:
    """The two literal forms the component's rules use, evaluated as GitLab would."""
    match = re.fullmatch(r'"([^"]*)" =~ /(.*)/', rule_if)
    if match:
        return re.search(match.group(2), match.group(1)) is not None
    match = re.fullmatch(r'"([^"]*)" == "([^"]*)"', rule_if)
    assert match, rule_if
    return match.group(1) == match.group(2)


def active_jobs(document: dict[str, Any]) -> list[str]:
    return [name for name, job in document.items()
            if not name.startswith(".") and isinstance(job, dict)
            and all(rule_passes(r["if"]) for r in job.get("rules", []))]


# --- GitLab's schema --------------------------------------------------------------

def test_the_schema_catches_mistakes(validator: jsonschema.Draft7Validator) -> None:
    assert list(validator.iter_errors({"build": {"scirpt": ["make"]}}))
    assert list(validator.iter_errors({"build": {"script": ["make"], "when": "sometimes"}}))
    assert list(validator.iter_errors({"spec": {"inputs": {"x": {"type": "list"}}}}))
    assert not list(validator.iter_errors({"build": {"script": ["make"]}}))


@pytest.mark.parametrize("path", [COMPONENT, PLAIN], ids=lambda p: p.name)
def test_every_template_document_is_valid(validator: jsonschema.Draft7Validator,
                                          path: Path) -> None:
    documents = list(yaml.safe_load_all(path.read_text()))
    assert len(documents) == (2 if path == COMPONENT else 1)
    for index, document in enumerate(documents):
        assert_valid(validator, document, f"{path.name} document {index}")


@pytest.mark.parametrize("flavours", [*cipipeline.flavour_options()])
@pytest.mark.parametrize("scan", [True, False])
def test_component_interpolated_is_valid_and_selects_jobs(
        validator: jsonschema.Draft7Validator, flavours: str, scan: bool) -> None:
    document = component_with({"flavours": flavours, "scan": scan})
    assert_valid(validator, document, f"component with flavours={flavours} scan={scan}")
    chosen = [] if flavours == "none" else flavours.split(",")
    expected = ["mmerep:build:processor", *(f"mmerep:build:{f}" for f in chosen),
                *(["mmerep:scan"] if scan else []), "mmerep:publish"]
    assert sorted(active_jobs(document)) == sorted(expected)


# --- the component's spec:inputs header --------------------------------------------

def test_component_header_is_a_separate_spec_document() -> None:
    text = COMPONENT.read_text()
    header_text, separator, _ = text.partition("\n---\n")
    assert separator, "the spec header must be separated from the jobs by ---"
    assert "$[[" not in header_text
    header, body = component_docs()
    assert list(header) == ["spec"] and list(header["spec"]) == ["inputs"]
    assert "spec" not in body


def test_component_inputs_are_typed_with_defaults() -> None:
    spec = component_docs()[0]["spec"]["inputs"]
    expected = {"registry", "project", "image_name", "dockerfile", "context", "flavours",
                "engine", "scan", "severity"}
    assert expected <= set(spec)
    for name, definition in spec.items():
        assert definition["type"] in ("string", "boolean", "number", "array"), name
        assert "default" in definition, f"{name} has no default"
        assert definition.get("description"), name
        if "options" in definition:
            assert definition["default"] in definition["options"], name
    assert spec["scan"]["type"] == "boolean" and spec["scan"]["default"] is True
    assert spec["flavours"]["options"] == cipipeline.flavour_options()
    assert spec["flavours"]["default"] == ",".join(FLAVOURS)
    assert spec["engine"]["options"] == list(cipipeline.ENGINES)
    assert spec["engine"]["default"] == "buildah"
    assert spec["severity"]["options"] == list(cipipeline.SEVERITIES)
    assert spec["severity"]["default"] == "CRITICAL"


def test_component_uses_exactly_its_inputs() -> None:
    spec = component_docs()[0]["spec"]["inputs"]
    body_text = COMPONENT.read_text().partition("\n---\n")[2]
    used = set(INTERPOLATION.findall(body_text))
    assert used == set(spec)


def test_plain_include_matches_the_component() -> None:
    """Same jobs, same wiring; inputs become MMEREP_* variables with the same defaults."""
    plain = yaml.safe_load(PLAIN.read_text())
    component = component_with({})
    spec = component_docs()[0]["spec"]["inputs"]
    assert [j for j in plain if not j.startswith(".") and j != "variables"] == JOBS
    assert [j for j in component if not j.startswith(".")] == JOBS
    variables = plain["variables"]
    for name, definition in spec.items():
        if name.startswith("stage_"):
            continue
        key = f"MMEREP_{name.upper()}"
        default = definition["default"]
        assert variables[key] == (_text(default) if isinstance(default, bool) else default), key

    def wiring(document: dict[str, Any], job: str) -> Any:
        resolved: dict[str, Any] = {}
        chain = [job]
        while "extends" in document[chain[-1]]:
            chain.append(document[chain[-1]]["extends"])
        for name in reversed(chain):
            resolved.update(document[name])
        return {k: resolved.get(k) for k in ("script", "before_script", "needs", "artifacts",
                                               "stage")}

    for job in JOBS:
        assert wiring(plain, job) == wiring(component, job), job


# --- the embedded scripts and Containerfiles ---------------------------------------

@pytest.mark.parametrize("path", [COMPONENT, PLAIN], ids=lambda p: p.name)
def test_embedded_block_is_up_to_date(path: Path) -> None:
    block = cipipeline.embedded_block(*cipipeline.read_embedded_sources(TEMPLATES))
    text = path.read_text()
    assert cipipeline.with_embedded_block(text, block) == text, (
        f"{path.name} embeds stale scripts: run `.venv/bin/python -m mmerep.cipipeline`")


def test_embedded_items_are_the_script_files() -> None:
    scripts = yaml.safe_load(PLAIN.read_text())[".mmerep-scripts"]["script"]
    for item, name in zip(scripts, cipipeline.SCRIPTS, strict=False):
        assert item == (TEMPLATES / "scripts" / f"{name}.sh").read_text(), name
    assert len(scripts) == len(cipipeline.SCRIPTS) + 1


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_embedded_containerfile_prints_the_file(flavour: str) -> None:
    function = yaml.safe_load(PLAIN.read_text())[".mmerep-scripts"]["script"][-1]
    out = subprocess.run(["sh", "-c", f"{function}\nmmerep_containerfile {flavour}"],
                         capture_output=True, text=True, check=True).stdout
    assert out == (TEMPLATES / "images" / flavour / "Containerfile").read_text()
    unknown = subprocess.run(["sh", "-c", f"{function}\nmmerep_containerfile nope"],
                             capture_output=True, text=True, check=False)
    assert unknown.returncode != 0


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize("name", cipipeline.SCRIPTS)
def test_scripts_parse(shell: str, name: str) -> None:
    assert shutil.which(shell)
    subprocess.run([shell, "-n", str(TEMPLATES / "scripts" / f"{name}.sh")], check=True)


def _sh(script: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    common = (TEMPLATES / "scripts" / "common.sh").read_text()
    return subprocess.run(["sh", "-c", f"{common}\n{script}"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), **env},
                          check=False)


def test_auth_file_from_ci_variables_never_printed(tmp_path: Path) -> None:
    password = "pa55-word-with-$-and-'quote"
    env = {"MMEREP_REGISTRY": "harbor.example.org", "MMEREP_REGISTRY_USER": "robot$ci",
           "MMEREP_REGISTRY_PASSWORD": password, "CI_JOB_ID": "42"}
    out = _sh('mmerep_auth\ncat "$REGISTRY_AUTH_FILE"\nstat -c %a "$REGISTRY_AUTH_FILE"',
              env, tmp_path)
    assert out.returncode == 0, out.stderr
    text, mode = out.stdout.rsplit("\n", 2)[0], out.stdout.split()[-1]
    auth = json.loads(text)["auths"]["harbor.example.org"]["auth"]
    assert base64.b64decode(auth).decode() == f"robot$ci:{password}"
    assert mode == "600"
    assert password not in out.stderr
    assert not list(tmp_path.glob("mmerep-auth-*")), "removed when the shell ends"


def test_auth_needs_both_or_neither(tmp_path: Path) -> None:
    none = _sh('mmerep_auth && echo "file=${REGISTRY_AUTH_FILE:-}"', {}, tmp_path)
    assert none.returncode == 0 and none.stdout.strip() == "file="
    half = _sh("mmerep_auth", {"MMEREP_REGISTRY": "h", "MMEREP_REGISTRY_USER": "u"}, tmp_path)
    assert half.returncode == 1 and "set both" in half.stderr


def test_gitlab_registry_credentials_are_the_fallback(tmp_path: Path) -> None:
    env = {"MMEREP_REGISTRY": "registry.gitlab.example.org", "CI_REGISTRY":
           "registry.gitlab.example.org", "CI_REGISTRY_USER": "gitlab-ci-token",
           "CI_REGISTRY_PASSWORD": "job-token"}
    out = _sh('mmerep_auth\ncat "$REGISTRY_AUTH_FILE"', env, tmp_path)
    auth = json.loads(out.stdout)["auths"]["registry.gitlab.example.org"]["auth"]
    assert base64.b64decode(auth) == b"gitlab-ci-token:job-token"


def test_script_helpers(tmp_path: Path) -> None:
    env = {"MMEREP_REGISTRY": "h:5000", "MMEREP_PROJECT": "mme-rep", "MMEREP_IMAGE_NAME": "s3",
           "MMEREP_FLAVOURS": "htcondor-batch,jupyter", "HTCONDOR_BATCH_DIGEST": "sha256:ab"}
    out = _sh('mmerep_var_prefix htcondor-batch; echo; mmerep_repository jupyter; echo; '
              'mmerep_flavours; echo; mmerep_digest_of htcondor-batch; echo; '
              'mmerep_digest_of jupyter; echo "|"; mmerep_tls_verify', env, tmp_path)
    assert out.stdout.splitlines() == ["HTCONDOR_BATCH", "h:5000/mme-rep/jupyter/s3",
                                       "htcondor-batch jupyter", "sha256:ab", "|", "true"]
    missing = _sh("mmerep_repository processor", {"MMEREP_REGISTRY": "h"}, tmp_path)
    assert missing.returncode == 1 and "MMEREP_PROJECT" in missing.stderr


def _build_key(context: Path, *args: str, tmp_path: Path, path: str = "/usr/bin:/bin") -> str:
    build = (TEMPLATES / "scripts" / "build.sh").read_text()
    common = (TEMPLATES / "scripts" / "common.sh").read_text()
    quoted = " ".join(f"'{a}'" for a in args)
    script = f'{common}\n{build}\nmmerep_build_key "$1" "$2" {quoted}'
    out = subprocess.run(["/bin/sh", "-c", script, "sh", str(context / "Dockerfile"),
                          str(context)], capture_output=True, text=True,
                         env={"PATH": path, "TMPDIR": str(tmp_path)}, check=True)
    return out.stdout.strip()


def test_build_key_names_the_inputs_not_the_checkout(tmp_path: Path) -> None:
    """Same Dockerfile, files and arguments: same key, whatever the times, owners or .git of
    the checkout. Any change to what a build reads: another key."""
    first = tmp_path / "first"
    (first / "src").mkdir(parents=True)
    (first / "Dockerfile").write_text("FROM base\nCOPY src /src\n")
    (first / "src" / "run.sh").write_text("echo run\n")
    (first / ".git").mkdir()
    (first / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    key = _build_key(first, "--label", "rev=1", tmp_path=tmp_path)
    assert len(key) == 32 and int(key, 16) >= 0

    again = tmp_path / "again"
    shutil.copytree(first, again)  # new mtimes
    os.utime(again / "src" / "run.sh", (1, 1))
    (again / ".git" / "HEAD").write_text("ref: refs/heads/other\n")
    os.chown(again / "src" / "run.sh", 1234, 1234)
    assert _build_key(again, "--label", "rev=1", tmp_path=tmp_path) == key

    assert _build_key(again, "--label", "rev=2", tmp_path=tmp_path) != key
    (again / "src" / "run.sh").chmod(0o755)
    assert _build_key(again, "--label", "rev=1", tmp_path=tmp_path) != key
    (again / "src" / "run.sh").chmod(0o644)
    assert _build_key(again, "--label", "rev=1", tmp_path=tmp_path) == key
    (again / "src" / "new.txt").write_text("x")
    assert _build_key(again, "--label", "rev=1", tmp_path=tmp_path) != key
    (again / "src" / "new.txt").unlink()
    (again / "Dockerfile").write_text("FROM base\nCOPY src /srv\n")
    assert _build_key(again, "--label", "rev=1", tmp_path=tmp_path) != key


def test_build_key_is_empty_without_gnu_tar(tmp_path: Path) -> None:
    """A busybox or kaniko job image: no key, so every build runs (nothing is reused)."""
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("sha256sum", "cut", "grep", "printf", "date"):
        found = shutil.which(tool)
        if found:
            (fake / tool).symlink_to(found)
    (fake / "tar").write_text("#!/bin/sh\necho 'tar (busybox)'\n")
    (fake / "tar").chmod(0o755)
    assert _build_key(tmp_path, tmp_path=tmp_path, path=str(fake)) == ""


# --- the flavour Containerfiles ----------------------------------------------------

def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_flavour_containerfile_structure(flavour: str) -> None:
    steps = instructions(TEMPLATES / "images" / flavour / "Containerfile")
    # FROM the processor, which the pipeline pins by digest: an ARG with no default.
    assert steps[0] == ("ARG", "PROCESSOR_IMAGE")
    assert steps[1] == ("FROM", "${PROCESSOR_IMAGE}")
    assert [s for s in steps if s[0] == "FROM"] == [steps[1]]
    assert ("ARG", "PROCESSOR_IMAGE") in steps[2:], "re-declared to label the base"
    labels = " ".join(args for kind, args in steps if kind == "LABEL")
    for key in ("org.opencontainers.image.title", "org.opencontainers.image.description",
                "org.opencontainers.image.licenses"):
        assert f"{key}=" in labels, key
    assert 'org.opencontainers.image.base.name="${PROCESSOR_IMAGE}"' in labels
    assert f'io.mme-rep.flavour="{flavour}"' in labels
    # Ends as a non-root user, after every RUN.
    users = [i for i, (kind, _) in enumerate(steps) if kind == "USER"]
    last_user = steps[users[-1]][1]
    assert users[-1] > max(i for i, (kind, _) in enumerate(steps) if kind == "RUN")
    assert last_user == "1000"


def test_flavours_add_what_their_environment_runs() -> None:
    text = {f: (TEMPLATES / "images" / f / "Containerfile").read_text() for f in FLAVOURS}
    assert "ARG HTCONDOR_REPO=" in text["htcondor-batch"]
    assert "${HTCONDOR_REPO}" in text["htcondor-batch"]
    for needed in ("condor", "openssh-server", "MMEREP_PIP_SPEC", "/usr/local/bin/mme-rep"):
        assert needed in text["htcondor-batch"], needed
    assert "openssh-server" in text["interactive"]
    assert "jupyterlab==${JUPYTERLAB_VERSION}" in text["jupyter"]
    assert "/usr/local/bin/jupyter" in text["jupyter"]


# --- render_gitlab_ci --------------------------------------------------------------

def render(flavours: list[str], **kw: Any) -> str:
    return render_gitlab_ci(flavours, registry=kw.pop("registry", "harbor.example.org"),
                            project=kw.pop("project", "mme-rep"),
                            image_name=kw.pop("image_name", "sentinel3"), **kw)


@pytest.mark.parametrize("flavours", FLAVOUR_SETS, ids=",".join)
def test_rendered_plain_include_is_valid(validator: jsonschema.Draft7Validator,
                                         flavours: list[str]) -> None:
    document = yaml.safe_load(render(flavours, scan=False, severity="high"))
    assert_valid(validator, document, "rendered .gitlab-ci.yml")
    (include,) = document["include"]
    assert include == {"project": cipipeline.TEMPLATES_PROJECT,
                       "ref": cipipeline.TEMPLATES_REF, "file": cipipeline.TEMPLATES_FILE}
    assert (ROOT / include["file"].lstrip("/")) == PLAIN
    variables = document["variables"]
    assert set(variables) <= set(yaml.safe_load(PLAIN.read_text())["variables"])
    assert all(isinstance(v, str) for v in variables.values())
    assert variables["MMEREP_FLAVOURS"] == ",".join(f for f in FLAVOURS if f in flavours)
    assert variables["MMEREP_SCAN"] == "false" and variables["MMEREP_SEVERITY"] == "HIGH"
    assert variables["MMEREP_LAYER_CACHE"] == "local"
    kubernetes = yaml.safe_load(render(flavours, layer_cache="Registry"))["variables"]
    assert kubernetes["MMEREP_LAYER_CACHE"] == "registry"
    for flavour in FLAVOURS:
        rule = yaml.safe_load(PLAIN.read_text())[f"mmerep:build:{flavour}"]["rules"][0]["if"]
        pattern = rule.split("=~", 1)[1].strip().strip("/")
        assert bool(re.search(pattern, variables["MMEREP_FLAVOURS"])) == (flavour in flavours)


@pytest.mark.parametrize("flavours", FLAVOUR_SETS, ids=",".join)
def test_rendered_component_include_is_valid(validator: jsonschema.Draft7Validator,
                                             flavours: list[str]) -> None:
    ref = "gitlab.example.org/mme-rep/ci-components/mme-rep@1.2.0"
    text = render(list(reversed(flavours)), component_ref=ref, dockerfile="docker/Dockerfile",
                  context="docker")
    document = yaml.safe_load(text)
    assert_valid(validator, document, "rendered .gitlab-ci.yml")
    (include,) = document["include"]
    assert include["component"] == ref
    expanded = component_with(include["inputs"])
    assert_valid(validator, expanded, "the component with these inputs")
    assert sorted(active_jobs(expanded)) == sorted(
        ["mmerep:build:processor", *(f"mmerep:build:{f}" for f in flavours), "mmerep:scan",
         "mmerep:publish"])
    variables = expanded[".mmerep-job"]["variables"]
    assert variables["MMEREP_DOCKERFILE"] == "docker/Dockerfile"
    assert variables["MMEREP_LAYER_CACHE"] == "local"
    assert variables["MMEREP_REGISTRY"] == "harbor.example.org"


def test_rendered_text_explains_itself() -> None:
    text = render(["htcondor-batch"])
    assert text.startswith("# Builds this processor's image")
    assert "MMEREP_REGISTRY_PASSWORD" in text.split("include:")[0]


def test_no_flavours_builds_only_the_processor() -> None:
    variables = yaml.safe_load(render([]))["variables"]
    assert variables["MMEREP_FLAVOURS"] == "none"


@pytest.mark.parametrize(("kwargs", "message", "hint"), [
    ({"flavours": ["htcondor"]}, "unknown flavour 'htcondor'", "htcondor-batch, interactive"),
    ({"flavours": ["gpu", "x"]}, "unknown flavours 'gpu', 'x'", "valid flavours"),
    ({"severity": "urgent"}, "unknown severity", "CRITICAL"),
    ({"layer_cache": "s3"}, "unknown layer cache 's3'", "registry"),
    ({"registry": "https://harbor.example.org"}, "registry", "harbor.example.org"),
    ({"project": "Mme Rep"}, "registry project", "mme-rep"),
    ({"image_name": "Sentinel3"}, "image name", "sentinel3"),
    ({"dockerfile": "/etc/Dockerfile"}, "inside the repository", "relative"),
    ({"context": "../elsewhere"}, "inside the repository", "relative"),
    ({"component_ref": "gitlab.example.org/mme-rep/ci/mme-rep"}, "HOST/PATH@VERSION", "pin"),
])
def test_render_rejects_bad_input(kwargs: dict[str, Any], message: str, hint: str) -> None:
    flavours = kwargs.pop("flavours", ["interactive"])
    with pytest.raises(UsageError) as err:
        render(flavours, **kwargs)
    assert message in err.value.message
    assert err.value.hint and hint in err.value.hint


def test_render_accepts_ci_variables() -> None:
    variables = yaml.safe_load(render(["jupyter"], registry="$CI_REGISTRY",
                                      image_name="${CI_PROJECT_NAME}"))["variables"]
    assert variables["MMEREP_REGISTRY"] == "$CI_REGISTRY"
    assert variables["MMEREP_IMAGE_NAME"] == "${CI_PROJECT_NAME}"


# --- write_gitlab_ci ---------------------------------------------------------------

def test_write_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / ".gitlab-ci.yml"
    assert write_gitlab_ci(tmp_path, "first: 1\n") == target
    assert target.read_text() == "first: 1\n"
    with pytest.raises(UsageError) as err:
        write_gitlab_ci(target, "second: 2\n")
    assert "already exists" in err.value.message and "--force" in (err.value.hint or "")
    assert target.read_text() == "first: 1\n"
    write_gitlab_ci(target, "second: 2\n", force=True)
    assert target.read_text() == "second: 2\n"
    assert [p.name for p in tmp_path.iterdir()] == [".gitlab-ci.yml"]


def test_write_needs_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        write_gitlab_ci(tmp_path / "nope" / ".gitlab-ci.yml", "x: 1\n")


def test_ci_init_writes_a_valid_file_and_never_overwrites_silently(tmp_path) -> None:
    import subprocess
    import sys

    import yaml

    def init(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mmerep", "ci", "init", "-n", "sentinel3",
                               "--path", str(tmp_path), *args], capture_output=True, text=True,
                              timeout=60)

    first = init("--flavours", "htcondor-batch,jupyter", "--registry", "harbor.example.org")
    assert first.returncode == 0, first.stderr
    written = yaml.safe_load((tmp_path / ".gitlab-ci.yml").read_text())
    assert written["variables"]["MMEREP_IMAGE_NAME"] == "sentinel3"
    assert set(written["variables"]["MMEREP_FLAVOURS"].split(",")) == {"htcondor-batch",
                                                                       "jupyter"}
    before = (tmp_path / ".gitlab-ci.yml").read_text()
    again = init("--flavours", "interactive")
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = init("--flavours", "foo", "--force")
    assert bad.returncode == 2 and "unknown flavour 'foo'" in bad.stderr
    assert (tmp_path / ".gitlab-ci.yml").read_text() == before  # nothing lost
