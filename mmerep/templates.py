"""Environment templates: folders of data (parameters + Jinja2 manifests) rendered to dicts.

A template folder holds ``template.yaml`` (description, parameters with type, default and
help, the workloads to wait for) and ``manifests/*.yaml.j2``. Sites add folders of their
own through ``$MMEREP_TEMPLATE_PATH`` (colon-separated, searched before the built-ins).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmerep.errors import UsageError
from mmerep.grammar.names import DNS_1035_LABEL

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "env_templates"
# Longest environment name whose derived names (<env>-scheduler-state...) stay valid labels.
MAX_ENV_NAME = 40
PARAM_TYPES = ("int", "str", "bool", "cpu", "memory")
STANDARD_UID = 1000
CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding", "PriorityClass")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any
    help: str = ""
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    description: str
    parameters: dict[str, Parameter] = field(default_factory=dict)
    workloads: tuple[str, ...] = ()
    # Secrets generated at first deploy as <env>-<name>, one random value per key.
    secrets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Where a web environment answers: {"service": ..., "port": ..., "path": ...}.
    web: dict[str, Any] = field(default_factory=dict)


def search_path() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("MMEREP_TEMPLATE_PATH", "").split(":") if p]
    return [*extra, BUILTIN_DIR]


def validate_env_name(name: str) -> str:
    if len(name) > MAX_ENV_NAME or not DNS_1035_LABEL.fullmatch(name):
        raise UsageError(
            f"invalid environment name {name!r}",
            hint=f"use lower-case letters, digits and '-', start with a letter, at most "
            f"{MAX_ENV_NAME} characters (a DNS label), e.g. --name sentinel3-dev")
    return name


def _read_template(folder: Path) -> Template:
    import yaml  # here, as in render_manifests: read commands import this module only

    meta_file = folder / "template.yaml"
    try:
        meta = yaml.safe_load(meta_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"template {folder.name}: cannot read {meta_file}: {exc}") from exc
    params = {}
    for pname, raw in (meta.get("parameters") or {}).items():
        ptype = raw.get("type", "str")
        if ptype not in PARAM_TYPES:
            raise UsageError(f"template {folder.name}: parameter {pname} has unknown type "
                             f"{ptype!r}", hint=f"use one of {', '.join(PARAM_TYPES)}")
        params[pname] = Parameter(pname, ptype, raw.get("default"), raw.get("help", ""),
                                  raw.get("min"), raw.get("max"))
    secrets = {str(k): tuple(v) for k, v in (meta.get("secrets") or {}).items()}
    return Template(meta.get("name", folder.name), folder, meta.get("description", ""),
                    params, tuple(meta.get("workloads") or ()), secrets, meta.get("web") or {})


def list_templates() -> list[Template]:
    """Every template on the search path; an earlier folder shadows a later one."""
    found: dict[str, Template] = {}
    for root in search_path():
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if (p / "template.yaml").is_file()):
            found.setdefault(folder.name, _read_template(folder))
    return list(found.values())


def load_template(name: str) -> Template:
    for root in search_path():
        folder = root / name
        if (folder / "template.yaml").is_file():
            return _read_template(folder)
    known = ", ".join(t.name for t in list_templates()) or "none"
    raise UsageError(f"unknown template {name!r}", hint=f"choose one of: {known} "
                     "(mme-rep template list)")


def coerce_parameters(template: Template, given: Mapping[str, Any]) -> dict[str, Any]:
    """Given values (strings from --set k=v, or typed) checked and converted; defaults added."""
    from mmerep.quantity import parse_cpu, parse_memory

    unknown = sorted(set(given) - set(template.parameters))
    if unknown:
        raise UsageError(f"template {template.name} has no parameter {unknown[0]!r}",
                         hint=f"its parameters: {', '.join(template.parameters) or 'none'} "
                         f"(mme-rep template show {template.name})")
    values: dict[str, Any] = {}
    for pname, param in template.parameters.items():
        raw = given.get(pname, param.default)
        if raw is None:
            values[pname] = None
            continue
        what = f"parameter {pname}={raw!r}"
        if param.type == "int":
            try:
                value: Any = int(raw)
            except (TypeError, ValueError):
                raise UsageError(f"{what} is not an integer") from None
            if param.minimum is not None and value < param.minimum:
                raise UsageError(f"{what} is below its minimum {param.minimum}")
            if param.maximum is not None and value > param.maximum:
                raise UsageError(f"{what} is above its maximum {param.maximum}")
        elif param.type == "bool":
            text = str(raw).lower()
            if text not in ("true", "false", "1", "0", "yes", "no"):
                raise UsageError(f"{what} is not a boolean", hint="use true or false")
            value = text in ("true", "1", "yes")
        elif param.type == "cpu":
            parse_cpu(str(raw), pname)
            value = str(raw)
        elif param.type == "memory":
            parse_memory(str(raw), pname)
            value = str(raw)
        else:
            value = str(raw)
        values[pname] = value
    return values


def safe_loader() -> Any:
    """libyaml's safe loader where PyYAML was built with it: ten times the pure-Python one."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _bytecode_cache() -> Any:
    """Compiled templates kept across commands (compiling them is most of a render);
    Jinja2 checks each against its source, so an edited template is compiled again."""
    import jinja2

    from mmerep.paths import cache_dir

    directory = cache_dir() / "jinja"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(directory))


def render_manifests(template: Template, context: Mapping[str, Any],
                     filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Render every ``manifests/*.yaml.j2`` (files starting with ``_`` are macros)."""
    import jinja2
    import yaml

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template.path / "manifests")),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False,  # noqa: S701 (YAML, not HTML)
        bytecode_cache=_bytecode_cache())
    env.filters.update(filters or {})
    objects: list[dict[str, Any]] = []
    files = sorted(p.name for p in (template.path / "manifests").glob("*.yaml.j2")
                   if not p.name.startswith("_"))
    for fname in files:
        try:
            text = env.get_template(fname).render(**context)
            docs = [d for d in yaml.load_all(text, Loader=safe_loader()) if d]
        except jinja2.UndefinedError as exc:
            raise UsageError(f"template {template.name}/{fname}: {exc.message}") from exc
        except yaml.YAMLError as exc:
            raise UsageError(f"template {template.name}/{fname} renders invalid YAML: "
                             f"{exc}") from exc
        objects.extend(docs)
    return objects


def standard_labels(env_name: str, template: str, component: str | None = None
                    ) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": template,
        "app.kubernetes.io/instance": env_name,
        "app.kubernetes.io/managed-by": "mme-rep",
        "mme-rep/template": template,
    }
    if component:
        labels["app.kubernetes.io/component"] = component
    return labels


def label_objects(objects: list[dict[str, Any]], env_name: str, namespace: str,
                  template: str, revision: int) -> list[dict[str, Any]]:
    """Standard labels on every object and pod template; namespace set on each object.

    The revision label goes on objects only, not pod templates, so a re-deploy that
    changes nothing in a pod does not restart it.
    """
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        component = (meta.get("labels") or {}).get("app.kubernetes.io/component")
        meta["labels"] = {**(meta.get("labels") or {}),
                          **standard_labels(env_name, template, component),
                          "mme-rep/revision": str(revision)}
        if obj.get("kind") in CLUSTER_SCOPED:
            # Names are cluster-wide, so the label says which namespace's environment.
            meta.pop("namespace", None)
            meta["labels"]["mme-rep/namespace"] = namespace
        else:
            meta["namespace"] = namespace
        pod_meta = obj.get("spec", {}).get("template", {}).get("metadata")
        if pod_meta is not None:
            pod_component = (pod_meta.get("labels") or {}).get("app.kubernetes.io/component")
            pod_meta["labels"] = {**(pod_meta.get("labels") or {}),
                                  **standard_labels(env_name, template, pod_component)}
    return objects
