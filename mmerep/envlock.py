"""One change to an environment at a time: a Lease per environment.

Deploy, rollback and delete (and scale and vscale, which call ``hold`` too) hold the
Lease ``<env>-mmerep-lock`` (coordination.k8s.io/v1, in the environment's namespace)
while they change the environment. Taking it is a create, or a replace at the
resourceVersion read, so of two commands racing exactly one wins; the other waits up to
``wait`` seconds and then fails with one line naming the holder and since when.

A holder renews its lease every ``DURATION / 3`` seconds. A crashed holder's lease
expires ``DURATION`` seconds after its last renewal; a holder on this same machine whose
process is gone (killed, Ctrl-C'd while the API server was down, machine rebooted) is
taken over at once. The holder is held re-entrantly within one process, so a deploy
that rolls back or removes a failed first install keeps the lease it already has.
Everything goes through the gateway (``Kube.request``); nothing here imports the client.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mmerep.errors import EnvironmentBusy, KubeConflict, KubeNotFound, KubeUnreachable

log = logging.getLogger(__name__)

Obj = dict[str, Any]
API_VERSION = "coordination.k8s.io/v1"
LEASE_SUFFIX = "-mmerep-lock"
DURATION = 30  # seconds a lease stays valid without renewal
ANNOTATION = "mme-rep/"
MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def lease_name(env_name: str) -> str:
    return f"{env_name}{LEASE_SUFFIX}"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


@dataclass(frozen=True)
class Holder:
    """Who holds (or wants) an environment, as stored on its Lease."""

    identity: str  # "alice@laptop pid 4242"
    operation: str  # "deploy sentinel3:v0.2.0"
    host: str = ""
    pid: int | None = None
    pid_start: str = ""
    boot_id: str = ""
    since: datetime | None = None
    renewed: datetime | None = None
    duration: int = DURATION

    @classmethod
    def me(cls, operation: str) -> Holder:
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"{_user()}@{host} pid {pid}", operation, host, pid, _process_start(pid),
                   _boot_id())


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    for fmt in (MICROTIME, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def holder_of(lease: Obj) -> Holder | None:
    """The lease's holder, or None when nobody holds it."""
    spec = lease.get("spec") or {}
    identity = spec.get("holderIdentity")
    if not identity:
        return None
    notes = lease.get("metadata", {}).get("annotations") or {}
    pid = notes.get(ANNOTATION + "pid", "")
    return Holder(identity, notes.get(ANNOTATION + "operation", ""),
                  notes.get(ANNOTATION + "host", ""), int(pid) if pid.isdigit() else None,
                  notes.get(ANNOTATION + "pid-start", ""), notes.get(ANNOTATION + "boot-id", ""),
                  _parse_time(spec.get("acquireTime")), _parse_time(spec.get("renewTime")),
                  int(spec.get("leaseDurationSeconds") or DURATION))


def lease_object(namespace: str, env_name: str, holder: Holder, now: datetime,
                 since: datetime | None = None) -> Obj:
    """The Lease that says ``holder`` holds ``env_name`` (acquired ``since``, renewed now)."""
    annotations = {ANNOTATION + "operation": holder.operation, ANNOTATION + "host": holder.host,
                   ANNOTATION + "pid": str(holder.pid or ""),
                   ANNOTATION + "pid-start": holder.pid_start,
                   ANNOTATION + "boot-id": holder.boot_id}
    return {
        "apiVersion": API_VERSION, "kind": "Lease",
        "metadata": {"name": lease_name(env_name), "namespace": namespace,
                     "labels": {"app.kubernetes.io/instance": env_name,
                                "app.kubernetes.io/managed-by": "mme-rep",
                                "app.kubernetes.io/component": "lock"},
                     "annotations": annotations},
        "spec": {"holderIdentity": holder.identity, "leaseDurationSeconds": holder.duration,
                 "acquireTime": (since or now).strftime(MICROTIME),
                 "renewTime": now.strftime(MICROTIME)},
    }


def is_expired(holder: Holder, now: datetime) -> bool:
    """Not renewed within its duration (by the wall clock; see ``Acquirer`` for skew)."""
    last = holder.renewed or holder.since
    return last is None or (now - last).total_seconds() > holder.duration


def process_gone(holder: Holder) -> bool:
    """The holder ran on this machine and its process no longer exists."""
    if not holder.host or holder.host != socket.gethostname() or holder.pid is None:
        return False
    if holder.boot_id and holder.boot_id != _boot_id():
        return True  # the machine rebooted since
    if holder.pid == os.getpid():
        return False
    start = _process_start(holder.pid)
    if not start:
        return True
    if holder.pid_start and start != holder.pid_start:
        return True  # the pid was reused by another process
    try:
        state = Path(f"/proc/{holder.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def busy_message(namespace: str, env_name: str, holder: Holder, now: datetime) -> str:
    since = ""
    if holder.since:
        ago = int((now - holder.since).total_seconds())
        since = f" since {holder.since.strftime('%Y-%m-%d %H:%M:%S')} UTC ({ago}s ago)"
    what = f" ({holder.operation})" if holder.operation else ""
    return (f"environment {env_name} in namespace {namespace} is being changed by "
            f"{holder.identity}{what}{since}")


class EnvironmentLock:
    """The lease on one environment, taken by this process."""

    def __init__(self, kube: Any, namespace: str, env_name: str, operation: str, *,
                 wait: float = 0.0, duration: int = DURATION) -> None:
        self.kube = kube
        self.namespace = namespace
        self.env_name = env_name
        self.wait = wait
        self.me = Holder(**{**Holder.me(operation).__dict__, "duration": duration})
        self.lost = False
        self._version: str | None = None
        self._since: datetime | None = None
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _path(self, name: str | None = None) -> str:
        res = self.kube.resource(API_VERSION, "Lease")
        return str(res.path(self.namespace, name))

    def _take(self, current: Obj | None, now: datetime) -> bool:
        """Create the lease, or replace ``current`` at its version; False if someone won."""
        body = lease_object(self.namespace, self.env_name, self.me, now)
        try:
            if current is None:
                got = self.kube.request("POST", self._path(), body=body,
                                        what=f"take the lock on {self.env_name}")
            else:
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                got = self.kube.request("PUT", self._path(lease_name(self.env_name)), body=body,
                                        what=f"take the lock on {self.env_name}")
        except KubeConflict:
            return False  # another command created or replaced it first
        self._version = got["metadata"]["resourceVersion"]
        self._since = now
        return True

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        # When each lease version was first seen: a version unchanged for a whole
        # duration has expired, whatever the holder's clock says.
        first_seen: dict[str, float] = {}
        while True:
            lease = self.kube.get(API_VERSION, "Lease", lease_name(self.env_name),
                                  self.namespace)
            now = datetime.now(UTC)
            holder = holder_of(lease) if lease else None
            stale = False
            if lease is not None and holder is not None:
                version = lease["metadata"]["resourceVersion"]
                seen = first_seen.setdefault(version, time.monotonic())
                stale = (is_expired(holder, now) or process_gone(holder)
                         or time.monotonic() - seen > holder.duration)
                if stale:
                    log.warning("taking over the lock on %s from %s (expired or gone)",
                                self.env_name, holder.identity)
            if (holder is None or stale) and self._take(lease, now):
                break
            if holder is not None and time.monotonic() >= deadline:
                raise EnvironmentBusy(
                    busy_message(self.namespace, self.env_name, holder, now),
                    hint="wait for it to finish, or give --lock-wait SECONDS; a crashed "
                    f"holder's lock expires {holder.duration}s after its last renewal")
            time.sleep(0.2 if holder is None else min(1.0, max(0.05, deadline -
                                                               time.monotonic())))
        self._renewer = threading.Thread(target=self._renew_loop, daemon=True,
                                         name=f"lease-{self.env_name}")
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.me.duration / 3):
            with self._guard:
                if self._version is None:
                    return
                body = lease_object(self.namespace, self.env_name, self.me,
                                    datetime.now(UTC), self._since)
                body["metadata"]["resourceVersion"] = self._version
                try:
                    got = self.kube.request("PUT", self._path(lease_name(self.env_name)),
                                            body=body, what=f"renew the lock on {self.env_name}")
                    self._version = got["metadata"]["resourceVersion"]
                except (KubeConflict, KubeNotFound):
                    self.lost = True
                    self._version = None
                    log.warning("lost the lock on %s (taken over or deleted)", self.env_name)
                    return
                except Exception as exc:  # unreachable for now: try again next time
                    log.warning("could not renew the lock on %s: %s", self.env_name, exc)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        with self._guard:
            version, self._version = self._version, None
        if version is None:
            return
        # Conflict: taken over after expiry; not found: the namespace went with the env.
        with contextlib.suppress(KubeConflict, KubeNotFound):
            try:
                self.kube.request("DELETE", self._path(lease_name(self.env_name)),
                                  body={"kind": "DeleteOptions", "apiVersion": "v1",
                                        "preconditions": {"resourceVersion": version}},
                                  what=f"release the lock on {self.env_name}")
            except KubeUnreachable:  # it expires by itself (at once for a command here)
                log.warning("could not release the lock on %s: the API server is "
                            "unreachable", self.env_name)


_held: dict[tuple[str, str, str], list[Any]] = {}
_held_guard = threading.Lock()


@contextmanager
def hold(kube: Any, namespace: str, env_name: str, operation: str, *,
         wait: float = 0.0) -> Iterator[EnvironmentLock]:
    """Hold the environment's lease for the block (re-entrant within this process)."""
    key = (str(getattr(kube, "host", "")), namespace, env_name)
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield entry[0]
        finally:
            with _held_guard:
                entry[1] -= 1
        return
    lock = EnvironmentLock(kube, namespace, env_name, operation, wait=wait)
    lock.acquire()
    with _held_guard:
        _held[key] = [lock, 1]
    try:
        yield lock
    finally:
        with _held_guard:
            _held.pop(key, None)
        lock.release()


def current_holder(kube: Any, namespace: str, env_name: str) -> Holder | None:
    """Who holds the environment now (None when free or expired)."""
    lease = kube.get(API_VERSION, "Lease", lease_name(env_name), namespace)
    holder = holder_of(lease) if lease else None
    if holder is None or is_expired(holder, datetime.now(UTC)) or process_gone(holder):
        return None
    return holder
