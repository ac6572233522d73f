"""The demo's last step: the real `ssh` client into the scheduler, through the proxy.

KWOK's scheduler pod runs no sshd, so a real one stands in for it on 127.0.0.1 (run
unprivileged with the environment's own config and keys) while the demo connects.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from mmerep.ssh import manage
from mmerep.ssh.hosts import domain_of, host_name


def ssh_into_scheduler(kube: Any, profile: Any, env: str, workdir: Path,
                       command: str = "hostname") -> tuple[list[str], str]:
    """(the ssh command a user types, what it printed)."""
    from mmerep.cluster.podsshd import Sshd
    from mmerep.ssh.proxy import ssh_port

    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mme-rep demo",
                        "-f", str(key)], check=True, capture_output=True)
    manage.add_key(kube, profile.namespace, env, key.with_suffix(".pub").read_text())
    pod = _running_scheduler(kube, profile.namespace, env)
    sshd = Sshd.for_environment(kube, profile.namespace, env).start()
    try:
        sshd.route(kube, profile.namespace, pod["metadata"]["name"], ssh_port(pod, 2222))
        config = workdir / "config"
        block, known = manage.render_client(profile, manage.environment_keys(
            kube, profile.namespace), config)
        manage.write_client(profile, block, known, config)
        host = host_name(env, "scheduler", profile.name, str(domain_of(profile)))
        cmd = ["ssh", "-F", str(config), "-i", str(key), "-l", sshd.user.pw_name, host,
               command]
        out = subprocess.run([*cmd[:1], "-o", "BatchMode=yes", *cmd[1:]], capture_output=True,
                             text=True, timeout=60)
        text = out.stdout.strip() if out.returncode == 0 else \
            f"failed ({out.returncode}): {out.stderr.strip()}"
        return cmd, text
    finally:
        sshd.stop()


def _running_scheduler(kube: Any, namespace: str, env: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        pods = [p for p in kube.list_objects(
            "v1", "Pod", namespace, label_selector=f"app.kubernetes.io/instance={env},"
            "app.kubernetes.io/component=scheduler")
            if p.get("status", {}).get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]
        if pods or time.monotonic() > deadline:
            return dict(pods[0])
        time.sleep(0.2)
