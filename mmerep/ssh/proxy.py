"""`mme-rep ssh proxy HOST PORT`: OpenSSH's ProxyCommand, run once per connection.

It finds the environment's Ready pod by labels, opens the API server's port-forward to
the pod's ``ssh`` port and pumps bytes between stdin/stdout and it. If the API server
refuses the WebSocket port-forward, ``kubectl port-forward`` carries the connection
instead. Start-up counts (it runs for every ``ssh``/``scp``), so this module imports only
what that path needs: no Kubernetes client, no typer, no rich.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

from mmerep.errors import (
    KubeError,
    KubeForbidden,
    KubeNotFound,
    KubeUnauthenticated,
    KubeUnreachable,
    UsageError,
)
from mmerep.ssh.hosts import SshHost, parse_host

if TYPE_CHECKING:
    import subprocess

    from mmerep.portforward import RawApi
    from mmerep.ssh.routes import Route
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
# "kubectl" forces the kubectl fallback (tests and the benchmark use it).
VIA_ENV = "MMEREP_SSH_VIA"


class Target(NamedTuple):
    profile: Any
    host: SshHost
    namespace: str
    pod: str
    port: int


def _ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in pod.get("status", {}).get("conditions", []) or [])


def why_not_ready(pod: dict[str, Any]) -> str:
    """The scheduler's or the kubelet's reason a pod is not Ready, in a few words."""
    status = pod.get("status", {})
    for cond in status.get("conditions", []) or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}".strip()
    for cs in status.get("containerStatuses", []) or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting:
            return f"{cs['name']} {waiting.get('reason', 'waiting')}: " \
                   f"{waiting.get('message', '')}".strip(": ")
    return str(status.get("phase", "not ready"))


def ssh_port(pod: dict[str, Any], requested: int) -> int:
    """The container port named ``ssh`` (the Service maps 22 to it); else ``requested``."""
    for container in pod.get("spec", {}).get("containers", []):
        for port in container.get("ports", []) or []:
            if port.get("name") == "ssh":
                return int(port["containerPort"])
    return requested


def find_target(kube: Any, profile: Any, host: SshHost, port: int) -> Target:
    """The Ready pod behind ``host``; one clear error for each way it can be missing."""
    namespace = profile.namespace
    selector = f"{INSTANCE}={host.env},{COMPONENT}={host.component}"
    pods = kube.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                        query={"labelSelector": selector},
                        what=f"list pods in {namespace}")["items"]
    ready = [p for p in pods if _ready(p)]
    if ready:
        pod = sorted(ready, key=lambda p: p["metadata"]["name"])[0]
        return Target(profile, host, namespace, pod["metadata"]["name"], ssh_port(pod, port))
    if pods:
        pod = pods[0]
        raise KubeError(f"{host.env}-{host.component}: pod {pod['metadata']['name']} is "
                        f"{pod.get('status', {}).get('phase', 'not ready')}: {why_not_ready(pod)}",
                        hint=f"mme-rep env status -F {profile.name} {host.env}")
    parts = kube.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments",
                         query={"labelSelector": f"{INSTANCE}={host.env}"},
                         what=f"list deployments in {namespace}")["items"]
    if not parts:
        raise KubeNotFound(f"no environment {host.env} in namespace {namespace} "
                           f"(profile {profile.name})",
                           hint=f"mme-rep env list -F {profile.name}")
    components = sorted({p["metadata"].get("labels", {}).get(COMPONENT, "?") for p in parts})
    raise KubeNotFound(f"environment {host.env} has no running {host.component} pod "
                       f"(components: {', '.join(components)})",
                       hint=f"mme-rep env status -F {profile.name} {host.env}")


def connect(profile: Any) -> Any:
    """The gateway for ``profile``: its kubeconfig resolved from the cache (the client is
    imported only when the kubeconfig changed), and few retries (ssh is waiting)."""
    from mmerep.kube import Kube, RetryPolicy

    return Kube.from_kubeconfig(profile.kubeconfig, profile.context,
                                namespace=profile.namespace,
                                retry=RetryPolicy(attempts=3), request_timeout=15)


def _debug(message: str, *args: Any) -> None:
    """Log for --debug, without importing logging on the way to the first byte (--debug
    and the full CLI have imported it already)."""
    if "logging" in sys.modules:
        import logging

        logging.getLogger(__name__).debug(message, *args)


def resolve(host_name: str, port: int, profiles_file: str | None = None) -> tuple[Any, Target]:
    """(endpoint, target) for ``host_name``, through the profiles file and the gateway;
    remembers the host's route for the next connection (``routes``)."""
    from mmerep.portforward import endpoint_of
    from mmerep.profiles import load_profiles
    from mmerep.ssh import routes

    profiles = load_profiles(profiles_file)
    host = parse_host(host_name, profiles.values())
    profile = profiles[host.profile]
    kube = connect(profile)
    routes.save(host_name, profiles_file, routes.Route(
        profile.name, profile.namespace, profile.kubeconfig, profile.context,
        host.env, host.component))
    target = find_target(kube, profile, host, port)
    return endpoint_of(kube), target


def open_stream(endpoint: Any, target: Target, api: RawApi | None = None) -> tuple[Any, Any]:
    """(stream, kubectl process or None): the WebSocket port-forward (on ``api``'s
    connection when given), else kubectl's."""
    from mmerep.portforward import PortForward

    if os.environ.get(VIA_ENV) != "kubectl":
        try:
            return PortForward.open(endpoint, target.namespace, target.pod, target.port,
                                    api=api), None
        except (KubeForbidden, KubeNotFound, KubeUnreachable):
            raise
        except KubeError as exc:
            _debug("the API server refused the WebSocket port-forward (%s); "
                   "falling back to kubectl port-forward", exc.message)
    else:
        if api is not None:
            api.close()
        _debug("%s=kubectl: using kubectl port-forward", VIA_ENV)
    return kubectl_stream(target)


def _transient(exc: KubeError) -> bool:
    """Worth the full path (retries, re-resolving the kubeconfig) rather than an answer."""
    return isinstance(exc, KubeUnauthenticated) or exc.status == 429 or (exc.status or 0) >= 500


def open_known(route: Route, port: int) -> tuple[Any, Any] | None:
    """(stream, kubectl process or None) along a remembered route with the gateway's
    cached connection: the pod lookup and the port-forward on one TLS connection, with
    nothing but the standard library. None when that cannot decide (no cached
    connection, a transient failure, 401): the full path then takes over."""
    from mmerep.kubehttp import cache_key, kubeconfig_files, load_cached
    from mmerep.portforward import RawApi, endpoint_for

    key = cache_key(kubeconfig_files(route.kubeconfig), route.context)
    conn = load_cached(key) if key else None
    if conn is None:
        return None
    endpoint = endpoint_for(conn)
    try:
        api = RawApi(endpoint)
    except KubeUnreachable:
        return None
    host = SshHost(route.env, route.component, route.name)
    try:
        target = find_target(api, route, host, port)
        return open_stream(endpoint, target, api)
    except KubeError as exc:
        api.close()
        if _transient(exc):
            _debug("quick path: %s; taking the full path", exc.message)
            return None
        raise
    except OSError as exc:
        api.close()
        _debug("quick path: %s; taking the full path", exc)
        return None


def kubectl_binary() -> str:
    """$MMEREP_KUBECTL, else kubectl on PATH, else the local cluster's."""
    import shutil

    found = os.environ.get("MMEREP_KUBECTL") or shutil.which("kubectl")
    if found:
        return found
    from mmerep.cluster import build

    local = build.binary_path("kubectl")
    if local.exists():
        return str(local)
    raise UsageError("the API server refused the WebSocket port-forward and kubectl is not "
                     "on PATH for the fallback", hint="install kubectl")


def kubectl_stream(target: Target) -> tuple[Any, subprocess.Popen[str]]:
    import socket
    import subprocess

    from mmerep.ssh.pump import SocketStream

    cmd = [kubectl_binary()]
    if target.profile.kubeconfig:
        cmd += ["--kubeconfig", str(target.profile.kubeconfig)]
    if target.profile.context:
        cmd += ["--context", target.profile.context]
    cmd += ["-n", target.namespace, "port-forward", "--address", "127.0.0.1",
            f"pod/{target.pod}", f":{target.port}"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "Forwarding from 127.0.0.1:NNNN -> PORT"
    if "127.0.0.1:" not in line:
        proc.kill()
        err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
        raise KubeError(f"kubectl port-forward to {target.pod} failed: "
                        f"{err[-1] if err else 'no output'}")
    local_port = int(line.split("127.0.0.1:")[1].split()[0])
    sock = socket.create_connection(("127.0.0.1", local_port), timeout=15)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return SocketStream(sock), proc


def run(host_name: str, port: int, profiles_file: str | None = None,
        in_fd: int = 0, out_fd: int = 1) -> tuple[int, int]:
    """Connect stdin/stdout to ``host_name``'s sshd; (bytes sent, bytes received)."""
    from mmerep.ssh import routes
    from mmerep.ssh.pump import pump

    route = routes.lookup(host_name, profiles_file)
    opened = open_known(route, port) if route is not None else None
    if opened is None:
        import logging  # the full path logs (retries)

        if not logging.getLogger().handlers:  # no --debug: OpenSSH shows one line, ours
            logging.getLogger("mmerep").addHandler(logging.NullHandler())
        endpoint, target = resolve(host_name, port, profiles_file)
        _debug("%s -> pod %s/%s port %d", host_name, target.namespace, target.pod,
               target.port)
        opened = open_stream(endpoint, target)
    else:
        _debug("%s: remembered route, cached connection", host_name)
    stream, proc = opened
    try:
        return pump(stream, in_fd, out_fd)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(5)


def main(argv: list[str]) -> int | None:
    """`python -m mmerep ssh proxy [--profiles FILE] [--debug] HOST [PORT]` without the CLI
    framework (typer and rich cost more than the rest of the start-up). None: not for us
    (help, or arguments this short path does not know), so the full CLI takes it."""
    from mmerep.errors import MmerepError

    args, profiles_file, debug = list(argv), None, False
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag == "--profiles" and args:
            profiles_file = args.pop(0)
        elif flag == "--debug":
            debug = True
        else:
            return None
    if len(args) not in (1, 2) or (len(args) == 2 and not args[1].isdigit()):
        return None
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    try:
        run(args[0], int(args[1]) if len(args) == 2 else 22, profiles_file)
    except MmerepError as exc:
        if debug:
            raise
        print(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""),
              file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
