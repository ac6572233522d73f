"""`cluster down` leaves no process behind, and `up` brings a cluster back.

On a private cluster of its own (own state directory, so own ports and processes): the
session's cluster, which every other test uses, is never stopped or resized, whatever
order the tests run in.
"""

from __future__ import annotations

import pytest

from mmerep.cluster import local
from testkit.private_cluster import private_cluster

pytestmark = pytest.mark.cluster


def test_down_leaves_no_process_and_up_restores() -> None:
    with private_cluster("mmerep-lifecycle-"):
        _down_then_up()


def _down_then_up() -> None:
    first = local.up(local.ClusterSpec(nodes=1))
    assert not first.already_running and first.nodes == 1
    pids = [p for p in local._component_pids().values() if p]
    registry_pid = local._read_state()["registry_pid"]
    assert len(pids) >= 5 and all(local._pid_alive(p) for p in [*pids, registry_pid])
    assert local.down() is True
    assert not any(local._pid_alive(p) for p in [*pids, registry_pid])
    assert local.status()["running"] is False
    assert local.down() is False
    again = local.up(local.ClusterSpec(nodes=2))
    assert not again.already_running and again.nodes == 2
