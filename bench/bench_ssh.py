"""SSH into an environment: direct vs `mme-rep ssh proxy` vs the kubectl port-forward recipe.

Against the same real sshd (mmerep/cluster/podsshd.py: the environment's own config
and keys, run unprivileged on 127.0.0.1; the scheduler pod's port-forward reaches it
through KWOK):
  direct       ssh -p PORT 127.0.0.1 (no API server; the floor)
  mme-rep      ssh HOST with ProxyCommand `python -m mmerep ssh proxy %h %p`
  kubectl      ProxyCommand: a script that starts `kubectl port-forward pod/X :2222`,
               waits for its "Forwarding from" line and runs `nc` to that port (the usual
               recipe), per connection like the proxy
Figures: connection set-up (`ssh host true`, median of interleaved rounds), scp of
200 MB to the sshd (best of rounds), and the proxy's start-up to the sshd's first byte
against `kubectl get pod` of the same pod and `python -c pass` (interleaved; wall clock
and the process's CPU time, which load disturbs less). Targets: proxy throughput >= 50
MB/s and >= 0.9x kubectl's, set-up no slower than kubectl's (issue 11); first byte at
most 2x `kubectl get pod` (issue 15).

The project's modules are byte-compiled first, as an installed package's are: with
PYTHONDONTWRITEBYTECODE set (CI, some shells) an editable checkout would otherwise
compile them again in every proxy process.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from mmerep.cluster.podsshd import Sshd
from testkit.private_cluster import private_cluster

HOST = "sentinel3-scheduler.local.mmerep-local"
RECIPE = """#!/bin/sh
# The usual recipe: kubectl port-forward, then connect to the forwarded port.
out=$(mktemp)
"$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" -n "$NS" port-forward "pod/$POD" :2222 >"$out" 2>&1 &
pid=$!
while ! grep -q 'Forwarding from 127.0.0.1' "$out"; do sleep 0.01; done
port=$(sed -n 's/^Forwarding from 127.0.0.1:\\([0-9]*\\).*/\\1/p' "$out" | head -n 1)
nc 127.0.0.1 "$port"
kill $pid 2>/dev/null
rm -f "$out"
"""


def _options(config: Path, key: Path, *extra: str) -> list[str]:
    return ["-F", str(config), "-i", str(key), "-o", "BatchMode=yes", "-o",
            "IdentitiesOnly=yes", *extra]


def _time(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, env=env, timeout=300)
    took = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr.decode().strip()}")
    return took


def _until_it_works(cmd: list[str], env: dict[str, str], timeout: float = 30.0) -> None:
    """KWOK takes the PortForward route a moment after it is applied: the first
    connection waits for it (a real pod's sshd needs no route)."""
    deadline = time.monotonic() + timeout
    while subprocess.run(cmd, capture_output=True, env=env, timeout=60).returncode != 0:
        if time.monotonic() > deadline:
            _time(cmd, env)  # fails, saying why
        time.sleep(0.5)


def _first_byte(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU seconds) from start to the sshd's banner. The proxy then gets a bad
    client banner, so the sshd drops the connection at once (a killed connection would
    hold one of its MaxStartups slots until LoginGraceTime)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stdin is not None
    banner = proc.stdout.read(4)
    took = time.perf_counter() - start
    assert banner == b"SSH-", banner
    with open(f"/proc/{proc.pid}/stat") as fh:  # CPU so far: the pump then idles
        fields = fh.read().rpartition(")")[2].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    proc.stdin.write(b"SSH-2.0-bench\r\n" + b"\xff" * 64)
    proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return took, cpu


def _timed_cpu(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU seconds of the command and its children)."""
    before = os.times()
    took = _time(cmd)
    after = os.times()
    return took, (after.children_user - before.children_user
                  + after.children_system - before.children_system)


def run(rounds: int = 5, megabytes: int = 200) -> list[dict[str, object]]:
    from mmerep import environments
    from mmerep.cluster import build, local
    from mmerep.profiles import validate

    if not shutil.which("nc") or not Path("/usr/sbin/sshd").exists():
        raise SystemExit("bench ssh needs sshd and nc: run .ci/setup-tools.sh")
    import compileall

    import mmerep
    compileall.compile_dir(str(Path(mmerep.__file__).parent), quiet=1)
    with private_cluster("mmerep-bench-ssh-") as work:
        local.up(local.ClusterSpec(nodes=4))
        kube = local.connect()
        ns = "bench-ssh"
        key = work / "id"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
        raw = {"context": local.CONTEXT, "kubeconfig": str(local.kubeconfig_path()),
               "namespace": ns, "registry": "local", "project": "mme-rep",
               "ssh_domain": "mmerep-local"}
        profiles = work / "profiles.yaml"
        profiles.write_text(yaml.safe_dump({"profiles": {"local": raw}}))
        profile = validate("local", raw)
        rendered = environments.render_environment(
            profile, "htcondor-batch", "sentinel3:v0.1.0", resolve=False,
            params={"authorized_keys": key.with_suffix(".pub").read_text(), "executors": 1})
        environments.deploy(kube, rendered, timeout=120)
        pod = kube.list_objects("v1", "Pod", ns, label_selector=(
            "app.kubernetes.io/component=scheduler"))[0]["metadata"]["name"]
        sshd = Sshd.for_environment(kube, ns, "sentinel3").start()
        try:
            sshd.route(kube, ns, pod, 2222)
            config = work / "ssh" / "config"
            subprocess.run([sys.executable, "-m", "mmerep", "ssh", "config", "--profiles",
                            str(profiles), "--write", "--ssh-config", str(config)],
                           check=True, capture_output=True)
            recipe = work / "recipe.sh"
            recipe.write_text(RECIPE)
            recipe.chmod(0o755)
            env = {**os.environ, "KUBECTL": str(build.binary_path("kubectl")),
                   "KUBECONFIG_FILE": str(local.kubeconfig_path()), "NS": ns, "POD": pod}
            user = sshd.user.pw_name
            known = config.parent / "mme-rep" / "local.known_hosts"
            alias = ["-o", f"HostKeyAlias={HOST}", "-o", f"UserKnownHostsFile={known}",
                     "-o", "StrictHostKeyChecking=yes"]
            cases: dict[str, tuple[list[str], str]] = {
                "direct": (_options(config, key, *alias, "-o", f"Port={sshd.port}"),
                           "127.0.0.1"),
                "mme-rep ssh proxy": (_options(config, key), HOST),
                "kubectl recipe": (_options(config, key, "-o", f"ProxyCommand={recipe}"),
                                   HOST),
            }
            for opts, host in cases.values():  # warm-up, and proof that each path works
                _until_it_works(["ssh", *opts, "-l", user, host, "true"], env)
            setup: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(rounds):
                for name, (opts, host) in cases.items():
                    setup[name].append(_time(["ssh", *opts, "-l", user, host, "true"], env))
            payload = Path(tempfile.mkdtemp(dir=work)) / "payload.bin"
            with open(payload, "wb") as fh:
                for _ in range(megabytes):
                    fh.write(os.urandom(1024 * 1024))
            scp: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(2):
                for name, (opts, host) in cases.items():
                    scp[name].append(_time(["scp", *opts, str(payload),
                                            f"{user}@{host}:/dev/null"], env))
            proxy = [sys.executable, "-m", "mmerep", "ssh", "proxy", "--profiles",
                     str(profiles), HOST, "22"]
            get_pod = [str(build.binary_path("kubectl")), "--kubeconfig",
                       str(local.kubeconfig_path()), "-n", ns, "get", "pod", pod]
            start: dict[str, list[tuple[float, float]]] = {
                "proxy": [], "kubectl get pod": [], "python -c pass": []}
            for _ in range(max(rounds, 9)):
                start["proxy"].append(_first_byte(proxy))
                start["kubectl get pod"].append(_timed_cpu(get_pod))
                start["python -c pass"].append(_timed_cpu([sys.executable, "-c", "pass"]))
        finally:
            sshd.stop()
    rows: list[dict[str, object]] = []
    base_setup = statistics.median(setup["kubectl recipe"])
    base_mbs = megabytes / min(scp["kubectl recipe"])
    for name in cases:
        mbs = megabytes / min(scp[name])
        row: dict[str, Any] = {
            "case": name, "setup_ms": round(statistics.median(setup[name]) * 1000),
            "setup_vs_kubectl": round(statistics.median(setup[name]) / base_setup, 2),
            "scp_MBps": round(mbs, 1), "scp_vs_kubectl": round(mbs / base_mbs, 2)}
        if name == "mme-rep ssh proxy":
            row["targets"] = "setup<=1.0x, scp>=50MB/s and >=0.9x"
            row["load"] = _load()
        rows.append(row)
    wall = {k: statistics.median(t for t, _ in v) for k, v in start.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in start.items()}
    rows.append({"case": "proxy start-up to first byte",
                 "median_ms": round(wall["proxy"] * 1000),
                 "kubectl_get_pod_ms": round(wall["kubectl get pod"] * 1000),
                 "vs_kubectl_get_pod": round(wall["proxy"] / wall["kubectl get pod"], 2),
                 "cpu_ms": round(cpu["proxy"] * 1000),
                 "kubectl_get_pod_cpu_ms": round(cpu["kubectl get pod"] * 1000),
                 "cpu_vs_kubectl_get_pod": round(cpu["proxy"] / cpu["kubectl get pod"], 2),
                 "python -c pass_ms": round(wall["python -c pass"] * 1000),
                 "target": "<=2.0x kubectl get pod", "load": _load()})
    return rows


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    for row in run():
        print(row)
