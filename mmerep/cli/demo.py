"""`mme-rep demo` (run by ./mme-rep.sh demo): the main job on the embedded cluster."""

from __future__ import annotations

# 310 executors of 2 CPU / 8G (the seed's day): 7 fit on a 16-CPU node beside synclocal.
DEMO_NODES = 48


def demo(nodes: int = DEMO_NODES) -> None:
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
    console.print(f"[green]3. deploy[/]: mme-rep env deploy -F local htcondor-batch "
                  f"sentinel3:{sample.SAMPLE_TAG}")
    rendered = environments.render_environment(
        profile, "htcondor-batch", f"sentinel3:{sample.SAMPLE_TAG}", params={"executors": 2})
    with LiveWorkloads(f"deploying {rendered.env_name}",
                       prefix=f"{rendered.env_name}-") as live:
        result = environments.deploy(kube, rendered, timeout=180, on_progress=live.update)
    console.print(f"   {result.action}, revision {result.revision}")
    scaler_in_pod(kube, profile.namespace, rendered.env_name)
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
                  "        ./mme-rep.sh scaler sentinel3 \\[scale N | vscale CPU MEM | daemon on]\n"
                  "Stop it: ./mme-rep.sh cluster down", soft_wrap=True)


def scaler_in_pod(kube: object, namespace: str, env_name: str) -> None:
    """The scientist's part: /configs/scaler.sh in the scheduler pod, through KWOK's exec
    routing (a local process with the pod's files and its service account's token)."""
    import subprocess
    import time

    from mmerep.cli.output import console
    from mmerep.cluster import build, local, podexec
    from mmerep.errors import ClusterError

    pods = kube.list_objects("v1", "Pod", namespace, label_selector=(  # type: ignore[attr-defined]
        f"app.kubernetes.io/instance={env_name},app.kubernetes.io/component=scheduler"))
    pod = pods[0]["metadata"]["name"]
    script = kube.get("v1", "ConfigMap", f"{env_name}-condor",  # type: ignore[attr-defined]
                      namespace)["data"]["scaler.sh"]
    root = local.state_dir() / "pods" / namespace / pod
    podexec.pod_root(kube, namespace, pod, root, files={"configs/scaler.sh": script},
                     service_account=f"{env_name}-scaler")
    console.print(f"[green]4. in the scheduler pod[/] {pod} (KWOK routes the exec to a local "
                  f"process with the pod's /configs and its service-account token)",
                  soft_wrap=True)
    kubectl = [str(build.binary_path("kubectl")), "--kubeconfig", str(local.kubeconfig_path()),
               "exec", "-n", namespace, pod, "-c", "sshd", "--", "./configs/scaler.sh"]
    for args in ([], ["vscale", "2", "8G"], ["scale", "310"]):
        console.print(f"$ /configs/scaler.sh {' '.join(args)}".rstrip(), soft_wrap=True)
        for attempt in range(30):  # kwok takes a moment to pick up a new Exec
            out = subprocess.run([*kubectl, *args], capture_output=True, text=True,
                                 timeout=900)
            if "no exec found" not in out.stderr or attempt == 29:
                break
            time.sleep(1)
        print(out.stdout, end="", flush=True)
        # KWOK's exec answers 1 for any failure and names the command's own exit code;
        # 3 is scale's "some executors stay Pending", which the summary line says.
        if out.returncode != 0 and "exit status 3" not in out.stderr:
            raise ClusterError(f"scaler.sh {' '.join(args)} failed: {out.stderr.strip()}")
