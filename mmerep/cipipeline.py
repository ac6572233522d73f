"""The GitLab CI side of a processor repository: its `.gitlab-ci.yml`, and the templates.

`render_gitlab_ci` writes the `.gitlab-ci.yml` a processor repository needs to include
our CI templates (`ci_templates/`): a CI/CD component include when a component
reference is given, else the plain include for older GitLab. Pure functions; the
`ci init` command writes the result with `write_gitlab_ci`.

The templates' jobs run shell functions from `ci_templates/scripts/*.sh` and build the
flavours from `ci_templates/images/<flavour>/Containerfile`. An include brings only YAML
into a pipeline, never files, so those are embedded in both templates between marker
lines; `python -m mmerep.cipipeline` regenerates that block after an edit (the unit
tests fail while it is stale).
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mmerep import __version__
from mmerep.errors import UsageError
from mmerep.grammar import oci

FLAVOURS = ("htcondor-batch", "interactive", "jupyter")
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
ENGINES = ("buildah", "kaniko")
LAYER_CACHES = ("local", "registry")
NO_FLAVOURS = "none"
# Where the plain include lives: this repository, at the release matching this mme-rep.
TEMPLATES_PROJECT = "mme-rep/mme-rep"
TEMPLATES_FILE = "/ci_templates/mme-rep.gitlab-ci.yml"
TEMPLATES_REF = f"v{__version__}"
# The embedded scripts, in the order the jobs need them (common first).
SCRIPTS = ("common", "build", "scan", "publish")
BEGIN_MARKER = "# >>> mme-rep generated"
END_MARKER = "# <<< mme-rep generated"
_HEREDOC_END = "MMEREP_CONTAINERFILE"

# The build jobs' candidate tags (ci_templates/scripts/build.sh): build-<build key>, or
# ci-<pipeline id> when no key can be made. Not scanned yet; the publish job gives the
# scanned digest its release tags.
CANDIDATE_TAG = re.compile(r"build-[0-9a-f]{32}|ci-(?:[0-9]+|local)")
# buildah's layer cache in the registry (input layer_cache: registry) lives under
# PROJECT/buildcache/<kind>/NAME.
BUILD_CACHE = "buildcache"

_CI_VARIABLE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})")
_COMPONENT_REF = re.compile(r"[^\s@/]+(?:/[^\s@/]+)+@[^\s@/]+")


def flavour_value(flavours: Sequence[str]) -> str:
    """``["jupyter", "interactive"]`` -> ``"interactive,jupyter"``; ``[]`` -> ``"none"``.

    The templates take the flavours as one string in ``FLAVOURS`` order, so that the
    component can list every allowed value as an input option.
    """
    unknown = [f for f in flavours if f not in FLAVOURS]
    if unknown:
        raise UsageError(f"unknown flavour{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(f) for f in unknown)}",
                         hint=f"valid flavours: {', '.join(FLAVOURS)}")
    chosen = [f for f in FLAVOURS if f in flavours]
    return ",".join(chosen) if chosen else NO_FLAVOURS


def flavour_options() -> list[str]:
    """Every value the templates accept for the flavours: each subset, largest first."""
    subsets = [",".join(combo) for n in range(len(FLAVOURS), 0, -1)
               for combo in itertools.combinations(FLAVOURS, n)]
    return [*subsets, NO_FLAVOURS]


def _check(value: str, pattern: re.Pattern[str], what: str, example: str) -> str:
    value = value.strip()
    if not (pattern.fullmatch(value) or _CI_VARIABLE.fullmatch(value)):
        raise UsageError(f"{what} '{value}' is not valid",
                         hint=f"e.g. {example}, or a CI variable such as $CI_REGISTRY")
    return value


def _check_path(value: str, what: str) -> str:
    value = value.strip()
    if not value or value.startswith("/") or ".." in Path(value).parts:
        raise UsageError(f"{what} '{value}' must be a path inside the repository",
                         hint="give it relative to the repository root, e.g. Dockerfile or .")
    return value


def render_gitlab_ci(flavours: list[str], *, registry: str, project: str, image_name: str,
                     dockerfile: str = "Dockerfile", context: str = ".", scan: bool = True,
                     severity: str = "CRITICAL", component_ref: str | None = None,
                     layer_cache: str = "local") -> str:
    """The `.gitlab-ci.yml` of a processor repository that includes our CI templates.

    ``component_ref`` (``HOST/GROUP/PROJECT/COMPONENT@VERSION``) selects the CI/CD
    component; without it the plain include (``include:project``) pinned to this
    release of mme-rep is used, configured through ``MMEREP_*`` variables.
    ``layer_cache="registry"`` keeps buildah's layer cache in the registry, for runners
    whose store starts empty (Kubernetes).
    """
    settings = {
        "registry": _check(registry, oci.REGISTRY, "registry", "harbor.example.org"),
        "project": _check(project, oci.REPOSITORY, "registry project", "mme-rep"),
        "image_name": _check(image_name, oci.PATH_PART, "image name", "sentinel3"),
        "dockerfile": _check_path(dockerfile, "dockerfile"),
        "context": _check_path(context, "build context"),
        "flavours": flavour_value(flavours),
        "scan": bool(scan),
        "severity": severity.strip().upper(),
        "layer_cache": layer_cache.strip().lower(),
    }
    if settings["layer_cache"] not in LAYER_CACHES:
        raise UsageError(f"unknown layer cache '{layer_cache}'",
                         hint="use local (the runner's store) or registry (runners whose "
                         "store starts empty, as on Kubernetes)")
    if settings["severity"] not in SEVERITIES:
        raise UsageError(f"unknown severity '{severity}'",
                         hint=f"use one of {', '.join(SEVERITIES)}")
    header = ("# Builds this processor's image and its mme-rep environment images, scans\n"
              "# and publishes them (written by `mme-rep ci init`; see ci_templates/README.md\n"
              "# in mme-rep).\n"
              "# Registry credentials: set MMEREP_REGISTRY_USER and MMEREP_REGISTRY_PASSWORD as\n"
              "# masked CI/CD variables in the project settings.\n")
    document: dict[str, Any]
    if component_ref is not None:
        ref = component_ref.strip()
        if not _COMPONENT_REF.fullmatch(ref):
            raise UsageError(f"component reference '{component_ref}' is not HOST/PATH@VERSION",
                             hint="e.g. gitlab.example.org/mme-rep/ci-components/mme-rep@1.0.0"
                             " (pin a version)")
        document = {"include": [{"component": ref, "inputs": settings}]}
    else:
        variables = {f"MMEREP_{key.upper()}": value for key, value in settings.items()}
        variables["MMEREP_SCAN"] = "true" if scan else "false"
        document = {"include": [{"project": TEMPLATES_PROJECT, "ref": TEMPLATES_REF,
                                 "file": TEMPLATES_FILE}],
                    "variables": variables}
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=False,
                                   width=100)


def write_gitlab_ci(path: str | os.PathLike[str], text: str, force: bool = False) -> Path:
    """Write ``text`` to ``path`` (a directory means its `.gitlab-ci.yml`); returns the file.

    An existing file is replaced only with ``force``; the write is atomic.
    """
    target = Path(path)
    if target.is_dir():
        target = target / ".gitlab-ci.yml"
    if target.exists() and not force:
        raise UsageError(f"{target} already exists",
                         hint="use --force to overwrite it, or merge the include by hand")
    if not target.parent.is_dir():
        raise UsageError(f"directory {target.parent} does not exist",
                         hint="run it in the processor repository, or give an existing path")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".gitlab-ci.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# --- the block embedded in the templates ----------------------------------------------

def _literal(anchor: str, text: str) -> list[str]:
    """One YAML sequence item: ``- &anchor |`` then ``text`` as an indented literal."""
    if not text.strip() or text[0].isspace():
        raise ValueError(f"{anchor}: the text must start with a non-blank line")
    lines = [f"    - &{anchor} |"]
    lines += [f"      {line}" if line.strip() else "" for line in text.rstrip("\n").split("\n")]
    return lines


def containerfiles_script(containerfiles: Mapping[str, str]) -> str:
    """Shell function ``mmerep_containerfile FLAVOUR`` printing that flavour's Containerfile."""
    out = ["# The flavour Containerfiles (ci_templates/images/<flavour>/Containerfile).",
           "mmerep_containerfile() {", '  case "$1" in']
    for flavour, text in sorted(containerfiles.items()):
        if any(line == _HEREDOC_END for line in text.splitlines()):
            raise ValueError(f"{flavour}: a Containerfile line is the heredoc end marker")
        out += [f"    {flavour})", f"      cat <<'{_HEREDOC_END}'", text.rstrip("\n"),
                _HEREDOC_END, "      ;;"]
    out += ["    *) return 1 ;;", "  esac", "}"]
    return "\n".join(out) + "\n"


def embedded_block(scripts: Mapping[str, str], containerfiles: Mapping[str, str]) -> str:
    """The generated YAML block: a hidden job whose script items carry YAML anchors that
    the jobs below it reuse (``- *mmerep-build``)."""
    lines = [BEGIN_MARKER,
             "# The job scripts (ci_templates/scripts) and flavour Containerfiles",
             "# (ci_templates/images), embedded because an include brings no files along.",
             "# Do not edit here: edit those files, then run `python -m mmerep.cipipeline`.",
             ".mmerep-scripts:", "  script:"]
    for name in SCRIPTS:
        lines += _literal(f"mmerep-{name}", scripts[name])
    lines += _literal("mmerep-containerfiles", containerfiles_script(containerfiles))
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"


def with_embedded_block(template: str, block: str) -> str:
    """``template`` with the text from BEGIN_MARKER to END_MARKER replaced by ``block``."""
    begin = template.find(BEGIN_MARKER + "\n")
    end = template.find(END_MARKER + "\n", begin)
    if begin < 0 or end < 0:
        raise ValueError(f"the template has no '{BEGIN_MARKER}' ... '{END_MARKER}' lines")
    return template[:begin] + block + template[end + len(END_MARKER) + 1:]


def templates_dir() -> Path:
    """``ci_templates/`` of this checkout (the templates are not installed with the package)."""
    return Path(__file__).resolve().parent.parent / "ci_templates"


def template_files(root: Path | None = None) -> list[Path]:
    root = root or templates_dir()
    return [root / "component" / "template.yml", root / "mme-rep.gitlab-ci.yml"]


def read_embedded_sources(root: Path | None = None) -> tuple[dict[str, str], dict[str, str]]:
    root = root or templates_dir()
    scripts = {name: (root / "scripts" / f"{name}.sh").read_text() for name in SCRIPTS}
    containerfiles = {f: (root / "images" / f / "Containerfile").read_text() for f in FLAVOURS}
    return scripts, containerfiles


def sync_templates(root: Path | None = None) -> list[Path]:
    """Regenerate the embedded block in every template; returns the files that changed."""
    block = embedded_block(*read_embedded_sources(root))
    changed = []
    for path in template_files(root):
        text = path.read_text()
        new = with_embedded_block(text, block)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


if __name__ == "__main__":
    for changed_path in sync_templates():
        print(f"updated {changed_path}")
    sys.exit(0)
