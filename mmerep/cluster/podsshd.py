"""A stand-in for a simulated pod's sshd: a real OpenSSH sshd run the way the pod runs it.

KWOK's pods run no containers, so the demo, the SSH tests and the SSH benchmark start
this sshd on 127.0.0.1 and route the scheduler pod's port-forward to it (KWOK's
PortForward). It runs as an unprivileged user (the current one, or `mmerep-ssh` as root;
.ci/setup-tools.sh creates it), with the environment's own sshd_config, host keys and
authorized keys, read from its ConfigMap and Secret. Only the pod's paths, the port and
the listen address are rewritten, to point at a private directory.
"""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from mmerep.errors import ClusterError

SSHD = "/usr/sbin/sshd"
ROOT_USER = "mmerep-ssh"
POD_PATHS = {"/etc/mme-rep/ssh-host/": "ssh-host/", "/etc/mme-rep/ssh-keys/": "ssh-keys/",
             "/run/sshd/": "run/"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def login_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(ROOT_USER)
    except KeyError:
        raise ClusterError(f"user {ROOT_USER} is missing: run .ci/setup-tools.sh as root "
                           "(sshd runs unprivileged, as in the pods)") from None


class Sshd:
    def __init__(self, sshd_config: str, host_keys: dict[str, str], authorized_keys: str) -> None:
        self.user = login_user()
        base = Path(self.user.pw_dir) / ".cache" / "mme-rep-sshd"
        base.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="sshd-", dir=base))
        self.port = free_port()
        for sub in ("ssh-host", "ssh-keys", "run"):
            (self.dir / sub).mkdir(mode=0o755)
        for name, text in host_keys.items():
            self._write(f"ssh-host/{name}", text, 0o400)
        self.set_authorized_keys(authorized_keys)
        config = sshd_config
        for pod, ours in POD_PATHS.items():
            config = config.replace(pod, f"{self.dir}/{ours}")
        lines = [line for line in config.splitlines()
                 if not line.strip().lower().startswith(("port ", "listenaddress "))]
        self._write("sshd_config", "\n".join(
            [f"Port {self.port}", "ListenAddress 127.0.0.1", *lines]) + "\n", 0o644)
        self._chown(base)
        self.log = self.dir / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_environment(cls, kube: Any, namespace: str, env: str) -> Sshd:
        """From the environment's own objects, as the pod mounts them."""
        config = kube.get("v1", "ConfigMap", f"{env}-ssh", namespace)["data"]["sshd_config"]
        secret = kube.get("v1", "Secret", f"{env}-ssh-hostkeys", namespace)["data"]
        keys = {k: base64.b64decode(v).decode() for k, v in secret.items()
                if not k.endswith(".pub")}
        authorized = kube.get("v1", "ConfigMap", f"{env}-ssh-authorized-keys",
                              namespace)["data"]["authorized_keys"]
        return cls(config, keys, authorized)

    def _write(self, rel: str, text: str, mode: int) -> None:
        path = self.dir / rel
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.chmod(tmp, mode)
        if os.geteuid() == 0:
            os.chown(tmp, self.user.pw_uid, self.user.pw_gid)
        tmp.replace(path)

    def _chown(self, base: Path) -> None:
        if os.geteuid() != 0:
            return
        for path in [base, *base.rglob("*")]:
            if str(path).startswith(str(self.dir)) or path == base:
                os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def set_authorized_keys(self, text: str) -> None:
        """What the kubelet does when the ConfigMap changes."""
        self._write("ssh-keys/authorized_keys", text, 0o444)

    def start(self) -> Sshd:
        if not Path(SSHD).exists():
            raise ClusterError(f"{SSHD} not found", hint="apt-get install openssh-server "
                               "(or run .ci/setup-tools.sh)")
        kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        out = open(self.log, "wb")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")],
                                     stdout=out, stderr=out, cwd=self.dir, **kwargs)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise ClusterError(f"sshd did not start: {self.log.read_text()}") from None
                time.sleep(0.05)

    def route(self, kube: Any, namespace: str, pod: str, port: int,
              timeout: float = 30.0) -> None:
        """Send the pod's ``port`` (its port-forward) to this sshd, through KWOK, and wait
        until KWOK has taken the route (a moment after it is applied): a port-forward
        then gets the sshd's banner."""
        from mmerep.errors import KubeError

        route_port(kube, namespace, pod, port, self.port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if _banner(kube, namespace, pod, port).startswith(b"SSH-"):
                    return
                why = "no banner"
            except KubeError as exc:
                why = exc.message
            if time.monotonic() > deadline:
                raise ClusterError(f"KWOK did not route {namespace}/{pod}:{port} to the "
                                   f"sshd on 127.0.0.1:{self.port} within {timeout:.0f}s: "
                                   f"{why}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def route_port(kube: Any, namespace: str, pod: str, port: int, local_port: int) -> None:
    """A simulated pod's port-forward to ``port`` reaches 127.0.0.1:``local_port`` (KWOK's
    PortForward resource): how the tests, the benchmark and the demo put a real server
    (sshd, a web server) behind a KWOK pod."""
    kube.apply({"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "PortForward",
                "metadata": {"name": pod, "namespace": namespace},
                "spec": {"forwards": [{"ports": [port], "target": {
                    "address": "127.0.0.1", "port": local_port}}]}})


def _banner(kube: Any, namespace: str, pod: str, port: int, wait: float = 5.0) -> bytes:
    """The first bytes a port-forward to the pod's ``port`` brings (KubeError if none)."""
    import select

    from mmerep.portforward import PortForward, endpoint_of

    stream = PortForward.open(endpoint_of(kube), namespace, pod, port)
    try:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            select.select([stream], [], [], 0.2)
            data = stream.receive()
            if data is None:
                return b""
            if data:
                # A bad client banner: sshd drops the connection now, instead of holding
                # one of its MaxStartups slots until LoginGraceTime.
                stream.send(b"SSH-2.0-probe\r\n" + b"\xff" * 64)
                return data
        return b""
    finally:
        stream.close()
