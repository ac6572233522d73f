"""What `mme-rep ssh proxy` remembers between connections: host name -> where it leads.

OpenSSH starts the proxy once per connection, and reading and checking the profiles file
(YAML, every profile's rules) costs more than the rest of its start-up. After one full
resolution the host's profile name, namespace, kubeconfig and context are kept here, keyed
by the host name and by everything that resolution read: the profiles file's identity
(path, size, mtime, inode) and the environment variables that choose files. A changed
file or setting resolves afresh. No pod name is kept (the Ready pod is looked up every
time) and no secret (credentials stay in the gateway's own cache, ``mmerep.kubehttp``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import NamedTuple

from mmerep.paths import cache_dir, config_dir

VERSION = 1
ENTRIES = 64
# Every input of the profile's resolution besides the file itself: where the profiles
# file is looked for (mmerep.profiles.profiles_path) and where the built-in local
# profile's kubeconfig lives (mmerep.cluster.local), and which kubeconfig is the default.
ENV_INPUTS = ("MMEREP_PROFILES", "MMEREP_CONFIG_DIR", "XDG_CONFIG_HOME", "HOME",
              "MMEREP_STATE_DIR", "MMEREP_CACHE_DIR", "XDG_CACHE_HOME", "KUBECONFIG")


class Route(NamedTuple):
    """A host name resolved: the profile's name and its cluster and namespace."""

    name: str  # the profile's
    namespace: str
    kubeconfig: str | None
    context: str | None
    env: str
    component: str


def _directory() -> os.PathLike[str]:
    return cache_dir() / "ssh-routes"


def _key(host_name: str, profiles_file: str | None) -> str:
    chosen = profiles_file or os.environ.get("MMEREP_PROFILES")
    path = os.path.expanduser(chosen) if chosen else str(config_dir() / "profiles.yaml")
    try:
        st = os.stat(path)
        identity = f"{os.path.realpath(path)}\0{st.st_mtime_ns}\0{st.st_size}\0{st.st_ino}"
    except OSError:
        identity = f"{path}\0missing"
    h = hashlib.sha256(f"v{VERSION}\0{host_name}\0{identity}".encode())
    for name in ENV_INPUTS:
        h.update(f"\0{name}={os.environ.get(name, '')}".encode())
    return h.hexdigest()[:32]


def lookup(host_name: str, profiles_file: str | None) -> Route | None:
    """The route saved for this host name under the same inputs, if any."""
    try:
        with open(os.path.join(_directory(), _key(host_name, profiles_file) + ".json")) as fh:
            data = json.load(fh)
        return Route(**data)
    except (OSError, ValueError, TypeError):
        return None


def save(host_name: str, profiles_file: str | None, route: Route) -> None:
    """Keep ``route`` for the next connection (best effort: a read-only cache is slower,
    not broken)."""
    directory = _directory()
    with contextlib.suppress(OSError):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        target = os.path.join(directory, _key(host_name, profiles_file) + ".json")
        tmp = f"{target}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(route._asdict(), fh)
        os.replace(tmp, target)
        _prune(directory)


def _prune(directory: os.PathLike[str]) -> None:
    """Each change of a profiles file makes new keys: keep the newest ``ENTRIES``."""
    entries = [e for e in os.scandir(directory) if e.name.endswith(".json")]
    entries.sort(key=lambda e: e.stat().st_mtime, reverse=True)
    for stale in entries[ENTRIES:]:
        with contextlib.suppress(OSError):
            os.unlink(stale.path)
