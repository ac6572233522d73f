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
against `python -c pass`. Targets: proxy throughput >= 50 MB/s and >= 0.9x kubectl's,
set-up no slower than kubectl's.
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


def _first_byte(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    banner = proc.stdout.read(4)
    took = time.perf_counter() - start
    proc.kill()
    proc.wait()
    assert banner == b"SSH-", banner
    return took


def run(rounds: int = 5, megabytes: int = 200) -> list[dict[str, object]]:
    from mmerep import environments
    from mmerep.cluster import build, local
    from mmerep.profiles import validate

    if not shutil.which("nc") or not Path("/usr/sbin/sshd").exists():
        raise SystemExit("bench ssh needs sshd and nc: run .ci/setup-tools.sh")
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
            kube.apply({"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "PortForward",
                        "metadata": {"name": pod, "namespace": ns},
                        "spec": {"forwards": [{"ports": [2222], "target": {
                            "address": "127.0.0.1", "port": sshd.port}}]}})
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
            proxy_start = [_first_byte([sys.executable, "-m", "mmerep", "ssh", "proxy",
                                        "--profiles", str(profiles), HOST, "22"])
                           for _ in range(rounds)]
            python = [_time([sys.executable, "-c", "pass"]) for _ in range(rounds)]
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
        rows.append(row)
    rows.append({"case": "proxy start-up to first byte",
                 "median_ms": round(statistics.median(proxy_start) * 1000),
                 "python -c pass_ms": round(statistics.median(python) * 1000)})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
