"""A local port that leads to a pod's port, through the same port-forward as the SSH proxy.

Used by `mme-rep env open` for web environments (JupyterLab): every local connection
gets its own port-forward and its own pump thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

from mmerep.errors import MmerepError
from mmerep.ssh.proxy import Target, open_stream
from mmerep.ssh.pump import pump


def serve(endpoint: Any, target: Target, *, local_port: int = 0,
          on_listen: Callable[[int], None] | None = None,
          stop: threading.Event | None = None,
          on_error: Callable[[str], None] | None = None) -> None:
    """Accept on 127.0.0.1:``local_port`` until ``stop`` is set (or Ctrl-C)."""
    try:
        listener = socket.create_server(("127.0.0.1", local_port))
    except OSError as exc:
        raise MmerepError(f"cannot listen on 127.0.0.1:{local_port}: {exc.strerror}",
                          hint="choose another --port") from None
    listener.settimeout(0.5)
    if on_listen:
        on_listen(listener.getsockname()[1])
    stop = stop or threading.Event()

    def carry(conn: socket.socket) -> None:
        with conn:
            try:
                stream, proc = open_stream(endpoint, target)
            except MmerepError as exc:
                if on_error:
                    on_error(exc.message)
                return
            try:
                pump(stream, conn.fileno(), conn.fileno())
            finally:
                if proc is not None:
                    proc.terminate()

    with listener:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=carry, args=(conn,), daemon=True).start()
    with contextlib.suppress(OSError):
        listener.close()


def web_target(kube: Any, profile: Any, env_name: str) -> tuple[Any, Target, str, str]:
    """(endpoint, target, path, token) of a web environment, from its latest revision."""
    import base64

    from mmerep import environments
    from mmerep.errors import UsageError
    from mmerep.portforward import endpoint_of
    from mmerep.ssh.hosts import SshHost
    from mmerep.ssh.proxy import find_target

    records = environments.read_records(kube, profile.namespace, env_name)
    if not records:
        raise UsageError(f"environment {env_name} not found in namespace {profile.namespace}",
                         hint=f"mme-rep env list -F {profile.name}")
    rendered = environments.rendered_from_record(records[-1])
    if not rendered.web:
        raise UsageError(f"environment {env_name} ({rendered.template}) has no web address",
                         hint=f"reach it with: mme-rep ssh -F {profile.name} {env_name}")
    component = rendered.web.get("service", "web")
    port = int(rendered.params.get("port") or rendered.web.get("port", 80))
    token = ""
    for short, keys in rendered.secrets.items():
        secret = kube.get("v1", "Secret", f"{env_name}-{short}", profile.namespace)
        if secret and "token" in keys:
            token = base64.b64decode(secret["data"]["token"]).decode()
    target = find_target(kube, profile, SshHost(env_name, component, profile.name), port)
    return endpoint_of(kube), target, str(rendered.web.get("path", "/")), token
