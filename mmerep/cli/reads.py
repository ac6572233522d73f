"""The read commands' bodies, free of typer: ``env list``, ``env status``, the scaler's
status and ``provisioner status`` run from here both through the typer commands and
through the fast path (``mmerep.cli.fast``), which skips typer's import (~70 ms, more than
the command's own work)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmerep.cli.formats import OutputFormat

if TYPE_CHECKING:
    from mmerep.kube import Kube
    from mmerep.profiles import Profile


def _connect(profile: Profile) -> Kube:
    from mmerep.kube import Kube

    return Kube.from_kubeconfig(profile.kubeconfig, profile.context, namespace=profile.namespace)


def _target(profile_name: str, profiles_file: str | None,
            env_name: str | None = None, on: str | None = None) -> tuple[Profile, Kube]:
    """The profile and a connection to its cluster; for a profile group, the member that
    holds ``env_name`` (or ``on``)."""
    from mmerep.profiles import get_profile, load_groups, members_of

    if env_name is not None and profile_name in load_groups(profiles_file):
        from mmerep.campaign.groups import find_environment

        profile = find_environment(members_of(profile_name, profiles_file), env_name, on)
    else:
        profile = get_profile(profile_name, profiles_file)
    return profile, _connect(profile)


def _short_image(image: str) -> str:
    """Without the registry host and with a short digest, as operators read it."""
    from mmerep.grammar.oci import split_host

    name, _, digest = image.partition("@")
    host, path = split_host(name)
    if host:
        name = ".../" + path
    return f"{name}@{digest[:19]}" if digest else name


# At or above this many columns the status table also shows each object's full name and kind.
WIDE = 120


def status_table(data: dict[str, Any], width: int | None = None) -> Any:
    """The environment's name and image(s) once above, then one line per component (by
    its role: collector, scheduler, ...), fitting ``width`` (default: the terminal's)."""
    from mmerep.cli.output import age, table
    from mmerep.cli.plain import Line, Stack, console_width

    width = width or console_width()
    wide = width >= WIDE
    comps = data["components"]
    roles_by_image: dict[str, list[str]] = {}
    for c in comps:
        roles_by_image.setdefault(c["image"], []).append(c["component"] or c["name"])
    columns = ["role", "state", "ready", "age", "restarts", "ports"]
    if wide:
        columns[1:1] = ["name", "kind"]
    rows = []
    for c in comps:
        pods = f"{c['ready']}/{c['desired']}"
        # "ready" counts pods serving (readiness passes); "started" ones run, past their
        # start-up probe, but their service does not answer yet.
        if c.get("started", c["ready"]) > c["ready"]:
            pods += f" ({c['started']} started)"
        if c["kind"] == "DaemonSet":
            pods += ", 1/node"
        row = [c["component"] or c["name"], c["state"], pods, age(c["age_seconds"]),
               c["restarts"], ", ".join(c["ports"]) or "-"]
        if wide:
            row[1:1] = [c["name"], c["kind"]]
        rows.append(row)
    heading = Line(f"environment {data['name']} in namespace {data['namespace']}", bold=True)
    parts: list[Any] = [heading]
    for image, roles in roles_by_image.items():  # one line when all share it (the usual)
        owners = f" ({', '.join(roles)})" if len(roles_by_image) > 1 else ""
        parts.append(Line(f"image {_short_image(image)}{owners}", fold=True))
    parts.append(table(None, columns, rows))
    if data.get("synclocal"):
        parts.append(Line(data["synclocal"], fold=True))
    if data.get("scaler"):
        parts.append(Line(data["scaler"], fold=True))
    if data.get("monitor"):
        parts.append(Line(data["monitor"]["line"], fold=True))
        parts += [Line(f"  {f.get('kind')}: {f.get('message')}", fold=True)
                  for f in data["monitor"]["findings"]]
    if data.get("stopped"):
        parts.append(table("pods Kubernetes stopped", ["component", "pod", "reason", "message"],
                           [(s["component"], s["pod"], s["reason"], s["message"])
                            for s in data["stopped"]]))
    if data.get("warnings"):
        warn_columns = ["time", "object", "reason", "message"] if wide else [
            "object", "reason", "message"]
        parts.append(table("recent warnings", warn_columns,
                           [([w["time"]] if wide else []) + [w["object"], w["reason"],
                                                             w["message"]]
                            for w in data["warnings"]]))
    return Stack(parts)


def env_list(profile_name: str, profiles_file: str | None, all_namespaces: bool,
             everywhere: bool, output: OutputFormat) -> None:
    from mmerep.cli.output import render, table

    if everywhere:
        from mmerep.campaign.groups import list_everywhere
        from mmerep.profiles import load_profiles

        found = list_everywhere(list(load_profiles(profiles_file).values()))
        render(found, output, lambda r: table(None, [
            "profile", "namespace", "name", "template", "revision", "status", "image"],
            [(x["profile"], x["namespace"], x["name"], x["template"], x["revision"],
              x["status"] + (f": {x['error']}" if x.get("error") else ""),
              _short_image(x["image"])) for x in r]))
        return
    from mmerep.environments.status import list_environments

    profile, kube = _target(profile_name, profiles_file)
    rows = list_environments(kube, None if all_namespaces else profile.namespace)
    render(rows, output, lambda r: table(None, ["namespace", "name", "template", "revision",
                                                "status", "image", "updated"],
                                         [(x["namespace"], x["name"], x["template"],
                                           x["revision"], x["status"],
                                           _short_image(x["image"]), x["updated"])
                                          for x in r]))


def env_status(name: str, profile_name: str, profiles_file: str | None, on: str | None,
               output: OutputFormat) -> None:
    from mmerep.cli.output import render
    from mmerep.environments.status import environment_status

    profile, kube = _target(profile_name, profiles_file, name, on)
    render(environment_status(kube, profile.namespace, name), output, status_table)
