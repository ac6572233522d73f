"""The node's disks as the agent sees them: discovery, space, volume directories, quotas,
usage and wiping. Plain file-system work, tested on real (loop-mounted) file systems.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

from provisioner.ledger import Disk

log = logging.getLogger(__name__)

VOLUME_PREFIX = "pvc-"


def discover(root: Path, *, require_mount: bool = True) -> list[Path]:
    """Each disk is one directory under ``root``, normally its own mount point.

    ``require_mount=False`` takes every sub-directory (for trying it without root).
    """
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and not entry.is_symlink() and (
                not require_mount or os.path.ismount(entry)):
            found.append(entry)
    return found


def volume_dirs(disk: Path) -> list[Path]:
    try:
        return sorted(p for p in disk.iterdir() if p.name.startswith(VOLUME_PREFIX)
                      and p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def usage(path: Path) -> int:
    """Bytes allocated under ``path`` (like du), without following links."""
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(Path(entry.path))
        except OSError:
            continue
    return total


def describe(disk: Path, quota: bool | None = None) -> Disk:
    """Size and space of one disk; what volumes may take is free space plus their usage."""
    st = os.statvfs(disk)
    size = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    ours = sum(usage(v) for v in volume_dirs(disk))
    return Disk(disk.name, str(disk), size, min(size, free + ours), free,
                quota_supported(disk) if quota is None else quota)


def metadata_margin(size: int) -> int:
    """Space kept free on each disk for the file system's own metadata: 1%, at least
    4 MiB, at most 4 GiB."""
    return min(max(size // 100, 4 << 20), 4 << 30)


def quota_supported(mount: Path) -> bool:
    """True when the mount enforces XFS project quotas (prjquota); the kernel here does
    not, so the fallback (measuring usage) is what runs in the tests."""
    tool = shutil.which("xfs_quota") or ("/usr/sbin/xfs_quota"
                                         if os.path.exists("/usr/sbin/xfs_quota") else None)
    if tool is None:
        return False
    try:
        out = subprocess.run([tool, "-x", "-c", "state -p", str(mount)], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    text = out.stdout
    return out.returncode == 0 and "Accounting: ON" in text and "Enforcement: ON" in text


def project_id(volume: str) -> int:
    """A stable XFS project id for a volume (never 0, the default project)."""
    return (zlib.crc32(volume.encode()) & 0x7FFFFFFF) or 1


def set_quota(mount: Path, directory: Path, size: int) -> None:
    tool = shutil.which("xfs_quota") or "/usr/sbin/xfs_quota"
    pid = project_id(directory.name)
    for cmd in (f"project -s -p {directory} {pid}", f"limit -p bhard={size} {pid}"):
        subprocess.run([tool, "-x", "-c", cmd, str(mount)], check=True, capture_output=True,
                       timeout=30)


def create_volume_dir(path: Path, uid: int, gid: int, mode: int) -> bool:
    """The volume's directory, owned so the non-root pod can write; False if it existed."""
    created = False
    try:
        path.mkdir(mode=0o700)
        created = True
    except FileExistsError:
        pass
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return created


def wipe(disk: Path, name: str) -> bool:
    """Remove a volume's directory and everything in it; False when it was not there.

    Only a ``pvc-*`` directory directly on the disk is ever removed.
    """
    if not name.startswith(VOLUME_PREFIX) or "/" in name or name in (".", ".."):
        raise ValueError(f"refusing to wipe {name!r}: not a volume directory")
    target = disk / name
    if not target.exists() and not target.is_symlink():
        return False
    if target.is_symlink() or not target.is_dir():
        target.unlink()
        return True

    def _writable(func: Any, p: str, _exc: Any) -> None:
        # A read-only directory the pod left behind: make it writable, then retry.
        os.chmod(os.path.dirname(p), 0o700)
        func(p)

    if sys.version_info >= (3, 12):
        shutil.rmtree(target, onexc=_writable)
    else:
        shutil.rmtree(target, onerror=_writable)
    return True
