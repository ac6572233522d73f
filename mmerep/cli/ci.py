"""`mme-rep ci ...`: follow the GitLab pipelines that build the processor images."""

from __future__ import annotations

import sys
from typing import Any

import typer

from mmerep.cli.options import OutputFormat, OutputOption

app = typer.Typer(
    help="Follow the GitLab CI pipelines that build processor and environment images.\n\n"
    "The server and token come from GITLAB_URL and GITLAB_TOKEN (or CI_SERVER_URL and "
    "CI_JOB_TOKEN inside a job), else from python-gitlab's config file "
    "(~/.python-gitlab.cfg, $PYTHON_GITLAB_CFG). The project and ref default to the "
    "checkout's origin remote and branch.\n\n"
    "Examples:\n\n"
    "  mme-rep ci init --flavours htcondor-batch,interactive --image-name sentinel3\n\n"
    "  mme-rep ci status\n\n"
    "  mme-rep ci status --project processors/sentinel3 --ref main -o json\n\n"
    "  mme-rep ci logs mmerep:build:processor --follow\n\n"
    "  mme-rep ci trigger --var MMEREP_SCAN=false",
    no_args_is_help=True,
)

ProjectOption = typer.Option(None, "--project", "-p", help="GitLab project path, e.g. "
                             "processors/sentinel3 (default: $CI_PROJECT_PATH or the git "
                             "remote).")
RefOption = typer.Option(None, "--ref", "-r", help="Branch or tag (default: "
                         "$CI_COMMIT_REF_NAME or the checked-out branch).")
SectionOption = typer.Option(None, "--gitlab", "-g", help="Section of the python-gitlab "
                             "config file to use (default: its [global] default).")
# Tests and impatient users shorten the polling; not worth a line in --help.
PollOption = typer.Option(2.0, "--poll", min=0.0, hidden=True)

_COLOURS = {"success": "green", "failed": "red", "running": "blue", "pending": "yellow",
            "canceled": "magenta", "manual": "cyan", "skipped": "dim", "created": "dim"}


def _coloured(status: str | None) -> str:
    status = status or "-"
    colour = _COLOURS.get(status)
    return f"[{colour}]{status}[/]" if colour else status


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def pipeline_view(data: dict[str, Any]) -> Any:
    """A header line and the jobs table of one pipeline."""
    from rich.console import Group
    from rich.markup import escape
    from rich.text import Text

    from mmerep.cli.output import table

    head = Text.from_markup(
        f"pipeline [bold]#{data['id']}[/] {_coloured(data['status'])}  "
        f"{escape(data['project'])} @ {escape(data['ref'] or '-')} "
        f"({(data['sha'] or '')[:8]})  created {data['created_at'] or '-'}  "
        f"duration {_duration(data['duration'])}")
    head.append(f"\n{data['web_url'] or ''}", style="dim")
    jobs = table(None, ["stage", "job", "status", "duration", "id", "failure"],
                 [(escape(j["stage"] or "-"), escape(j["name"] or "-"), _coloured(j["status"]),
                   _duration(j["duration"]),
                   j["id"], (j["failure_reason"] or "")
                   + (" (allowed)" if j["allow_failure"] and j["status"] == "failed" else ""))
                  for j in data["jobs"]])
    return Group(head, jobs)


class LivePipeline:
    """The pipeline's jobs table, redrawn while it runs; without a terminal, one line per
    change."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._live: Any = None
        self._last: str = ""

    def __enter__(self) -> LivePipeline:
        from mmerep.cli.output import err_console

        err_console.print(self.label, soft_wrap=True, markup=False)
        if err_console.is_terminal:
            from rich.live import Live

            self._live = Live(console=err_console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def update(self, data: dict[str, Any]) -> None:
        from mmerep.cli.output import err_console

        if self._live is not None:
            self._live.update(pipeline_view(data))
            return
        summary = f"{data['status']}: " + ", ".join(f"{j['name']} {j['status']}"
                                                    for j in data["jobs"])
        if summary != self._last:
            self._last = summary
            err_console.print(f"  {summary}", soft_wrap=True, markup=False)

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)


def _parse_vars(values: list[str]) -> dict[str, str]:
    from mmerep.grammar.assignments import parse_assignments

    return parse_assignments(values, "--var", "MMEREP_SCAN=false")


def _failure_line(data: dict[str, Any]) -> tuple[str, str | None]:
    failed = data["failed_jobs"]
    jobs = "; ".join(f"job {j['name']} (stage {j['stage']}): {j['failure_reason'] or 'failed'}"
                     for j in failed)
    message = f"pipeline #{data['id']} {data['status']}" + (f": {jobs}" if jobs else "")
    hint = (f"read its log: mme-rep ci logs {failed[0]['id']} --project {data['project']}"
            if failed else data["web_url"])
    return message, hint


@app.command("init")
def init_cmd(
    image_name: str = typer.Option(..., "--image-name", "-n", help="Processor image name, "
                                   "e.g. sentinel3."),
    flavours: str = typer.Option("htcondor-batch,interactive,jupyter", "--flavours",
                                 help="Comma-separated environment flavours to build, or "
                                 "'none'."),
    registry: str = typer.Option("harbor.example.org", "--registry", help="Registry host."),
    project: str = typer.Option("mme-rep", "--project", help="Registry project."),
    dockerfile: str = typer.Option("Dockerfile", "--dockerfile", help="The processor's "
                                   "Dockerfile."),
    context: str = typer.Option(".", "--context", help="Build context directory."),
    scan: bool = typer.Option(True, "--scan/--no-scan", help="Scan images with Trivy."),
    severity: str = typer.Option("CRITICAL", "--severity", help="Lowest severity that fails "
                                 "the scan: LOW, MEDIUM, HIGH or CRITICAL."),
    layer_cache: str = typer.Option("local", "--layer-cache", help="Where buildah keeps its "
                                    "layer cache: local (the runner's store) or registry (for "
                                    "runners whose store starts empty, as on Kubernetes)."),
    component: str | None = typer.Option(None, "--component", help="Use the CI/CD component "
                                         "HOST/GROUP/PROJECT/COMPONENT@VERSION instead of "
                                         "the plain include."),
    path: str = typer.Option(".", "--path", help="Where to write .gitlab-ci.yml (a file or "
                             "a directory)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a .gitlab-ci.yml that builds, scans and publishes this processor's images."""
    from mmerep.cipipeline import render_gitlab_ci, write_gitlab_ci
    from mmerep.cli.output import console

    chosen = [] if flavours.strip() == "none" else [
        f.strip() for f in flavours.split(",") if f.strip()]
    text = render_gitlab_ci(chosen, registry=registry, project=project, image_name=image_name,
                            dockerfile=dockerfile, context=context, scan=scan,
                            severity=severity.upper(), component_ref=component,
                            layer_cache=layer_cache)
    written = write_gitlab_ci(path, text, force=force)
    console.print(f"[green]wrote {written}[/]: builds {image_name}"
                  + (f" and {', '.join(chosen)}" if chosen else " (processor only)")
                  + "; set MMEREP_REGISTRY_USER and MMEREP_REGISTRY_PASSWORD as masked CI/CD "
                  "variables", soft_wrap=True)


@app.command("status")
def status_cmd(
    project: str | None = ProjectOption,
    ref: str | None = RefOption,
    section: str | None = SectionOption,
    output: OutputFormat = OutputOption,
) -> None:
    """The latest pipeline of a ref and its jobs (a failed one is shown, not an error).

    Examples:

      mme-rep ci status

      mme-rep ci status --project processors/sentinel3 --ref v0.1.0 -o json
    """
    from mmerep import gitlab_ci
    from mmerep.cli.output import render

    project = gitlab_ci.resolve_project(project)
    ref = gitlab_ci.resolve_ref(ref)
    gl = gitlab_ci.connect(config_section=section)
    render(gitlab_ci.latest_pipeline(gl, project, ref), output, pipeline_view)


@app.command("logs")
def logs_cmd(
    job: str = typer.Argument(..., help="Job id, or job name in the latest pipeline of the "
                              "ref."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job "
                                "ends."),
    project: str | None = ProjectOption,
    ref: str | None = RefOption,
    section: str | None = SectionOption,
    poll: float = PollOption,
) -> None:
    """Print a job's log; with --follow, stream it until the job ends.

    Examples:

      mme-rep ci logs 4711

      mme-rep ci logs mmerep:build:processor --follow --ref main
    """
    from mmerep import gitlab_ci

    project = gitlab_ci.resolve_project(project)
    named = not job.isdigit()
    ref = gitlab_ci.resolve_ref(ref) if named else ref
    gl = gitlab_ci.connect(config_section=section)
    for chunk in gitlab_ci.job_log(gl, project, job, follow=follow, ref=ref, poll=poll):
        sys.stdout.write(chunk)
        sys.stdout.flush()


@app.command("trigger")
def trigger_cmd(
    variables: list[str] = typer.Option([], "--var", metavar="KEY=VALUE",
                                        help="Pipeline variable (repeatable)."),
    project: str | None = ProjectOption,
    ref: str | None = RefOption,
    section: str | None = SectionOption,
    trigger_token: str | None = typer.Option(None, "--trigger-token", metavar="TOKEN",
                                             envvar="GITLAB_TRIGGER_TOKEN",
                                             help="Start it with a pipeline trigger token "
                                             "instead of your own token."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Start it and return at once."),
    timeout: float = typer.Option(3600, "--timeout", min=1, help="Seconds to wait for the "
                                  "end."),
    poll: float = PollOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Start a pipeline and follow it live until it ends; exit 1 when it fails.

    Examples:

      mme-rep ci trigger

      mme-rep ci trigger --ref v0.1.0 --var MMEREP_SCAN=false --var MMEREP_FLAVOURS=htcondor-batch
    """
    from mmerep import gitlab_ci
    from mmerep.cli.output import err_console, fail, render

    project = gitlab_ci.resolve_project(project)
    ref = gitlab_ci.resolve_ref(ref)
    values = _parse_vars(variables)
    gl = gitlab_ci.connect(config_section=section)
    data = gitlab_ci.trigger_pipeline(gl, project, ref, values, trigger_token=trigger_token)
    if not no_wait:
        with LivePipeline(f"pipeline #{data['id']} started on {project} @ {ref}, following "
                          f"it: {data['web_url']}") as live:
            data = gitlab_ci.wait_pipeline(gl, project, data["id"], live.update, poll=poll,
                                           timeout=timeout)
    render(data, output, pipeline_view)
    if no_wait or data["status"] == "success":
        return
    if data["status"] == "manual":
        err_console.print(f"pipeline #{data['id']} waits for a manual job: {data['web_url']}",
                          soft_wrap=True)
        return
    fail(*_failure_line(data))
    raise typer.Exit(1)
