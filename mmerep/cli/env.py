"""`mme-rep env ...`: deploy, inspect, upgrade, roll back and delete environments."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from mmerep.cli.options import OutputFormat, OutputOption
from mmerep.cli.reads import WIDE, _connect, _short_image, _target, status_table

__all__ = ["WIDE", "_connect", "_short_image", "_target", "app", "status_table"]

if TYPE_CHECKING:
    from mmerep.environments import Rendered
    from mmerep.profiles import Profile

app = typer.Typer(
    help="Deploy, inspect, upgrade, roll back and delete environments.\n\n"
    "Examples:\n\n"
    "  mme-rep env deploy -F dev-s3 htcondor-batch sentinel3:v0.1.0\n\n"
    "  mme-rep env deploy -F local htcondor-batch sentinel3:v0.1.0 --set executors=4\n\n"
    "  mme-rep env status -F dev-s3 sentinel3\n\n"
    "  mme-rep env rollback -F dev-s3 sentinel3 2",
    no_args_is_help=True,
)

ProfileOption = typer.Option("local", "--profile", "-F", help="Deployment profile (target).")
ProfilesFileOption = typer.Option(None, "--profiles", help="Profiles file (overrides "
                                  "$MMEREP_PROFILES and the user config).")
LockWaitOption = typer.Option(0, "--lock-wait", min=0, help="Seconds to wait while another "
                              "command changes this environment (default: fail at once, "
                              "naming it; exit code 75).")


def _parse_sets(values: list[str]) -> dict[str, str]:
    from mmerep.grammar.assignments import parse_assignments

    return parse_assignments(values, "--set", "executors=4")


def _render(template: str, image: str, profile_name: str, profiles_file: str | None,
            name: str | None, sets: list[str], no_resolve: bool) -> tuple[Profile, Rendered]:
    """The profile and the environment rendered for it (every input validated)."""
    from mmerep import environments
    from mmerep.profiles import get_profile

    profile = get_profile(profile_name, profiles_file)
    return profile, environments.render_environment(
        profile, template, image, name=name, params=_parse_sets(sets), resolve=not no_resolve)


OnOption = typer.Option(None, "--on", metavar="MEMBER", help="With a profile group: the "
                        "member to use (deploy: instead of the one with the most room).")


def _place(template: str, image: str, group: str, profiles_file: str | None,
           name: str | None, sets: list[str], on: str | None) -> str:
    """The member of ``group`` the environment goes to; the plan is printed."""
    from mmerep.campaign.groups import place_environment
    from mmerep.cli.output import err_console, table
    from mmerep.profiles import members_of

    placement = place_environment(members_of(group, profiles_file), template, image,
                                  name=name, params=_parse_sets(sets), on=on)
    rows = [(v.member, v.to_dict()["free_cpu"] or "-", v.to_dict()["free_memory"] or "-",
             "-" if v.room_after is None else v.room_after, v.reason or "fits")
            for v in placement.verdicts]
    err_console.print(table(f"placement in group {group} (the environment requests "
                            f"{placement.demand.text()})",
                            ["member", "free cpu", "free memory", "room after", "verdict"],
                            rows))
    err_console.print(f"[bold]{placement.chosen}[/] chosen: {placement.why}", soft_wrap=True)
    return placement.chosen


@app.command("deploy")
def deploy(
    template: str = typer.Argument(..., help="Template name (mme-rep template list)."),
    image: str = typer.Argument(..., help="IMAGE:TAG, expanded from the profile, or a full "
                                "reference."),
    profile_name: str = ProfileOption,
    profiles_file: str | None = ProfilesFileOption,
    name: str | None = typer.Option(None, "--name", help="Environment name (default: the "
                                    "image name)."),
    sets: list[str] = typer.Option([], "--set", help="Template parameter KEY=VALUE "
                                   "(repeatable), e.g. executor_memory=8G. Sizes: k/M/G/T are "
                                   "powers of 10 (8G = 8*10^9 bytes), Ki/Mi/Gi/Ti powers of 2 "
                                   "(8Gi = 8*2^30)."),
    no_resolve: bool = typer.Option(False, "--no-resolve", help="Do not pin the tag to a "
                                    "digest through the registry (offline use)."),
    timeout: float = typer.Option(300, "--timeout", min=1, help="Seconds to wait for "
                                  "readiness."),
    no_rollback: bool = typer.Option(False, "--no-rollback", help="Leave a failed rollout "
                                     "as it is."),
    force: bool = typer.Option(False, "--force", help="Take over fields another tool (field "
                               "manager) set, e.g. replicas after kubectl scale, instead of "
                               "stopping with a conflict."),
    lock_wait: float = LockWaitOption,
    on: str | None = OnOption,
    flock_with: str | None = typer.Option(
        None, "--flock-with", metavar="ENV@MEMBER", help="Flock to the environment ENV on "
        "the member profile MEMBER: this schedd's FLOCK_TO is its collector, and the two "
        "pools share its pool password (copied Secret to Secret, never printed)."),
    campaign: str | None = typer.Option(None, "--campaign", help="Label the environment "
                                        "as part of this campaign (mme-rep campaign "
                                        "status NAME); give it on every deploy."),
    output: OutputFormat = OutputOption,
) -> None:
    """Deploy (install or upgrade) an environment and wait until it is ready.

    With a profile group (-F GROUP) it goes to the member with the most room for it:
    the plan shows each member's free capacity and why; --on MEMBER chooses instead.
    """
    from mmerep import environments
    from mmerep.campaign import flocking
    from mmerep.cli.output import LiveWorkloads, console, err_console, render
    from mmerep.profiles import get_profile, load_groups

    if profile_name in load_groups(profiles_file):
        profile_name = _place(template, image, profile_name, profiles_file, name, sets, on)
    shared_password = None
    if flock_with:
        sibling = flocking.parse_sibling(flock_with)
        address, shared_password = flocking.sibling_pool(
            sibling, get_profile(sibling.member, profiles_file))
        sets = [*sets, f"flock_to={address}"]
        err_console.print(f"flocking to {sibling.env} on {sibling.member} at {address}")
    target = get_profile(profile_name, profiles_file)
    sets = [f"{k}={v}" for k, v in flocking.flock_params(
        target, template, {}).items() if not any(s.startswith(f"{k}=") for s in sets)] + sets

    profile, rendered = _render(template, image, profile_name, profiles_file, name, sets,
                                no_resolve)
    if campaign:
        from mmerep.campaign.progress import label_campaign

        label_campaign(rendered.objects, campaign)
    kube = _connect(profile)
    if shared_password is not None:
        flocking.share_password(kube, rendered.env_name, rendered.namespace, template,
                                shared_password,
                                environments.namespace_object(rendered.namespace))

    def show_plan(changes: list[tuple[str, str]]) -> None:
        for action, what in changes:
            err_console.print(f"  {action:<10} {what}")

    with LiveWorkloads(f"deploying {rendered.env_name} ({rendered.image})",
                       prefix=f"{rendered.env_name}-") as live:
        result = environments.deploy(kube, rendered, timeout=timeout,
                                     rollback=not no_rollback, force=force,
                                     on_progress=live.update,
                                     on_plan=show_plan, lock_wait=lock_wait)
    for line in result.kept:
        err_console.print(line, soft_wrap=True)
    if result.action == "unchanged":
        err_console.print(f"[green]{rendered.env_name} is up to date[/] (revision "
                          f"{result.revision}); nothing changed")
    else:
        err_console.print(f"[green]{rendered.env_name} {result.action}[/]: revision "
                          f"{result.revision}, {len(result.changes)} object(s) changed")
    data = environments.environment_status(kube, rendered.namespace, rendered.env_name)
    render(data, output, status_table)
    if rendered.web and output is OutputFormat.table:
        console.print(environments.web_hint(profile, rendered), soft_wrap=True)


@app.command("render")
def render_cmd(
    template: str = typer.Argument(..., help="Template name."),
    image: str = typer.Argument(..., help="IMAGE:TAG or a full reference."),
    profile_name: str = ProfileOption,
    profiles_file: str | None = ProfilesFileOption,
    name: str | None = typer.Option(None, "--name", help="Environment name."),
    sets: list[str] = typer.Option([], "--set", help="Template parameter KEY=VALUE."),
    no_resolve: bool = typer.Option(False, "--no-resolve", help="Do not pin the digest."),
) -> None:
    """Print the environment as plain YAML (for kubectl or a GitOps tool).

    Generated secrets are not included: their values are made at first deploy and never
    printed.
    """
    import yaml

    _, rendered = _render(template, image, profile_name, profiles_file, name, sets, no_resolve)
    print(yaml.safe_dump_all(rendered.objects, sort_keys=False), end="")


@app.command("diff")
def diff_cmd(
    template: str = typer.Argument(..., help="Template name."),
    image: str = typer.Argument(..., help="IMAGE:TAG or a full reference."),
    profile_name: str = ProfileOption,
    profiles_file: str | None = ProfilesFileOption,
    name: str | None = typer.Option(None, "--name", help="Environment name."),
    sets: list[str] = typer.Option([], "--set", help="Template parameter KEY=VALUE."),
    no_resolve: bool = typer.Option(False, "--no-resolve", help="Do not pin the digest."),
) -> None:
    """Show what a deploy would change (server-side dry run); exit 1 when anything would."""
    from mmerep import environments
    from mmerep.cli.output import console

    profile, rendered = _render(template, image, profile_name, profiles_file, name, sets,
                                no_resolve)
    changes = environments.diff(_connect(profile), rendered)
    if not changes:
        console.print("no changes")
        return
    for change in changes:
        console.print(f"[bold]{change['action']}[/] {change['object']}")
        if change["diff"]:
            console.print(change["diff"], markup=False, highlight=False)
    raise typer.Exit(1)


@app.command("list")
def list_cmd(
    profile_name: str = ProfileOption,
    profiles_file: str | None = ProfilesFileOption,
    all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A",
                                        help="Every namespace, not only the profile's."),
    everywhere: bool = typer.Option(False, "--all", help="Every profile's namespace on its "
                                    "cluster (clusters read in parallel; one that cannot be "
                                    "read is said on its own line)."),
    output: OutputFormat = OutputOption,
) -> None:
    """Environments in the profile's namespace (or all)."""
    from mmerep.cli.reads import env_list

    env_list(profile_name, profiles_file, all_namespaces, everywhere, output)


@app.command("status")
def status_cmd(
    name: str = typer.Argument(..., help="Environment name."),
    profile_name: str = ProfileOption,
    profiles_file: str | None = ProfilesFileOption,
    on: str | None = OnOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Components, pods, restarts and recent warning events of one environment."""
    from mmerep.cli.reads import env_status

    env_status(name, profile_name, profiles_file, on, output)


@app.command("history")
def history_cmd(
    name: str = typer.Argument(..., help="Environment name."),
    profile_name: str = ProfileOption,
    profiles_file: str | None = ProfilesFileOption,
    on: str | None = OnOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Revisions of an environment, oldest first."""
    from mmerep import environments
    from mmerep.cli.output import render, table

    profile, kube = _target(profile_name, profiles_file, name, on)
    rows = environments.history(kube, profile.namespace, name)
    render(rows, output, lambda r: table(None, ["revision", "status", "time", "image", "note"],
                                         [(x["revision"], x["status"], x["time"],
                                           _short_image(x["image"]), x["note"]) for x in r]))


@app.command("rollback")
def rollback_cmd(
    name: str = typer.Argument(..., help="Environment name."),
    revision: int | None = typer.Argument(None, help="Revision to return to (default: the "
                                          "previous good one)."),
    profile_name: str = ProfileOption,
    profiles_file: str | None = ProfilesFileOption,
    on: str | None = OnOption,
    timeout: float = typer.Option(300, "--timeout", min=1, help="Seconds to wait."),
    lock_wait: float = LockWaitOption,
) -> None:
    """Re-apply an earlier revision (recorded as a new revision)."""
    from mmerep import environments
    from mmerep.cli.output import LiveWorkloads, console

    profile, kube = _target(profile_name, profiles_file, name, on)
    with LiveWorkloads(f"rolling back {name}", prefix=f"{name}-") as live:
        new = environments.rollback_to(kube, profile.namespace, name, revision,
                                       timeout=timeout, on_progress=live.update,
                                       lock_wait=lock_wait)
    console.print(f"[green]{name} rolled back[/]: now revision {new}")


@app.command("delete")
def delete_cmd(
    name: str = typer.Argument(..., help="Environment name."),
    profile_name: str = ProfileOption,
    profiles_file: str | None = ProfilesFileOption,
    on: str | None = OnOption,
    purge: bool = typer.Option(False, "--purge", help="Also delete data volumes (PVCs)."),
    timeout: float = typer.Option(120, "--timeout", min=1, help="Seconds to wait."),
    lock_wait: float = LockWaitOption,
) -> None:
    """Delete an environment and wait until every part is gone (data volumes stay)."""
    from mmerep import environments
    from mmerep.cli.output import Spinner, console

    profile, kube = _target(profile_name, profiles_file, name, on)
    with Spinner(f"deleting {name}"):
        gone = environments.delete_environment(kube, profile.namespace, name,
                                               purge=purge, timeout=timeout,
                                               lock_wait=lock_wait)
    console.print(f"[green]{name} deleted[/]: {len(gone)} objects"
                  + ("" if purge else " (data volumes kept; --purge removes them)"))


@app.command("repair")
def repair_cmd(
    name: str = typer.Argument(..., help="Environment name."),
    profile_name: str = ProfileOption,
    profiles_file: str | None = ProfilesFileOption,
    new_pool_password: bool = typer.Option(
        False, "--new-pool-password", help="If the pool secret is gone, make a new one (every "
        "pool pod restarts); never done otherwise."),
    timeout: float = typer.Option(300, "--timeout", min=1, help="Seconds to wait."),
    output: OutputFormat = OutputOption,
) -> None:
    """Put the current revision back: re-apply what drifted or was deleted, regenerate
    deleted generated secrets (not the pool password unless asked), restart pods stuck in
    CrashLoopBackOff or image-pull errors. Exit 1 if something could not be fixed.

    Example: mme-rep env repair -F dev-s3 sentinel3
    """
    from mmerep.cli.output import LiveWorkloads, console, render, table
    from mmerep.environments.repair import current_revision, repair

    profile, kube = _target(profile_name, profiles_file)
    current_revision(kube, profile.namespace, name)  # a clear error before any live view
    with LiveWorkloads(f"repairing {name}") as live:
        report = repair(kube, profile.namespace, name, new_pool_password=new_pool_password,
                        timeout=timeout, on_progress=live.update)
    data = {"name": name, "revision": report.revision,
            "done": [{"action": a, "object": o} for a, o in report.done],
            "not_fixed": report.not_fixed}
    if output is OutputFormat.table:
        if report.done:
            console.print(table(f"{name} revision {report.revision}: repaired",
                                ["action", "object"], report.done))
        else:
            console.print(f"[green]{name}[/]: revision {report.revision} is intact; "
                          "nothing to repair")
        for line in report.not_fixed:
            console.print(f"[red]not fixed[/]: {line}")
    else:
        render(data, output, lambda d: d)
    if report.not_fixed:
        raise typer.Exit(1)


@app.command("reinstall")
def reinstall_cmd(
    name: str = typer.Argument(..., help="Environment name."),
    profile_name: str = ProfileOption,
    profiles_file: str | None = ProfilesFileOption,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    timeout: float = typer.Option(300, "--timeout", min=1, help="Seconds to wait."),
) -> None:
    """Reinstall in one command: delete the environment and deploy its current revision
    again, keeping the generated secrets (pool password), the data volumes and the history.
    Running jobs are lost.

    Example: mme-rep env reinstall -F dev-s3 sentinel3 --yes
    """
    from mmerep.cli.output import LiveWorkloads, console
    from mmerep.environments.repair import current_revision, reinstall
    from mmerep.errors import UsageError

    profile, kube = _target(profile_name, profiles_file)
    _, revision, _ = current_revision(kube, profile.namespace, name)
    if not yes:
        import sys

        if not sys.stdin.isatty():
            raise UsageError(f"reinstalling {name} deletes every pod and running job",
                             hint="confirm with --yes")
        typer.confirm(f"Delete {name} in {profile.namespace} (running jobs are lost) and "
                      f"deploy revision {revision} again?", abort=True)
    with LiveWorkloads(f"reinstalling {name}") as live:
        new, kept = reinstall(kube, profile.namespace, name, timeout=timeout,
                              on_progress=live.update)
    console.print(f"[green]{name} reinstalled[/]: revision {revision} deployed again as "
                  f"revision {new}; kept {', '.join(kept) or 'nothing'}")


@app.command("open")
def open_cmd(
    env_name: str = typer.Argument(..., help="Environment name (a web one, e.g. jupyter)."),
    profile_name: str = ProfileOption,
    profiles_file: str | None = ProfilesFileOption,
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Local port (default: any "
                             "free one)."),
) -> None:
    """Open a web environment on a local port, through the API server's port-forward.

    Prints the local address with its token and forwards until Ctrl-C.
    Example: mme-rep env open -F dev-s3 notebooks
    """
    from mmerep.cli.output import console, err_console
    from mmerep.ssh import forward

    profile, kube = _target(profile_name, profiles_file)
    endpoint, target, path, token = forward.web_target(kube, profile, env_name)

    def listening(local_port: int) -> None:
        query = f"?token={token}" if token else ""
        console.print(f"{env_name}: http://127.0.0.1:{local_port}{path}{query}", soft_wrap=True)
        err_console.print(f"(forwarding to pod {target.pod} port {target.port}; Ctrl-C stops)")

    forward.serve(endpoint, target, local_port=port, on_listen=listening,
                  on_error=lambda message: err_console.print(f"[red]error:[/] {message}"))
