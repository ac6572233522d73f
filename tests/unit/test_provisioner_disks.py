"""The agent's file-system work on this machine's file systems."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioner import disks
from provisioner.ledger import Disk, NodeLedger, Reservation
from provisioner.status import disk_rows
from provisioner.store import Report


def test_volume_directory_is_owned_for_the_pod_and_wiped(tmp_path: Path) -> None:
    disk = tmp_path / "disk0"
    disk.mkdir()
    vol = disk / "pvc-1"
    assert disks.create_volume_dir(vol, 1000, 2000, 0o2770)
    assert not disks.create_volume_dir(vol, 1000, 2000, 0o2770)  # idempotent
    st = vol.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 2000, 0o2770)
    (vol / "sub").mkdir()
    (vol / "sub" / "data").write_bytes(b"x" * 100_000)
    (vol / "sub").chmod(0o500)  # a pod left a read-only directory behind
    assert disks.usage(vol) >= 100_000
    assert disks.volume_dirs(disk) == [vol]
    assert disks.wipe(disk, "pvc-1") and not vol.exists()
    assert not disks.wipe(disk, "pvc-1")


@pytest.mark.parametrize("name", ["data", "../x", "pvc-1/..", "."])
def test_wipe_refuses_anything_but_a_volume_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        disks.wipe(tmp_path, name)


def test_discovery_takes_mount_points_or_any_directory(tmp_path: Path) -> None:
    (tmp_path / "disk0").mkdir()
    (tmp_path / "file").write_text("")
    assert disks.discover(tmp_path) == []  # not mount points
    assert disks.discover(tmp_path, require_mount=False) == [tmp_path / "disk0"]
    assert disks.discover(tmp_path / "missing") == []
    d = disks.describe(tmp_path / "disk0", quota=False)
    st = os.statvfs(tmp_path)
    assert d.size == st.f_blocks * st.f_frsize and 0 < d.allocatable <= d.size


def test_quota_is_detected_as_absent_where_not_enforced(tmp_path: Path) -> None:
    assert disks.quota_supported(tmp_path) is False
    assert disks.project_id("pvc-x") == disks.project_id("pvc-x") > 0


def test_status_rows_per_node_and_disk() -> None:
    rep = Report("n1", [Disk("disk0", "/d0", 1000, 900, 850)],
                 {"pvc-a": {"disk": "disk0", "used": 50, "size": 300}}, heartbeat=95.0)
    led = NodeLedger("n1", {}, {"a": Reservation("a", "s/a", "disk0", 300)})
    rows = disk_rows({"n1": rep}, {"n1": led, "gone": NodeLedger("gone")}, now=100.0)
    assert rows == [{"node": "n1", "disk": "disk0", "path": "/d0", "size": 1000,
                     "allocatable": 900, "reserved": 300, "available": 600, "set_aside": 0,
                     "used": 50, "volumes": 1, "quota": False, "agent_age": 5.0}]
    # The leader's set-aside bytes are shown, and stay available (they are for claims).
    held = NodeLedger("n1", {}, dict(led.reservations), ahead={"disk0": 100},
                      ahead_holder="leader")
    row = disk_rows({"n1": rep}, {"n1": held}, now=100.0)[0]
    assert (row["reserved"], row["set_aside"], row["available"]) == (300, 100, 600)
