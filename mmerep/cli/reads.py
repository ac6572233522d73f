"""The read commands' bodies, free of typer: ``env list``, ``env status``, the scaler's
status and ``provisioner status`` run from here both through the typer commands and
through the fast path (``mmerep.cli.fast``), which skips typer's import (~70 ms, more than
the command's own work)."""

from __future__ import annotations

import os
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


def provisioner_target(profile_name: str, profiles_file: str | None,
                       namespace: str) -> tuple[Any, Any]:
    from mmerep.kube import Kube
    from mmerep.profiles import get_profile

    profile = get_profile(profile_name, profiles_file)
    return profile, Kube.from_kubeconfig(profile.kubeconfig, profile.context,
                                         namespace=namespace)


def provisioner_status(profile: str, profiles_file: str | None, namespace: str, name: str,
                       output: OutputFormat) -> None:
    from mmerep.cli.output import render, table
    from mmerep.cli.plain import Line, Stack
    from provisioner import service
    from provisioner.status import status as read_status

    service.check_common(name, namespace)
    _, kube = provisioner_target(profile, profiles_file, namespace)
    data = read_status(kube, namespace, name)

    def as_table(d: dict[str, Any]) -> object:
        classes = ", ".join(d["storage_classes"]) or "none"
        return Stack([Line(f"provisioner {d['provisioner']} in {d['namespace']}: leader "
                           f"{d['leader'] or 'none'}; classes {classes}; "
                           f"volumes {d['volumes'] or 'none'}"),
                      table(None, ["node", "disk", "size", "allocatable", "reserved",
                                   "available", "used", "volumes", "quota", "agent seen"],
                            [(r["node"], r["disk"], _size(r["size"]), _size(r["allocatable"]),
                              _size(r["reserved"]), _size(r["available"]), _size(r["used"]),
                              r["volumes"], "yes" if r["quota"] else "no",
                              "-" if r["agent_age"] is None else f"{r['agent_age']:.0f}s ago")
                             for r in d["disks"]])])

    render(data, output, as_table)


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return str(value)


def scaler_connect(in_cluster: bool, profile_name: str, profiles_file: str | None,
             env: str) -> tuple[Any, Any, str]:
    """The connection, the profile (None in the pod) and the namespace; with a profile
    group, the member that holds ``env``."""
    from mmerep.kube import Kube

    if in_cluster:
        kube = Kube.in_cluster()
        return kube, None, kube.namespace
    profile, kube = _target(profile_name, profiles_file, env)
    return kube, profile, profile.namespace


def scaler_pool(env: str, namespace: str, collector: str | None, timeout: float) -> Any:
    from mmerep.condor import BindingsPool

    return BindingsPool(env, collector=collector or f"{env}-collector.{namespace}.svc:9618",
                        timeout=timeout)


def scaler_pool_ahead(env: str, collector: str | None, timeout: float) -> tuple[Any, str]:
    """In the pod: the pool asked at once, from a forked child, before the API connection
    is even made (the bindings' import costs as much as the rest of the command), and
    the namespace it was asked in, read as ``Kube.in_cluster`` reads it."""
    from pathlib import Path

    from mmerep.background import Background

    directory = Path(os.environ.get("MMEREP_SA_DIR")
                     or "/var/run/secrets/kubernetes.io/serviceaccount")
    try:
        namespace = (directory / "namespace").read_text().strip()
    except OSError:
        namespace = "default"

    def ask() -> tuple[int | None, int | None, str]:
        from mmerep.condor import pool_size

        return pool_size(scaler_pool(env, namespace, collector, timeout))

    return Background(ask, fork=True), namespace


def scaler_forbidden(exc: Any) -> Any:
    """A 403 as one line naming what is missing."""
    from mmerep.errors import KubeForbidden

    text = str(exc.message)
    missing = text.split("cannot ", 1)[1].split(":")[0] if "cannot " in text else text
    return KubeForbidden(f"not allowed: cannot {missing}",
                         hint="the scaler's Role lacks this permission; redeploy the "
                         "environment, or ask a cluster admin")


def scaler_status(kube: Any, namespace: str, name: str, pool: Any, output: OutputFormat,
                  asking: Any = None) -> None:
    import dataclasses

    from mmerep.cli.output import render
    from mmerep.scaler import executors as ex

    st = ex.status(kube, namespace, name, pool, asking=asking,
                   pods=output is not OutputFormat.table)
    if output is OutputFormat.table:
        for line in st.lines():
            print(line)
        return
    render(dataclasses.asdict(st), output, lambda d: d)
