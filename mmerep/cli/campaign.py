"""`mme-rep campaign ...`: how many executors where finish the work by a deadline."""

from __future__ import annotations

from typing import Any

import typer

from mmerep.cli.options import OutputFormat, OutputOption

app = typer.Typer(
    help="Plan a reprocessing campaign across a profile group's clusters: executors per "
    "member to finish by a deadline, and the end date with what is deployed now.\n\n"
    "Examples:\n\n"
    "  mme-rep campaign plan -F general --jobs 120000 --cpu-time 2h --memory 4Gi "
    "--deadline 2027-03-01\n\n"
    "  mme-rep campaign plan -F local --room local=40 --jobs 1000 --cpu-time 2h "
    "--memory 4Gi --deadline 2027-01-11 -o json",
    no_args_is_help=True,
)


@app.callback()
def _group() -> None:
    """Plan a reprocessing campaign across a profile group's clusters."""


def _counts(items: list[str], option: str) -> dict[str, int]:
    from mmerep.errors import UsageError
    from mmerep.grammar.assignments import parse_assignments

    result = {}
    for member, text in parse_assignments(items, option, "dev-a=40").items():
        if not text.isdigit():
            raise UsageError(f"{option} {member}={text}: not a whole number of executors",
                             hint=f"e.g. {option} {member}=40")
        result[member] = int(text)
    return result


def _plan_view(data: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.text import Text

    from mmerep.cli.output import table

    work = data["work"]
    rows = [(m["name"], m["executors"], m["deployed"], f"+{m['add']}",
             m["slots_per_executor"], m["available"]) for m in data["members"]]
    verdict = (Text("on time", style="green") if data["on_time"]
               else Text("the deadline cannot be met", style="bold red"))
    lines: list[Any] = [
        Text(f"{work['jobs']} jobs of {data['job_wall_seconds'] / 3600:g} h on "
             f"{work['job_cpus']} CPU and {work['memory']}; deadline {data['deadline']}"),
        table(None, ["member", "executors", "deployed", "add", "jobs/executor",
                     "fit there"], rows),
        *(Text(f"skipped {name}: {why}", overflow="fold")
          for name, why in data["skipped"].items()),
        verdict,
        Text(f"end with this plan:           {data['end_with_plan'] or 'never'}"),
        Text(f"end with what is deployed now: {data['end_with_deployed'] or 'never'}"),
    ]
    if not data["on_time"]:
        late = data["late_by_seconds"]
        if late is not None:
            from datetime import timedelta

            lines.append(Text(f"late by {timedelta(seconds=round(late))} with every "
                              "executor that fits"))
        lines += [Text(f"would meet it: {w}") for w in data["would_meet_it"]]
    return Group(*lines)


@app.command("plan")
def plan_cmd(
    jobs: int | None = typer.Option(None, "--jobs", min=1, help="Number of jobs."),
    cpu_time: str = typer.Option(..., "--cpu-time", help="Mean CPU time per job: 90s, 45m, "
                                 "2h, 1.5d."),
    memory: str | None = typer.Option(None, "--memory", help="Memory per job, e.g. 4Gi."),
    from_queue: str | None = typer.Option(None, "--from-queue", metavar="ENV", help="Measure "
                                          "the jobs, their CPUs and memory from ENV's "
                                          "HTCondor queue (instead of --jobs/--memory)."),
    collector: str | None = typer.Option(None, "--collector", metavar="HOST:PORT",
                                         help="With --from-queue: the pool's collector "
                                         "(default: ENV-collector.NAMESPACE.svc:9618)."),
    deadline: str = typer.Option(..., "--deadline", help="ISO date or date-time (UTC unless "
                                 "it says), e.g. 2027-03-01."),
    job_cpus: str = typer.Option("1", "--job-cpus", help="Cores one job uses."),
    profile_name: str = typer.Option("local", "--profile", "-F", help="Profile or profile "
                                     "group."),
    profiles_file: str | None = typer.Option(None, "--profiles", help="Profiles file."),
    executor_cpu: str | None = typer.Option(None, "--executor-cpu", help="Executor CPU "
                                            "(default: each member profile's request)."),
    executor_memory: str | None = typer.Option(None, "--executor-memory", help="Executor "
                                               "memory (default: the profile's request)."),
    room: list[str] = typer.Option([], "--room", metavar="MEMBER=N", help="Executors that "
                                   "still fit on MEMBER, typed in instead of read live."),
    deployed: list[str] = typer.Option([], "--deployed", metavar="MEMBER=N", help="Executors "
                                       "running on MEMBER, typed in instead of read live."),
    campaign: str | None = typer.Option(None, "--campaign", help="Count only the executors "
                                        "of environments labelled mme-rep/campaign=NAME."),
    now: str | None = typer.Option(None, "--now", help="Plan as of this time (default: "
                                   "now)."),
    output: OutputFormat = OutputOption,
) -> None:
    """Executors per member that finish the work by the deadline, and the end dates."""
    from datetime import UTC, datetime

    from mmerep.campaign.members import member_rooms
    from mmerep.campaign.plan import Work, parse_duration, parse_when, plan_campaign
    from mmerep.cli.output import render
    from mmerep.errors import UsageError
    from mmerep.profiles import members_of
    from mmerep.quantity import parse_cpu, parse_memory

    profiles = members_of(profile_name, profiles_file)
    per_job = parse_memory(memory, "--memory") if memory else None
    if from_queue:
        from mmerep.campaign.measured import work_from_queue
        from mmerep.condor import BindingsPool

        address = collector or f"{from_queue}-collector.{profiles[0].namespace}.svc:9618"
        work = work_from_queue(BindingsPool(from_queue, collector=address),
                               parse_duration(cpu_time), per_job)
    elif jobs is None or per_job is None:
        raise UsageError("the work is missing: give --jobs and --memory, or --from-queue ENV",
                         hint="e.g. --jobs 120000 --cpu-time 2h --memory 4Gi")
    else:
        work = Work(jobs, parse_duration(cpu_time), per_job, parse_cpu(job_cpus, "--job-cpus"))
    when = parse_when(deadline)
    start = parse_when(now, "--now") if now else datetime.now(UTC)
    members = member_rooms(profiles, executor_cpu,
                           executor_memory, _counts(room, "--room"),
                           _counts(deployed, "--deployed"), campaign)
    result = plan_campaign(work, when, start, members)
    render(result.to_dict(), output, _plan_view)
    if not result.on_time:
        raise typer.Exit(1)


def _status_view(data: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.text import Text

    from mmerep.cli.output import table

    envs = [r for r in data["environments"] if "down" not in r]
    rows = [(r["member"], r["namespace"], r["environment"], f"{r['ready']}/{r['executors']}",
             f"{r['executor_cpu']} CPU / {r['executor_memory']}") for r in envs]
    lines: list[Any] = [
        table(None, ["member", "namespace", "environment", "executors ready", "size"], rows),
        *(Text(f"{r['member']}: down: {r['down']}", style="red", overflow="fold")
          for r in data["environments"] if "down" in r),
        Text(f"{data['done']}/{data['jobs']} jobs done ({data['percent_done']}%), "
             f"{data['slots_serving']} job slots serving"),
        Text(f"projected finish: {data['projected_finish'] or 'never (no executor serving)'}"),
    ]
    if "on_time" in data:
        lines.append(Text("on time" if data["on_time"] else
                          f"late: the deadline is {data['deadline']}",
                          style="green" if data["on_time"] else "bold red"))
    return Group(*lines)


@app.command("status")
def status_cmd(
    name: str = typer.Argument(..., help="Campaign (the mme-rep/campaign label of its "
                               "environments: env deploy --campaign NAME)."),
    jobs: int = typer.Option(..., "--jobs", min=1, help="Jobs in the campaign."),
    done: int = typer.Option(..., "--done", min=0, help="Jobs finished so far."),
    cpu_time: str = typer.Option(..., "--cpu-time", help="Mean CPU time per job, e.g. 2h."),
    memory: str = typer.Option(..., "--memory", help="Memory per job, e.g. 4Gi."),
    job_cpus: str = typer.Option("1", "--job-cpus", help="Cores one job uses."),
    deadline: str | None = typer.Option(None, "--deadline", help="Say whether it is on time."),
    profile_name: str = typer.Option("local", "--profile", "-F", help="Profile or group."),
    profiles_file: str | None = typer.Option(None, "--profiles", help="Profiles file."),
    now: str | None = typer.Option(None, "--now", help="As of this time (default: now)."),
    output: OutputFormat = OutputOption,
) -> None:
    """Progress and projected finish across every environment of a campaign.

    Example: mme-rep campaign status s3-olci -F general --jobs 120000 --done 45000
    --cpu-time 2h --memory 4Gi --deadline 2027-03-01
    """
    from datetime import UTC, datetime

    from mmerep.campaign.plan import Work, parse_duration, parse_when
    from mmerep.campaign.progress import project, read_campaign
    from mmerep.cli.output import render
    from mmerep.profiles import members_of
    from mmerep.quantity import parse_cpu, parse_memory

    work = Work(jobs, parse_duration(cpu_time), parse_memory(memory, "--memory"),
                parse_cpu(job_cpus, "--job-cpus"))
    start = parse_when(now, "--now") if now else datetime.now(UTC)
    when = parse_when(deadline) if deadline else None
    rows = read_campaign(members_of(profile_name, profiles_file), name)
    render(project(work, done, rows, start, when), output, _status_view)
