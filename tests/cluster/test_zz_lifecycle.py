"""Runs last: `down` leaves no process behind, and `up` brings the cluster back."""

from __future__ import annotations

import pytest

from mmerep.cluster import local

pytestmark = pytest.mark.cluster


def test_down_leaves_no_process_and_up_restores(cluster: local.ClusterInfo) -> None:
    pids = [p for p in local._component_pids().values() if p]
    registry_pid = local._read_state()["registry_pid"]
    assert len(pids) >= 5 and all(local._pid_alive(p) for p in [*pids, registry_pid])
    assert local.down() is True
    assert not any(local._pid_alive(p) for p in [*pids, registry_pid])
    assert local.status()["running"] is False
    assert local.down() is False
    again = local.up(local.ClusterSpec(nodes=2))
    assert not again.already_running and again.nodes == 2
