"""`mme-rep demo` (run by ./mme-rep.sh demo): the main job on the embedded cluster."""

from __future__ import annotations


def demo(nodes: int = 4) -> None:
    """Bring the local cluster up, publish a sample image, deploy and scale an environment."""
    from mmerep import environments
    from mmerep.cli.env import _connect, status_table
    from mmerep.cli.options import OutputFormat
    from mmerep.cli.output import LiveWorkloads, Spinner, console, render
    from mmerep.cluster import local, sample
    from mmerep.profiles import get_profile

    with Spinner("starting the local cluster (the first run builds it: 10-20 min)") as progress:
        info = local.up(local.ClusterSpec(nodes=nodes), progress=progress)
    console.print(f"[green]1. cluster {info.name}[/] at {info.server} "
                  f"({'already running' if info.already_running else f'{info.seconds:.1f}s'})")
    digest = sample.push_sample_image(info.registry)
    console.print(f"[green]2. sample image[/] {info.registry}/{sample.SAMPLE_REPO}:"
                  f"{sample.SAMPLE_TAG} -> {digest}", soft_wrap=True)
    profile = get_profile("local")
    kube = _connect(profile)
    for step, executors in (("3. deploy", 2), ("4. scale executors to 6", 6)):
        console.print(f"[green]{step}[/]: mme-rep env deploy -F local htcondor-batch "
                      f"sentinel3:{sample.SAMPLE_TAG} --set executors={executors}")
        rendered = environments.render_environment(
            profile, "htcondor-batch", f"sentinel3:{sample.SAMPLE_TAG}",
            params={"executors": executors})
        with LiveWorkloads(f"deploying {rendered.env_name}",
                           prefix=f"{rendered.env_name}-") as live:
            result = environments.deploy(kube, rendered, timeout=180, on_progress=live.update)
        console.print(f"   {result.action}, revision {result.revision}")
    render(environments.environment_status(kube, profile.namespace, "sentinel3"),
           OutputFormat.table, status_table)
    from mmerep.errors import MmerepError
    from mmerep.ssh.demo import ssh_into_scheduler

    try:  # a real sshd stands in for the simulated pod's while the real ssh connects
        cmd, said = ssh_into_scheduler(kube, profile, "sentinel3", local.state_dir() / "ssh")
        console.print(f"[green]5. ssh[/]: {' '.join(cmd)}\n   -> {said}", soft_wrap=True)
    except MmerepError as exc:
        console.print(f"[yellow]5. ssh skipped[/]: {exc}", soft_wrap=True)
    console.print(f"\nUse it: export KUBECONFIG={info.kubeconfig}\n"
                  "        ./mme-rep.sh env status sentinel3 / env history sentinel3\n"

                  "Stop it: ./mme-rep.sh cluster down", soft_wrap=True)
