"""The environment lock's data: the Lease it writes, who holds it, when a holder is stale."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from mmerep import envlock

NOW = datetime(2026, 12, 1, 22, 5, 3, 250000, tzinfo=UTC)


def test_the_lease_names_its_holder_operation_and_times() -> None:
    me = envlock.Holder.me("deploy sentinel3:v0.2.0")
    lease = envlock.lease_object("s3", "sentinel3", me, NOW, since=NOW - timedelta(seconds=20))
    assert lease["kind"] == "Lease" and lease["apiVersion"] == "coordination.k8s.io/v1"
    assert lease["metadata"]["name"] == "sentinel3-mmerep-lock"
    assert lease["metadata"]["namespace"] == "s3"
    assert lease["spec"]["acquireTime"] == "2026-12-01T22:04:43.250000Z"
    assert lease["spec"]["renewTime"] == "2026-12-01T22:05:03.250000Z"
    back = envlock.holder_of(lease)
    assert back is not None
    assert back.identity == me.identity and f"pid {os.getpid()}" in back.identity
    assert back.operation == "deploy sentinel3:v0.2.0"
    assert (back.pid, back.host) == (os.getpid(), socket.gethostname())
    assert back.since == NOW - timedelta(seconds=20) and back.renewed == NOW


def test_a_lease_without_holder_is_free() -> None:
    assert envlock.holder_of({"spec": {"holderIdentity": ""}}) is None
    assert envlock.holder_of({"spec": {}}) is None


def test_expiry_counts_from_the_last_renewal() -> None:
    holder = envlock.Holder("a@b pid 1", "deploy", since=NOW - timedelta(minutes=5),
                            renewed=NOW - timedelta(seconds=10), duration=30)
    assert not envlock.is_expired(holder, NOW)
    assert envlock.is_expired(holder, NOW + timedelta(seconds=21))


def test_a_holder_whose_process_is_gone_is_stale_at_once() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    alive = envlock.Holder.me("deploy")
    gone = envlock.Holder("x", "deploy", socket.gethostname(), child.pid,
                          envlock._process_start(child.pid), envlock._boot_id())
    child.wait()
    assert not envlock.process_gone(alive)
    assert envlock.process_gone(gone)


def test_a_reused_pid_or_a_reboot_is_gone_too() -> None:
    me = envlock.Holder.me("deploy")
    parent = os.getppid()
    reused = envlock.Holder("x", "deploy", me.host, parent, "1", me.boot_id)
    rebooted = envlock.Holder("x", "deploy", me.host, parent,
                              envlock._process_start(parent), "another-boot")
    same = envlock.Holder("x", "deploy", me.host, parent, envlock._process_start(parent),
                          me.boot_id)
    assert envlock.process_gone(reused) and envlock.process_gone(rebooted)
    assert not envlock.process_gone(same)


def test_a_holder_on_another_machine_is_never_judged_by_its_pid() -> None:
    other = envlock.Holder("x", "deploy", "some-other-host", 999999, "1", "b")
    assert not envlock.process_gone(other)


def test_the_busy_message_names_holder_operation_and_since() -> None:
    holder = envlock.Holder("alice@laptop pid 4242", "deploy sentinel3:v0.2.0",
                            since=NOW - timedelta(seconds=42), renewed=NOW)
    text = envlock.busy_message("s3", "sentinel3", holder, NOW)
    assert text == ("environment sentinel3 in namespace s3 is being changed by alice@laptop "
                    "pid 4242 (deploy sentinel3:v0.2.0) since 2026-12-01 22:04:21 UTC (42s ago)")
    assert "\n" not in text
