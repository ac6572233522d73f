"""Which pods env repair restarts, as data."""

from __future__ import annotations

from mmerep.environments.repair import _uses_secret, stuck_reason


def pod(reason: str | None = None, **spec: object) -> dict:
    state = {"waiting": {"reason": reason}} if reason else {"running": {}}
    return {"metadata": {"name": "p"}, "spec": spec,
            "status": {"containerStatuses": [{"name": "c", "state": state}]}}


def test_pods_stuck_in_crash_loops_and_image_errors_are_restarted_others_not() -> None:
    for reason in ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull",
                   "CreateContainerConfigError"):
        assert stuck_reason(pod(reason)) == reason
    assert stuck_reason(pod("ContainerCreating")) is None
    assert stuck_reason(pod()) is None
    assert stuck_reason({"metadata": {"name": "p"}, "status": {}}) is None


def test_a_pod_uses_a_secret_through_a_volume_or_an_environment_variable() -> None:
    by_volume = pod(volumes=[{"name": "pw", "secret": {"secretName": "s3-pool"}}])
    by_env = pod(containers=[{"name": "c", "env": [
        {"name": "T", "valueFrom": {"secretKeyRef": {"name": "s3-pool", "key": "password"}}}]}])
    assert _uses_secret(by_volume, {"s3-pool"}) and _uses_secret(by_env, {"s3-pool"})
    assert not _uses_secret(by_volume, {"other"})
    assert not _uses_secret(pod(volumes=[{"name": "t", "emptyDir": {}}]), {"s3-pool"})
