"""Start, stop and inspect the embedded local cluster.

KWOK's binary runtime runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and the kwok controller as local processes (all built by ``build``); nodes are Node
objects that the kwok controller keeps Ready and whose pods it moves to Running. A
local OCI registry (the CNCF distribution server) runs beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mmerep.cluster import build, versions
from mmerep.errors import ClusterError, KubeError, KubeTimeout
from mmerep.paths import state_dir

if TYPE_CHECKING:
    from mmerep.kube import Kube

NAME = "mmerep-local"
CONTEXT = "mmerep-local"
NODE_PREFIX = "mmerep-node-"
OnStep = Callable[[str], None]  # told each step of long work, as one line of text

# kwok's CRDs let later features add exec, log and port-forward routes per pod at run time.
# (Stage stays out: as a CRD it would replace kwok's built-in node and pod life cycles.)
KWOK_CRDS = ("ClusterPortForward", "PortForward", "ClusterExec", "Exec",
             "ClusterLogs", "Logs", "ClusterAttach", "Attach")


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class ClusterSpec:
    nodes: int = 4
    node_cpu: str = "16"
    node_memory: str = "64Gi"
    node_pods: int = 110
    # etcd syncs each commit to disk only when asked: this cluster is for trying things
    # and tests, where a write waiting on the disk (tens of ms on a busy machine) only
    # slows everything down; a killed process loses nothing (its writes are in the page
    # cache), a crash of the machine itself could.
    etcd_fsync: bool = False


@dataclass(frozen=True)
class ClusterInfo:
    name: str
    server: str
    context: str
    kubeconfig: Path
    registry: str
    nodes: int
    seconds: float
    already_running: bool
    restarted: tuple[str, ...] = ()  # components restarted on the existing data


def select(name: str | None) -> None:
    """Work on the local cluster ``name`` (None or "local": the default one) from now on.

    Each named cluster has its own state directory beside the default one
    (``<state dir>-NAME``: own etcd, ports, kubeconfig and registry), so several run side
    by side and ``cluster down`` of one leaves the others alone.
    """
    if name in (None, "local"):
        return
    from mmerep.errors import UsageError
    from mmerep.grammar.names import DNS_LABEL

    if not DNS_LABEL.fullmatch(name):
        raise UsageError(f"cluster name '{name}' is not a DNS label",
                         hint="lowercase letters, digits and '-', e.g. b")
    base = state_dir()
    os.environ["MMEREP_STATE_DIR"] = str(base.with_name(f"{base.name}-{name}"))


def kwok_workdir() -> Path:
    return state_dir() / "kwok"


def kwok_cluster_dir() -> Path:
    return kwok_workdir() / "clusters" / NAME


def kubeconfig_path() -> Path:
    return state_dir() / "kubeconfig"


def _state_file() -> Path:
    return state_dir() / "state.json"


def _read_state() -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(_state_file().read_text())
        return state
    except (OSError, ValueError):
        return {}


def _write_state(state: dict[str, Any]) -> None:
    state_dir().mkdir(parents=True, exist_ok=True)
    tmp = _state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(_state_file())


def _kwok_env() -> dict[str, str]:
    return {**os.environ, "KWOK_WORKDIR": str(kwok_workdir())}


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0): look at its state.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NODE_LEASE_SECONDS = 40
PORT_RANGE = (20000, 32000)  # below the kernel's ephemeral ports (32768 and up)


def _free_ports(count: int) -> list[int]:
    """Distinct free ports picked at random: kwokctl picks its own by counting down from
    32767, so two clusters created at the same moment (tests, other users) collide."""
    import random

    picked: list[int] = []
    rng = random.SystemRandom()
    while len(picked) < count:
        port = rng.randrange(*PORT_RANGE)
        if port in picked:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        picked.append(port)
    return picked


def kwokctl_config(binaries: dict[str, Path], spec: ClusterSpec | None = None,
                   ) -> list[dict[str, Any]]:
    """The KwokctlConfiguration: local binaries, RBAC on, bound to 127.0.0.1."""
    spec = spec or ClusterSpec()
    ports = dict(zip(("kubeApiserverPort", "etcdPort", "etcdPeerPort", "kwokControllerPort",
                      "kubeControllerManagerPort", "kubeSchedulerPort"), _free_ports(6),
                     strict=True))
    return [{
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {
            "runtime": "binary",
            "kubeVersion": versions.KUBERNETES,
            "etcdVersion": versions.ETCD.lstrip("v"),
            "kwokVersion": versions.KWOK,
            "kubeApiserverBinary": str(binaries["kube-apiserver"]),
            "kubeControllerManagerBinary": str(binaries["kube-controller-manager"]),
            "kubeSchedulerBinary": str(binaries["kube-scheduler"]),
            "kubectlBinary": str(binaries["kubectl"]),
            "etcdBinary": str(binaries["etcd"]),
            "kwokControllerBinary": str(binaries["kwok"]),
            "kubeAuthorization": True,
            "kubeAdmission": True,
            "securePort": True,
            "quietPull": True,
            "bindAddress": "127.0.0.1",
            "cacheDir": str(kwok_workdir() / "cache"),
            "disableQPSLimits": True,
            "enableCRDs": list(KWOK_CRDS),
            # How long a killed kwok controller's hold on its nodes outlives it (kwokctl's
            # binary runtime would take 200s, during which no pod there starts or stops).
            # (kwokctl multiplies it by its heartbeat factor, 5: 40s, renewed every 10s.)
            "nodeLeaseDurationSeconds": NODE_LEASE_SECONDS // 5,
            **ports,
        },
        "componentsPatches": [
            # One instance of each: no leader election, so a restarted controller-manager
            # or scheduler works at once instead of waiting out its killed predecessor's
            # lease.
            *({"name": name, "extraArgs": [{"key": "leader-elect", "value": "false"}]}
              for name in ("kube-controller-manager", "kube-scheduler")),
            # PodTemplates (which nothing here uses) are served from etcd, not the watch
            # cache, and etcd's history is compacted every few seconds: so a watch that
            # resumes from an old resourceVersion gets a real 410 Gone, as on a busy
            # cluster (tests/cluster/test_real_cluster.py). Other kinds keep their cache.
            {"name": "kube-apiserver", "extraArgs": [
                {"key": "etcd-compaction-interval", "value": "5s"},
                {"key": "watch-cache-sizes", "value": "podtemplates#0"},
            ]},
            *([] if spec.etcd_fsync else [
                {"name": "etcd", "extraArgs": [{"key": "unsafe-no-fsync", "value": "true"}]}]),
        ],
    }]


def node_manifest(index: int, spec: ClusterSpec) -> dict[str, Any]:
    """A simulated node that kwok manages (the annotation is what kwok selects on)."""
    name = f"{NODE_PREFIX}{index}"
    resources = {"cpu": spec.node_cpu, "memory": spec.node_memory, "pods": str(spec.node_pods),
                 "ephemeral-storage": "500Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "type": "kwok",
                "mme-rep/processing": "true", "mme-rep/local-ssd": "true",
            },
        },
        "spec": {},
        "status": {"allocatable": resources, "capacity": resources,
                   "nodeInfo": {"kubeletVersion": versions.KUBERNETES}},
    }


def _run_kwokctl(args: list[str], binaries: dict[str, Path], what: str,
                 timeout: float = 300) -> str:
    try:
        out = subprocess.run([str(binaries["kwokctl"]), *args], env=_kwok_env(),
                             capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"{what} timed out after {timeout:.0f}s") from exc
    if out.returncode != 0:
        lines = [ln for ln in (out.stderr + out.stdout).splitlines() if ln.strip()]
        raise ClusterError(f"{what} failed: {' | '.join(lines[-4:])}",
                           hint=f"component logs: {kwok_cluster_dir() / 'logs'}")
    return out.stdout


def _component_pids() -> dict[str, int | None]:
    pids: dict[str, int | None] = {}
    for f in sorted((kwok_cluster_dir() / "pids").glob("*.pid")):
        try:
            pids[f.stem] = int(f.read_text().strip())
        except (OSError, ValueError):
            pids[f.stem] = None
    return pids


def _cluster_running() -> bool:
    states = component_states()
    return bool(states) and all(alive for _, alive in states.values())


def _cluster_config() -> dict[str, Any] | None:
    """kwokctl's record of the cluster (components, args, ports); None before creation."""
    try:
        docs = list(yaml.safe_load_all((kwok_cluster_dir() / "kwok.yaml").read_text()))
    except (OSError, yaml.YAMLError):
        return None
    return next((d for d in docs if isinstance(d, dict)
                 and d.get("kind") == "KwokctlConfiguration" and d.get("components")), None)


def _pid_file(component: dict[str, Any]) -> Path:
    return kwok_cluster_dir() / "pids" / f"{Path(component.get('binary') or '').name}.pid"


def _runs(pid: int | None, binary: str) -> bool:
    """``pid`` is alive and is ``binary`` (not a zombie, not a reused pid)."""
    if not _pid_alive(pid):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return True  # no /proc: trust the pid
    return Path(argv0).name == Path(binary).name


def component_states() -> dict[str, tuple[int | None, bool]]:
    """Each control-plane component kwokctl made: its pid (None: none recorded), alive."""
    config = _cluster_config()
    if config is None:  # not (fully) created: whatever pid files there are
        return {name: (pid, _pid_alive(pid)) for name, pid in _component_pids().items()}
    states = {}
    for component in config["components"]:
        try:
            pid: int | None = int(_pid_file(component).read_text().strip())
        except (OSError, ValueError):
            pid = None
        states[component["name"]] = (pid, _runs(pid, component.get("binary") or ""))
    return states


def _forget_dead_pids() -> None:
    """Remove the pid files of dead components: kwokctl takes a zombie or a reused pid
    for a running component and would not start it again."""
    config = _cluster_config() or {}
    for component in config.get("components") or []:
        path = _pid_file(component)
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if not _runs(pid, component.get("binary") or ""):
            path.unlink(missing_ok=True)


def _write_kubeconfig() -> None:
    """Our own kubeconfig with the context renamed, from the one kwokctl wrote."""
    src = kwok_cluster_dir() / "kubeconfig.yaml"
    try:
        cfg = yaml.safe_load(src.read_text())
    except OSError as exc:
        raise ClusterError(f"kwokctl wrote no kubeconfig at {src}") from exc
    ctx = cfg["contexts"][0]
    ctx["name"] = CONTEXT
    cfg["contexts"] = [ctx]
    cfg["current-context"] = CONTEXT
    kubeconfig_path().parent.mkdir(parents=True, exist_ok=True)
    tmp = kubeconfig_path().with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(cfg))
    tmp.chmod(0o600)
    tmp.replace(kubeconfig_path())


def _start_registry(binaries: dict[str, Path], state: dict[str, Any]) -> None:
    if _pid_alive(state.get("registry_pid")):
        return
    port = state.get("registry_port") or _free_port()
    data = state_dir() / "registry"
    data.mkdir(parents=True, exist_ok=True)
    config = state_dir() / "registry.yml"
    config.write_text(yaml.safe_dump({
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(data)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))
    logfile = (state_dir() / "registry.log").open("ab")
    proc = subprocess.Popen([str(binaries["registry"]), "serve", str(config)],
                            stdout=logfile, stderr=logfile, start_new_session=True)
    state.update(registry_pid=proc.pid, registry_port=port)
    _write_state(state)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"the registry exited at start (code {proc.returncode})",
                               hint=f"see {state_dir() / 'registry.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise ClusterError(f"the registry did not listen on 127.0.0.1:{port} within 20s")


def connect(**kw: Any) -> Kube:
    """A ``Kube`` gateway to the local cluster."""
    from mmerep.kube import Kube

    if not kubeconfig_path().exists():
        raise ClusterError("the local cluster is not up", hint="run: mme-rep cluster up")
    return Kube.from_kubeconfig(kubeconfig_path(), CONTEXT, **kw)


def _ensure_nodes(spec: ClusterSpec, progress: OnStep) -> int:
    kube = connect()
    wanted = [node_manifest(i, spec) for i in range(1, spec.nodes + 1)]
    names = {n["metadata"]["name"] for n in wanted}
    for node in kube.list_objects("v1", "Node", label_selector="type=kwok"):
        name = node["metadata"]["name"]
        if name.startswith(NODE_PREFIX) and name not in names:
            kube.delete("v1", "Node", name)
    for node in wanted:
        if kube.get("v1", "Node", node["metadata"]["name"]) is None:
            kube.create(node)
    progress(f"waiting for {spec.nodes} nodes to be Ready")
    deadline = time.monotonic() + 60
    while True:
        ready = sum(1 for n in kube.list_objects("v1", "Node", label_selector="type=kwok")
                    if _node_ready(n) and n["metadata"]["name"] in names)
        if ready == spec.nodes:
            return ready
        if time.monotonic() > deadline:
            raise ClusterError(f"only {ready} of {spec.nodes} nodes became Ready in 60s",
                               hint=f"see {kwok_cluster_dir() / 'logs' / 'kwok-controller.log'}")
        time.sleep(0.2)


def _node_ready(node: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in node.get("status", {}).get("conditions", []))


def up(spec: ClusterSpec | None = None, progress: OnStep = _quiet, *,
       recreate: bool = False) -> ClusterInfo:
    """Start the cluster (idempotent): build binaries, run kwokctl, registry, nodes.

    Stopped components of an existing cluster (one crashed, or all gone after a reboot)
    are started again on its etcd data, keeping every object; only ``recreate`` deletes
    the cluster and its data first.
    """
    spec = spec or ClusterSpec()
    started = time.monotonic()
    binaries = build.ensure_binaries(progress)
    if recreate and state_dir().exists():
        progress("deleting the cluster and every object in it (--recreate)")
        down()
    state = _read_state()
    already = _cluster_running()
    restarted: tuple[str, ...] = ()
    if not already and _cluster_config() is not None:
        restarted = tuple(n for n, (_, alive) in component_states().items() if not alive)
        progress(f"restarting {', '.join(restarted)} on the existing data")
        _forget_dead_pids()
        restart_time = time.time()
        try:
            _run_kwokctl(["start", "cluster", "--name", NAME, "--wait", "120s"], binaries,
                         "kwokctl start cluster")
        except ClusterError as exc:
            raise ClusterError(exc.message, hint=f"see {kwok_cluster_dir() / 'logs'}; "
                               "mme-rep cluster up --recreate starts afresh (deletes every "
                               "object)") from None
        _wait_components(restarted)
        if "kwok-controller" in restarted:
            _release_dead_node_leases(restart_time)
    elif not already:
        if kwok_cluster_dir().exists():  # its creation never finished: no data to keep
            progress("removing an unfinished cluster's leftovers")
            _run_kwokctl(["delete", "cluster", "--name", NAME], binaries, "cleaning up")
        config = state_dir() / "kwokctl.yaml"
        state_dir().mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump_all(kwokctl_config(binaries, spec)))
        progress("starting etcd, kube-apiserver, controller-manager, scheduler and kwok")
        _run_kwokctl(["create", "cluster", "--name", NAME, "--config", str(config),
                      "--kubeconfig", "", "--wait", "120s"], binaries, "kwokctl create cluster")
    _write_kubeconfig()
    progress("starting the local registry")
    _start_registry(binaries, state)
    progress(f"ensuring {spec.nodes} simulated nodes")
    try:
        _restart_dead_components(binaries, progress)
        ready = _ensure_nodes(spec, progress)
        # Ready means a pod would be admitted: admission needs the namespace's default
        # ServiceAccount, which the controller manager makes after start (kind waits too).
        progress("waiting for the control plane to admit pods")
        deadline = time.monotonic() + 120
        while True:
            try:
                connect().wait_exists("v1", "ServiceAccount", "default", "default",
                                      timeout=10, hint=f"see {kwok_cluster_dir() / 'logs'}")
                break
            except KubeTimeout:
                if time.monotonic() > deadline:
                    raise
                _restart_dead_components(binaries, progress)
    except KubeError as exc:
        raise ClusterError(f"the cluster started but does not answer: {exc}",
                           hint=f"see {kwok_cluster_dir() / 'logs'}") from exc
    state = {**_read_state(), "spec": asdict(spec)}
    _write_state(state)
    kube = connect()
    return ClusterInfo(NAME, kube.host, CONTEXT, kubeconfig_path(),
                       f"127.0.0.1:{state['registry_port']}", ready,
                       time.monotonic() - started, already, restarted)


def _restart_dead_components(binaries: dict[str, Path], progress: OnStep) -> None:
    """A component that exited while the cluster came up is started again. On a loaded
    machine kube-controller-manager gives up when the API server is not healthy within
    its own start-up window, and nothing else would restart it."""
    dead = tuple(n for n, (_, alive) in component_states().items() if not alive)
    if not dead:
        return
    progress(f"restarting {', '.join(dead)}, which exited while starting")
    _forget_dead_pids()
    _run_kwokctl(["start", "cluster", "--name", NAME, "--wait", "120s"], binaries,
                 "kwokctl start cluster")
    _wait_components(dead)


def _release_dead_node_leases(before: float) -> None:
    """Delete the node leases a killed kwok controller last renewed before ``before``: the
    new one (another identity) manages those nodes' pods only once it holds them, which
    it then takes at its next try instead of after their expiry."""
    kube = connect()
    for lease in kube.list_objects("coordination.k8s.io/v1", "Lease", "kube-node-lease"):
        name = lease["metadata"]["name"]
        if name.startswith(NODE_PREFIX) and _lease_renewed(lease) < before:
            kube.delete("coordination.k8s.io/v1", "Lease", name, "kube-node-lease")
    # Back in charge of every node once it renewed all their leases after the restart.
    deadline = time.monotonic() + NODE_LEASE_SECONDS
    while time.monotonic() < deadline:
        leases = kube.list_objects("coordination.k8s.io/v1", "Lease", "kube-node-lease")
        fresh = [lease for lease in leases if lease["metadata"]["name"].startswith(NODE_PREFIX)
                 and _lease_renewed(lease) >= before]
        nodes = kube.list_objects("v1", "Node", label_selector="type=kwok")
        if len(fresh) >= len(nodes):
            return
        time.sleep(0.5)


def _lease_renewed(lease: dict[str, Any]) -> float:
    from datetime import datetime

    renewed = (lease.get("spec") or {}).get("renewTime") or ""
    try:
        return datetime.fromisoformat(renewed.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _wait_components(names: tuple[str, ...], timeout: float = 30.0) -> None:
    """kwokctl returns once it forked them: make sure each restarted one stays up."""
    deadline = time.monotonic() + timeout
    while True:
        down_now = [n for n, (_, alive) in component_states().items() if not alive]
        if not down_now:
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"{', '.join(down_now)} did not stay up after a restart",
                               hint=f"see {kwok_cluster_dir() / 'logs'}; mme-rep cluster up "
                               "--recreate starts afresh (deletes every object)")
        time.sleep(0.2)


def registry_address() -> str:
    state = _read_state()
    if not _pid_alive(state.get("registry_pid")):
        raise ClusterError("the local registry is not running", hint="run: mme-rep cluster up")
    return f"127.0.0.1:{state['registry_port']}"


def _stop_pid(pid: int | None, timeout: float = 10) -> None:
    if not _pid_alive(pid):
        return
    assert pid is not None
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def down() -> bool:
    """Stop everything and remove the cluster's state; False when nothing was running."""
    was_running = _cluster_running()
    pids = _component_pids()
    state = _read_state()
    if kwok_cluster_dir().exists():
        binaries = {b: build.binary_path(b) for b in ("kwokctl",)}
        if binaries["kwokctl"].exists():
            _run_kwokctl(["delete", "cluster", "--name", NAME], binaries, "kwokctl delete")
    for pid in pids.values():  # whatever kwokctl could not stop
        _stop_pid(pid)
    registry_pid = state.get("registry_pid")
    was_running = was_running or _pid_alive(registry_pid)
    _stop_pid(registry_pid)
    shutil.rmtree(state_dir(), ignore_errors=True)
    return was_running


def status() -> dict[str, Any]:
    """Components (with pids) and nodes, as plain data."""
    components = []
    for name, (pid, alive) in component_states().items():
        detail = f"pid {pid}" if alive else (
            f"pid {pid} is gone; mme-rep cluster up restarts it, keeping every object"
            if pid else "not started; mme-rep cluster up starts it, keeping every object")
        components.append({"name": name, "state": "running" if alive else "stopped",
                           "detail": detail})
    state = _read_state()
    if state.get("registry_pid"):
        alive = _pid_alive(state["registry_pid"])
        components.append({"name": "registry", "state": "running" if alive else "stopped",
                           "detail": f"127.0.0.1:{state.get('registry_port')}" + (
                               "" if alive else " is gone; mme-rep cluster up restarts it, "
                               "keeping every image")})
    running = bool(components) and all(c["state"] == "running" for c in components)
    nodes: list[dict[str, Any]] = []
    server = None
    if running:
        try:
            kube = connect()
            server = kube.host
            for n in kube.list_objects("v1", "Node"):
                alloc = n.get("status", {}).get("allocatable", {})
                nodes.append({"name": n["metadata"]["name"],
                              "ready": "Ready" if _node_ready(n) else "NotReady",
                              "cpu": alloc.get("cpu"), "memory": alloc.get("memory"),
                              "pods": alloc.get("pods")})
        except (KubeError, ClusterError) as exc:
            components.append({"name": "kube-apiserver (API)", "state": "unreachable",
                               "detail": exc.message})
            running = False
    if not components:
        components.append({"name": NAME, "state": "not created",
                           "detail": "run: mme-rep cluster up"})
    return {"name": NAME, "running": running, "server": server, "context": CONTEXT,
            "kubeconfig": str(kubeconfig_path()), "components": components, "nodes": nodes}


def merge_kubeconfig(target: Path | None = None) -> Path:
    """Merge our context (and its cluster and user) into ~/.kube/config, on request only."""
    target = target or Path.home() / ".kube" / "config"
    ours = yaml.safe_load(kubeconfig_path().read_text())
    theirs = yaml.safe_load(target.read_text()) if target.exists() else None
    theirs = theirs or {"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [],
                        "users": []}
    for key in ("clusters", "contexts", "users"):
        names = {e["name"] for e in ours[key]}
        theirs[key] = [e for e in theirs.get(key) or [] if e["name"] not in names] + ours[key]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".mmerep-tmp")
    tmp.write_text(yaml.safe_dump(theirs))
    tmp.chmod(0o600)
    tmp.replace(target)
    return target
