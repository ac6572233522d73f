"""Nothing lost, nothing falsified: concurrent deploys, killed and interrupted deploys.

Every deploy here is the real CLI in its own process against the local cluster, as a
user (or two, or a CI job) would run it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmerep import environments, envlock
from mmerep.cluster import local, sample
from mmerep.environments import parts
from mmerep.errors import EnvironmentBusy
from mmerep.kube import Kube
from mmerep.profiles import get_profile
from mmerep.sshkeys import KEPT_LABEL

pytestmark = pytest.mark.cluster
ENV = "conc"
REPO = f"mme-rep/htcondor-batch/{ENV}"


@pytest.fixture()
def target(kube: Kube, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A fresh namespace, a profile file naming it, and the CLI's environment."""
    namespace = f"dur-{uuid.uuid4().hex[:8]}"
    (tmp_path / "profiles.yaml").write_text(yaml.safe_dump({"profiles": {"t": {
        "context": local.CONTEXT, "kubeconfig": str(local.kubeconfig_path()),
        "namespace": namespace, "registry": local.registry_address(), "project": "mme-rep",
        "requests": {"cpu": "100m", "memory": "128Mi"}}}}))
    env = {**os.environ, "MMEREP_PROFILES": str(tmp_path / "profiles.yaml"), "COLUMNS": "200"}
    yield {"namespace": namespace, "env": env}
    kube.delete("v1", "Namespace", namespace, propagation="Background")


def push(tag: str) -> str:
    return sample.push_sample_image(local.registry_address(), repo=REPO, tag=tag, note=tag)


def deploy_cmd(tag: str, *sets: str) -> list[str]:
    cmd = [sys.executable, "-m", "mmerep", "env", "deploy", "-F", "t", "htcondor-batch",
           f"{ENV}:{tag}", "--timeout", "120"]
    for item in ("executors=1", *sets):
        cmd += ["--set", item]
    return cmd


def records(kube: Kube, namespace: str) -> list[dict]:
    return environments.read_records(kube, namespace, ENV)


def running_images(kube: Kube, namespace: str) -> set[str]:
    """The image of every workload of the environment, as the API server has it now."""
    images = set()
    for kind in ("Deployment", "DaemonSet"):
        for obj in kube.list_objects("apps/v1", kind, namespace,
                                     label_selector=f"app.kubernetes.io/instance={ENV}"):
            images |= {c["image"] for c in obj["spec"]["template"]["spec"]["containers"]}
    return images


def test_concurrent_deploys_one_at_a_time_and_a_true_history(kube: Kube,
                                                             target: dict) -> None:
    rounds, per_round = 3, 6
    digests = {f"v{r}.{i}": push(f"v{r}.{i}") for r in range(rounds) for i in range(per_round)}
    ns = target["namespace"]
    total = wins = 0
    for r in range(rounds):
        before = len(records(kube, ns))
        tags = [f"v{r}.{i}" for i in range(per_round)]
        procs = {t: subprocess.Popen(deploy_cmd(t), env=target["env"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for t in tags}
        results = {t: (p.wait(timeout=300), p.stderr.read() if p.stderr else "")
                   for t, p in procs.items()}
        total += len(tags)
        won = [t for t, (rc, _) in results.items() if rc == 0]
        lost = {t: err for t, (rc, err) in results.items() if rc != 0}
        wins += len(won)
        assert won, results
        for tag, err in lost.items():
            rc = results[tag][0]
            assert rc == 75, f"{tag}: exit {rc}: {err}"
            line = [ln for ln in err.splitlines() if "being changed by" in ln]
            assert line, err
            assert "pid" in line[0] and "(deploy " in line[0] and " since " in line[0], err
            assert "Traceback" not in err
        history = records(kube, ns)
        new = history[before:]
        # Exactly one revision per successful deploy, none for a loser, none half-made.
        assert len(new) == len(won), (won, [r["data"]["image"] for r in new])
        assert sorted(r["data"]["image"].rsplit("@", 1)[1] for r in new) == \
            sorted(digests[t] for t in won)
        assert [int(r["data"]["revision"]) for r in history] == list(range(1, len(history) + 1))
        statuses = [r["data"]["status"] for r in history]
        assert statuses.count("deployed") == 1 and statuses[-1] == "deployed", statuses
        assert set(statuses) <= {"deployed", "superseded"}
        # The deployed revision's record is what runs.
        assert running_images(kube, ns) == {history[-1]["data"]["image"]}
        assert kube.get("coordination.k8s.io/v1", "Lease", envlock.lease_name(ENV), ns) is None
    print(f"\nconcurrent deploys: {total} in {rounds} rounds, {wins} succeeded, "
          f"{total - wins} refused naming the holder; history matched every round")


def test_the_lock_waits_a_bounded_time_and_a_dead_holder_is_taken_over(
        kube: Kube, namespace: str) -> None:
    first = envlock.EnvironmentLock(kube, namespace, "lk", "deploy a:v1")
    first.acquire()
    started = time.monotonic()
    with pytest.raises(EnvironmentBusy) as info:
        envlock.EnvironmentLock(kube, namespace, "lk", "deploy a:v2", wait=1.5).acquire()
    assert 1.4 < time.monotonic() - started < 5
    assert first.me.identity in info.value.message and "deploy a:v1" in info.value.message
    # Freed while the second waits: it gets it.
    threading.Timer(1.0, first.release).start()
    second = envlock.EnvironmentLock(kube, namespace, "lk", "deploy a:v2", wait=10)
    second.acquire()
    second.release()
    # A holder elsewhere that stopped renewing has expired; one here whose process died is
    # gone at once, without waiting for the expiry.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_here = dataclasses.replace(
        envlock.Holder.me("deploy a:v3"), identity=f"x pid {child.pid}", pid=child.pid,
        pid_start=envlock._process_start(child.pid))
    child.wait()
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    elsewhere = envlock.Holder("bob@far pid 7", "deploy a:v4", "far-away-host", 7)
    for holder, renewed in ((dead_here, now), (elsewhere, now - timedelta(seconds=45))):
        kube.create(envlock.lease_object(namespace, "lk", holder, renewed))
        started = time.monotonic()
        taker = envlock.EnvironmentLock(kube, namespace, "lk", "deploy a:v5")
        taker.acquire()
        assert time.monotonic() - started < 3
        lease = kube.get("coordination.k8s.io/v1", "Lease", "lk-mmerep-lock", namespace)
        assert lease["spec"]["holderIdentity"] == taker.me.identity
        taker.release()
        assert kube.get("coordination.k8s.io/v1", "Lease", "lk-mmerep-lock", namespace) is None


@pytest.mark.parametrize(("stop", "code", "said"), [
    (signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_leaves_a_record_saying_so_and_the_next_deploy_converges(
        kube: Kube, target: dict, stop: int, code: int, said: str) -> None:
    push("v9.0")
    push("v9.1")
    ns = target["namespace"]
    ok = subprocess.run(deploy_cmd("v9.0"), env=target["env"], capture_output=True, text=True,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr
    # Executors that no node can hold: the rollout waits, and is interrupted while waiting.
    stuck = subprocess.Popen(deploy_cmd("v9.1", "executor_cpu=64"), env=target["env"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(r["data"]["status"] == "deploying" for r in records(kube, ns)):
        assert time.monotonic() < deadline and stuck.poll() is None
        time.sleep(0.2)
    time.sleep(1.0)
    stuck.send_signal(stop)
    rc = stuck.wait(timeout=60)
    assert rc == code, stuck.stderr.read() if stuck.stderr else ""
    history = records(kube, ns)
    assert history[-1]["data"]["status"] == "interrupted"
    assert said in history[-1]["data"]["note"] and "deploy" in history[-1]["data"]["note"]
    assert kube.get("coordination.k8s.io/v1", "Lease", envlock.lease_name(ENV), ns) is None
    shown = subprocess.run([sys.executable, "-m", "mmerep", "env", "history", ENV, "-F", "t",
                            "-o", "json"], env=target["env"], capture_output=True, text=True,
                           timeout=60)
    assert [h["status"] for h in json.loads(shown.stdout)] == ["deployed", "interrupted"]
    again = subprocess.run(deploy_cmd("v9.0"), env=target["env"], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    history = records(kube, ns)
    assert [r["data"]["status"] for r in history] == ["superseded", "interrupted", "deployed"]
    assert running_images(kube, ns) == {history[-1]["data"]["image"]}


def live_parts(kube: Kube, namespace: str) -> set[str]:
    """The parts a revision owns: not the records, nor what outlives revisions by design
    (the SSH host and authorized keys, labelled as kept)."""
    return {f"{o['kind']}/{o['metadata']['name']}"
            for o in parts.live_parts(kube, namespace, ENV)
            if not o["metadata"].get("labels", {}).get(environments.RECORD_LABEL)
            and not o["metadata"].get("labels", {}).get(KEPT_LABEL)}


def expected_parts(target: dict, tag: str, sets: tuple[str, ...]) -> tuple[set[str], str]:
    """What the deploy command renders: the same profile file, the same inputs."""
    profile = get_profile("t", target["env"]["MMEREP_PROFILES"])
    params = dict(s.split("=", 1) for s in ("executors=1", *sets))
    rendered = environments.render_environment(profile, "htcondor-batch", f"{ENV}:{tag}",
                                               params=params)
    names = {f"{o['kind']}/{o['metadata']['name']}" for o in rendered.objects}
    names |= {f"Secret/{ENV}-{short}" for short in rendered.secrets}
    return names, rendered.image


def test_deploys_killed_at_random_points_converge_when_run_again(kube: Kube,
                                                                 target: dict) -> None:
    trials = int(os.environ.get("MMEREP_KILL_TRIALS", "12"))
    rng = random.Random(16)  # fixed seed: the same kill points on every run
    ns = target["namespace"]
    tags = ("k1", "k2", "k3")
    for tag in tags:
        push(tag)
    # Variants differ in image and in their set of objects (synclocal adds a DaemonSet,
    # its ConfigMap and RBAC), so a killed deploy can leave parts the next must prune.
    variants = [(tag, sets) for tag in tags for sets in ((), ("synclocal=false",))]
    started = time.monotonic()
    calibrate = subprocess.run(deploy_cmd("k1"), env=target["env"], capture_output=True,
                               text=True, timeout=300)
    assert calibrate.returncode == 0, calibrate.stderr
    full = time.monotonic() - started
    converged, slowest, kill_points = 0, 0.0, []
    phases = {"before any change": 0, "mid-deploy": 0, "after it finished": 0}
    for trial in range(trials):
        killed_variant = rng.choice(variants)
        known = len(records(kube, ns))
        proc = subprocess.Popen(deploy_cmd(killed_variant[0], *killed_variant[1]),
                                env=target["env"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if rng.random() < 0.5:  # anywhere in the run, start-up included
            at = rng.uniform(0.0, full * 1.1)
            kill_points.append(f"{at:.1f}s")
        else:  # once it has begun to change things: during the apply, the wait, the record
            deadline = time.monotonic() + 120
            while len(records(kube, ns)) == known and proc.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            at = rng.uniform(0.0, 2.0)
            kill_points.append(f"record+{at:.1f}s")
        time.sleep(at)
        proc.send_signal(signal.SIGKILL)
        rc = proc.wait()
        left = [r["data"]["status"] for r in records(kube, ns)[known:]]
        phases["after it finished" if rc == 0 else "mid-deploy" if "deploying" in left
               else "before any change"] += 1
        tag, sets = rng.choice(variants)
        t0 = time.monotonic()
        again = subprocess.run(deploy_cmd(tag, *sets), env=target["env"], capture_output=True,
                               text=True, timeout=300)
        took = time.monotonic() - t0
        assert again.returncode == 0, f"trial {trial} (killed {kill_points[-1]}): {again.stderr}"
        wanted, image = expected_parts(target, tag, sets)
        assert live_parts(kube, ns) == wanted, f"trial {trial}: orphaned or missing objects"
        history = records(kube, ns)
        statuses = [r["data"]["status"] for r in history]
        assert "deploying" not in statuses, f"trial {trial}: {statuses}"
        assert statuses[-1] == "deployed" and statuses.count("deployed") == 1, statuses
        assert set(statuses) <= {"deployed", "superseded", "interrupted"}, statuses
        assert history[-1]["data"]["image"] == image
        assert running_images(kube, ns) == {image}
        assert [int(r["data"]["revision"]) for r in history] == list(range(1, len(history) + 1))
        assert kube.get("coordination.k8s.io/v1", "Lease", envlock.lease_name(ENV), ns) is None
        converged += 1
        slowest = max(slowest, took)
    print(f"\nkill trials: {trials} (seed 16, killed {phases}; kill points {kill_points} "
          f"into a {full:.1f}s deploy), converged: {converged}, slowest convergence: "
          f"{slowest:.1f}s, "
          f"revisions: {len(records(kube, ns))}, of them interrupted by a kill: "
          f"{[r['data']['status'] for r in records(kube, ns)].count('interrupted')}")


def test_dropping_a_part_is_a_change_not_unchanged(kube: Kube, namespace: str) -> None:
    push("v7")
    profile = dataclasses.replace(get_profile("local"), namespace=namespace)

    def render(synclocal: str) -> environments.Rendered:
        return environments.render_environment(profile, "htcondor-batch", f"{ENV}:v7",
                                               params={"executors": 1, "synclocal": synclocal})

    environments.deploy(kube, render("true"), timeout=120)
    without = render("false")
    planned = {(c["action"], c["object"]) for c in environments.diff(kube, without)}
    assert ("deleted", f"DaemonSet/{ENV}-synclocal") in planned
    result = environments.deploy(kube, without, timeout=120)
    assert result.action == "upgraded" and ("deleted", f"DaemonSet/{ENV}-synclocal") in \
        result.changes
    assert kube.get("apps/v1", "DaemonSet", f"{ENV}-synclocal", namespace) is None
    assert environments.deploy(kube, without, timeout=120).action == "unchanged"
