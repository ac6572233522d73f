"""Authorized keys of an environment, and the client's config, through the gateway."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from mmerep import sshkeys
from mmerep.errors import KubeConflict, UsageError
from mmerep.ssh.config import EnvKeys, known_hosts, replace_block, ssh_config

KNOWN_HOSTS_SELECTOR = f"{sshkeys.KEPT_LABEL}=true,app.kubernetes.io/managed-by=mme-rep"


def _keys_object(kube: Any, namespace: str, env: str) -> dict[str, Any]:
    obj = kube.get("v1", "ConfigMap", sshkeys.authorized_keys_name(env), namespace)
    if obj is None:
        raise UsageError(f"environment {env} in namespace {namespace} has no SSH keys "
                         "ConfigMap", hint="is it deployed with an SSH template (htcondor-batch,"
                         " interactive)? mme-rep env list")
    return dict(obj)


def list_keys(kube: Any, namespace: str, env: str) -> list[dict[str, str]]:
    obj = _keys_object(kube, namespace, env)
    rows = []
    for line in sshkeys.parse_authorized_keys((obj.get("data") or {}).get("authorized_keys", "")):
        kind, _, comment = sshkeys.key_fields(line)
        rows.append({"type": kind, "fingerprint": sshkeys.fingerprint(line), "comment": comment})
    return rows


def _update_keys(kube: Any, namespace: str, env: str, change: Any) -> Any:
    """Read, change, write back with the read resourceVersion (a concurrent change retries)."""
    for attempt in range(5):
        obj = _keys_object(kube, namespace, env)
        keys = sshkeys.parse_authorized_keys((obj.get("data") or {}).get("authorized_keys", ""))
        new_keys, result = change(keys)
        if new_keys == keys:
            return result
        meta = obj["metadata"]
        body = sshkeys.authorized_keys_configmap(env, namespace, new_keys, {
            k: v for k, v in (meta.get("labels") or {}).items() if k != sshkeys.KEPT_LABEL})
        body["metadata"]["resourceVersion"] = meta["resourceVersion"]
        try:
            kube.apply(body, force=True, compare=False)
            return result
        except KubeConflict:
            time.sleep(0.1 * (attempt + 1))
    raise KubeConflict(f"the keys of {env} kept changing under us", hint="try again")


def add_key(kube: Any, namespace: str, env: str, line: str) -> bool:
    """Add one public key; False when it was already there."""
    line = sshkeys.check_public_key(line)
    return bool(_update_keys(kube, namespace, env,
                             lambda keys: (new := sshkeys.with_key(keys, line), new != keys)))


def remove_key(kube: Any, namespace: str, env: str, which: str) -> list[str]:
    """Remove keys matching a fingerprint, comment or key; their fingerprints."""
    def change(keys: list[str]) -> tuple[list[str], list[str]]:
        kept, removed = sshkeys.without_key(keys, which)
        return kept, [sshkeys.fingerprint(k) for k in removed]

    removed: list[str] = _update_keys(kube, namespace, env, change)
    if not removed:
        raise UsageError(f"no key of {env} matches {which!r}",
                         hint=f"mme-rep ssh keys list {env} shows fingerprints and comments")
    return removed


def environment_keys(kube: Any, namespace: str) -> list[EnvKeys]:
    """Every environment in ``namespace`` that answers SSH, with its public host keys."""
    found = kube.list_objects("v1", "ConfigMap", namespace, label_selector=KNOWN_HOSTS_SELECTOR)
    out = []
    for cm in found:
        labels = cm["metadata"].get("labels", {})
        env = labels.get("app.kubernetes.io/instance")
        if not env or cm["metadata"]["name"] != sshkeys.known_hosts_name(env):
            continue
        data = cm.get("data") or {}
        components = tuple(data.get("components", "").split())
        keys = tuple(v.strip() for k, v in sorted(data.items()) if k.endswith(".pub"))
        if components:
            out.append(EnvKeys(env, components, keys))
    return out


def proxy_command(profiles_file: str | None = None) -> list[str]:
    """How OpenSSH starts the proxy: this Python, this package (no PATH lookup)."""
    cmd = [sys.executable, "-m", "mmerep", "ssh", "proxy"]
    if profiles_file:
        cmd += ["--profiles", str(Path(profiles_file).resolve())]
    return cmd


def known_hosts_path(ssh_config_path: Path, profile_name: str) -> Path:
    return ssh_config_path.parent / "mme-rep" / f"{profile_name}.known_hosts"


def render_client(profile: Any, envs: list[EnvKeys], ssh_config_path: Path,
                  profiles_file: str | None = None) -> tuple[str, str]:
    """(config block, known_hosts text) for ``profile``."""
    return (ssh_config(profile, envs, proxy=proxy_command(profiles_file),
                       known_hosts=str(known_hosts_path(ssh_config_path, profile.name))),
            known_hosts(profile, envs))


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def write_client(profile: Any, block: str, known: str, ssh_config_path: Path) -> dict[str, str]:
    """Write known_hosts and put the block into the ssh config (backup first)."""
    hosts_file = known_hosts_path(ssh_config_path, profile.name)
    _write_private(hosts_file, known)
    old = ssh_config_path.read_text() if ssh_config_path.exists() else ""
    new = replace_block(old, block, profile.name)
    written = {"known_hosts": str(hosts_file), "config": str(ssh_config_path)}
    if new != old:
        if old:
            backup = ssh_config_path.with_name(ssh_config_path.name + ".mme-rep.bak")
            _write_private(backup, old)
            written["backup"] = str(backup)
        _write_private(ssh_config_path, new)
    return written
