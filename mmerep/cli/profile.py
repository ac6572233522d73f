"""`mme-rep profile ...`: deployment targets (cluster, namespace, registry, defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mmerep.cli.options import OutputFormat, OutputOption

app = typer.Typer(
    help="Deployment-target profiles, used as `-F NAME`: kube context, namespace, registry "
    "and project, default resources, storage classes, node placement and limits. They "
    "live in a YAML file: --profiles FILE, else $MMEREP_PROFILES, else "
    "~/.config/mme-rep/profiles.yaml. The profile `local` (the local cluster) is built in."
    "\n\nExamples:\n\n  mme-rep profile list\n\n  mme-rep profile show dev-s3 -o yaml\n\n"
    "  mme-rep profile add dev-s3 --context mmerep-general-dev --namespace s3 "
    "--registry harbor.example.org --project mme-rep --request-cpu 1 --request-memory 10G",
    no_args_is_help=True,
)

ProfilesFileOption = typer.Option(
    None, "--profiles", metavar="FILE",
    help="Profiles file (overrides $MMEREP_PROFILES and ~/.config/mme-rep/profiles.yaml).")
StorageClassOption = typer.Option(
    [], "--storage-class", metavar="TIER=CLASS",
    help="Storage class per tier (local-ssd, bulk, datalake); repeatable.")
NodeSelectorOption = typer.Option(
    [], "--node-selector", metavar="KEY=VALUE",
    help="Node label for processing pods; repeatable.")
TolerationOption = typer.Option(
    [], "--toleration", metavar="KEY[=VALUE]:EFFECT",
    help="Tolerate a taint, e.g. dedicated=processing:NoSchedule; repeatable.")
FromFileOption = typer.Option(
    None, "--from-file", metavar="YAML",
    help="Start from this profile body (the fields of one profile); options override it.")


@app.command("list")
def list_profiles(
    profiles_file: Path | None = ProfilesFileOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Every profile: name, context, namespace, registry/project and where it is defined."""
    from mmerep.cli.output import render, table
    from mmerep.profiles import load_profiles

    rows = [{"name": p.name, "context": p.context, "namespace": p.namespace,
             "registry": p.registry, "project": p.project, "source": p.source or "built-in"}
            for p in load_profiles(profiles_file).values()]

    def as_table(data: list[dict[str, Any]]) -> object:
        return table(None, ["name", "context", "namespace", "registry/project", "source"],
                     [(r["name"], r["context"], r["namespace"],
                       f"{r['registry']}/{r['project']}", r["source"]) for r in data])

    render(rows, output, as_table)


@app.command("show")
def show(
    name: str = typer.Argument(..., metavar="NAME", help="The profile's name, e.g. dev-s3."),
    profiles_file: Path | None = ProfilesFileOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Every field of one profile."""
    from mmerep.cli.output import render, table
    from mmerep.profiles import get_profile

    data = get_profile(name, profiles_file).to_dict()
    data["source"] = data["source"] or "built-in"

    def as_table(d: dict[str, Any]) -> object:
        import json

        def cell(value: Any) -> str:
            if isinstance(value, dict | list):
                return json.dumps(value) if value else ""
            return "" if value is None else str(value)

        return table(f"profile {d['name']}", ["field", "value"],
                     [(k, cell(v)) for k, v in d.items() if k != "name"])

    render(data, output, as_table)


@app.command("add")
def add(
    name: str = typer.Argument(..., metavar="NAME",
                               help="The new profile's name (a DNS label), e.g. dev-s3."),
    namespace: str | None = typer.Option(None, help="Namespace to deploy into, e.g. s3."),
    registry: str | None = typer.Option(None, help="Registry host[:port], e.g. "
                                        "harbor.example.org."),
    project: str | None = typer.Option(None, help="Registry project, e.g. mme-rep."),
    context: str | None = typer.Option(None, help="Kube context (the cluster), e.g. "
                                       "mmerep-general-dev; default: the current one."),
    kubeconfig: str | None = typer.Option(None, help="Kubeconfig file; default: $KUBECONFIG "
                                          "or ~/.kube/config."),
    request_cpu: str | None = typer.Option(None, help="CPU request per executor, e.g. 1."),
    request_memory: str | None = typer.Option(None, help="Memory request per executor, "
                                              "e.g. 10G (10^9 bytes) or 8Gi (2^33 bytes)."),
    limit_cpu: str | None = typer.Option(None, help="CPU limit per executor."),
    limit_memory: str | None = typer.Option(None, help="Memory limit per executor."),
    storage_class: list[str] = StorageClassOption,
    node_selector: list[str] = NodeSelectorOption,
    toleration: list[str] = TolerationOption,
    ssh_domain: str | None = typer.Option(None, help="SSH host suffix, e.g. "
                                          "mmerep-general-dev."),
    ingress_domain: str | None = typer.Option(None, help="Domain for web environments."),
    prometheus: str | None = typer.Option(None, help="Prometheus' address, for the "
                                          "console's plots, e.g. http://prometheus:9090."),
    max_executors: int | None = typer.Option(None, min=1, help="Most executors allowed."),
    max_cpu: str | None = typer.Option(None, help="Most CPU one pod may request or be "
                                       "limited to, e.g. 32 (env deploy refuses more)."),
    max_memory: str | None = typer.Option(None, help="Most memory one pod may request or be "
                                          "limited to, e.g. 128Gi (env deploy refuses "
                                          "more)."),
    uid: int | None = typer.Option(None, min=1, help="UID every container runs as "
                                   "(default 1000), e.g. a site's high UID."),
    gid: int | None = typer.Option(None, min=1, help="GID of every container (default: "
                                   "the UID)."),
    scratch: str | None = typer.Option(None, help="Executors' default scratch space "
                                       "(ephemeral storage), e.g. 200Gi."),
    from_file: Path | None = FromFileOption,
    replace: bool = typer.Option(False, "--replace", help="Overwrite an existing profile."),
    profiles_file: Path | None = ProfilesFileOption,
) -> None:
    """Add a profile to the profiles file (validated first; the file is never half-written).

    Sizes are Kubernetes quantities: k/M/G/T are powers of 10 (10G = 10^9 bytes),
    Ki/Mi/Gi/Ti powers of 2 (8Gi = 2^33 bytes); CPU in cores or millicores (500m).

    \b
    Examples:
      mme-rep profile add dev-s3 --context mmerep-general-dev --namespace s3 \\
        --registry harbor.example.org --project mme-rep \\
        --request-cpu 1 --request-memory 10G --max-executors 400 \\
        --storage-class local-ssd=mmerep-local-ssd --storage-class bulk=cephfs \\
        --node-selector mme-rep/processing=true \\
        --toleration dedicated=processing:NoSchedule --ssh-domain mmerep-general-dev
      mme-rep profile add prod-s3 --from-file prod-s3.yaml --namespace s3-prod
    """
    from mmerep.cli.output import console
    from mmerep.profiles import add_profile, parse_assignments, parse_toleration

    body: dict[str, Any] = _read_body(from_file, name) if from_file else {}
    for key, value in (("namespace", namespace), ("registry", registry),
                       ("project", project), ("context", context),
                       ("kubeconfig", kubeconfig), ("ssh_domain", ssh_domain),
                       ("ingress_domain", ingress_domain), ("max_executors", max_executors),
                       ("max_cpu", max_cpu), ("max_memory", max_memory), ("uid", uid),
                       ("gid", gid), ("scratch", scratch), ("prometheus", prometheus)):
        if value is not None:
            body[key] = value
    for key, cpu, memory in (("requests", request_cpu, request_memory),
                             ("limits", limit_cpu, limit_memory)):
        given = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
        if given:
            base = body.get(key)
            body[key] = {**(base if isinstance(base, dict) else {}), **given}
    for key, option, items in (("storage_classes", "--storage-class", storage_class),
                               ("node_selector", "--node-selector", node_selector)):
        if items:
            base = body.get(key)
            body[key] = {**(base if isinstance(base, dict) else {}),
                         **parse_assignments(items, option)}
    if toleration:
        base = body.get("tolerations")
        body["tolerations"] = [*(base if isinstance(base, list) else []),
                               *(parse_toleration(t) for t in toleration)]
    profile = add_profile({**body, "name": name}, profiles_file, replace=replace)
    console.print(f"profile {profile.name} {'saved' if replace else 'added'} in {profile.source}",
                  soft_wrap=True)


def _read_body(path: Path, name: str) -> dict[str, Any]:
    """A profile body from YAML: the fields, or a profiles file holding ``name``."""
    import yaml

    from mmerep.errors import UsageError

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML", hint=str(exc).splitlines()[0]) from None
    if isinstance(data, dict) and isinstance(data.get("profiles"), dict):
        if name not in data["profiles"]:
            raise UsageError(f"{path} has no profile '{name}'",
                             hint=f"it has: {', '.join(map(str, data['profiles']))}")
        data = data["profiles"][name]
    if data is not None and not isinstance(data, dict):
        raise UsageError(f"{path} must hold a mapping of profile fields",
                         hint="e.g. namespace: s3, registry: harbor.example.org")
    return dict(data or {})
