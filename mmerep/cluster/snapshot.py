"""Snapshots of the local cluster's etcd: keep a known state, go back to it.

``save`` streams a snapshot from the running etcd through its HTTP gateway
(``/v3/maintenance/snapshot``, the same bytes ``etcdctl snapshot save`` writes, checksum
included), so it needs no extra binary. ``restore`` does what ``kwokctl snapshot
restore`` does for the binary runtime, with our own ``etcdutl`` (built once from the
pinned etcd version, on first use): stop the components, restore the snapshot into a
new data directory with etcd's member name and peer address, swap it in, start again.
The registry's images are not part of a snapshot (they stay as they are).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import requests

from mmerep.cluster import build, local, versions
from mmerep.errors import ClusterError, UsageError

ETCDUTL = build.Component("etcdutl", "go.etcd.io/etcd/etcdutl/v3", versions.ETCD,
                          ("go.etcd.io/etcd/etcdutl/v3",), ("etcdutl",))


def _etcd() -> dict[str, Any]:
    config = local._cluster_config()
    etcd = next((c for c in (config or {}).get("components") or [] if c["name"] == "etcd"),
                None)
    if etcd is None:
        raise ClusterError("the local cluster has not been created", hint="run: mme-rep cluster up")
    return dict(etcd)


def _flag(component: dict[str, Any], name: str) -> str:
    for arg in component.get("args") or []:
        if arg.startswith(f"--{name}="):
            return str(arg.split("=", 1)[1])
    raise ClusterError(f"etcd runs without --{name}; cannot find its data",
                       hint=f"see {local.kwok_cluster_dir() / 'kwok.yaml'}")


def save(path: Path) -> int:
    """Write a snapshot of the running cluster to ``path``; returns its size in bytes."""
    if not local._cluster_running():
        raise ClusterError("the local cluster is not running, so there is nothing to snapshot",
                           hint="run: mme-rep cluster up")
    if path.exists() and path.is_dir():
        raise UsageError(f"{path} is a directory", hint="give a file name, e.g. state.db")
    url = _flag(_etcd(), "advertise-client-urls").split(",")[0]
    tmp = path.with_name(path.name + ".partial")
    size = 0
    try:
        with requests.post(f"{url}/v3/maintenance/snapshot", json={}, stream=True,
                           timeout=60) as resp, tmp.open("wb") as out:
            if resp.status_code != 200:
                raise ClusterError(f"etcd refused the snapshot: HTTP {resp.status_code} "
                                   f"{resp.text[:200]}")
            for line in resp.iter_lines():
                if not line:
                    continue
                message = json.loads(line)
                if "error" in message:
                    raise ClusterError(f"etcd stopped the snapshot: {message['error']}")
                blob = base64.b64decode(message.get("result", {}).get("blob") or b"")
                out.write(blob)
                size += len(blob)
    except requests.RequestException as exc:
        tmp.unlink(missing_ok=True)
        raise ClusterError(f"cannot reach etcd at {url}: {type(exc).__name__}",
                           hint="mme-rep cluster status shows what is down") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if size == 0:
        tmp.unlink(missing_ok=True)
        raise ClusterError("etcd sent an empty snapshot")
    tmp.replace(path)
    return size


def restore(path: Path, progress: local.OnStep = local._quiet) -> None:
    """Bring the cluster back to the snapshot in ``path`` (every object as it was then)."""
    if not path.is_file() or path.stat().st_size == 0:
        raise UsageError(f"no snapshot at {path}", hint="make one with: mme-rep cluster "
                         "snapshot save FILE")
    etcd = _etcd()
    data_dir = Path(_flag(etcd, "data-dir"))
    name = _flag(etcd, "name")
    peer = _flag(etcd, "initial-advertise-peer-urls")
    progress("building etcdutl (first restore only)")
    etcdutl = build.build_component(ETCDUTL, progress) / "etcdutl"
    binaries = {"kwokctl": build.binary_path("kwokctl")}
    fresh = data_dir.with_name(data_dir.name + ".restoring")
    shutil.rmtree(fresh, ignore_errors=True)
    progress("checking the snapshot")
    out = subprocess.run([str(etcdutl), "snapshot", "restore", str(path), "--data-dir",
                          str(fresh), "--name", name, "--initial-cluster", f"{name}={peer}",
                          "--initial-advertise-peer-urls", peer,
                          # Revisions move forward past anything a watcher saw after the
                          # snapshot, so every client lists afresh instead of missing changes.
                          "--bump-revision", "1000000", "--mark-compacted"],
                         capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        shutil.rmtree(fresh, ignore_errors=True)
        lines = [ln for ln in (out.stderr + out.stdout).splitlines() if ln.strip()]
        raise UsageError(f"{path} is not a usable etcd snapshot: {' | '.join(lines[-2:])}",
                         hint="nothing was changed")
    progress("stopping the cluster")
    local._run_kwokctl(["stop", "cluster", "--name", local.NAME], binaries,
                       "kwokctl stop cluster")
    old = data_dir.with_name(data_dir.name + ".before-restore")
    shutil.rmtree(old, ignore_errors=True)
    if data_dir.exists():
        data_dir.rename(old)
    fresh.rename(data_dir)
    shutil.rmtree(old, ignore_errors=True)
    progress("starting the cluster on the restored data")
    spec = local._read_state().get("spec")
    local.up(local.ClusterSpec(**spec) if spec else None, progress=progress)
