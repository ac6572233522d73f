"""The last step of the image pipeline: the operator deploys what CI pushed, pinned."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from mmerep import environments
from mmerep.kube import Kube
from mmerep.profiles import get_profile
from testkit import pipeline as harness

pytestmark = [pytest.mark.pipeline, pytest.mark.cluster]


def test_env_deploy_pins_the_digest_the_pipeline_published(pipeline_run, kube: Kube) -> None:
    namespace = f"ci-{uuid.uuid4().hex[:8]}"
    profile = dataclasses.replace(get_profile("local"), namespace=namespace,
                                  registry=pipeline_run.registry, project=harness.PROJECT)
    image = f"{harness.IMAGE_NAME}:{pipeline_run.tags[0]}"
    try:
        rendered = environments.render_environment(profile, "interactive", image)
        digest = pipeline_run.digests["interactive"]
        assert digest.startswith("sha256:")
        assert rendered.image == (f"{pipeline_run.registry}/{pipeline_run.repos['interactive']}"
                                  f":{pipeline_run.tags[0]}@{digest}")
        assert environments.deploy(kube, rendered, timeout=120).action == "installed"
        live = kube.get("apps/v1", "Deployment", f"{harness.IMAGE_NAME}-interactive", namespace)
        assert live is not None
        assert live["spec"]["template"]["spec"]["containers"][0]["image"].endswith(digest)
    finally:
        kube.delete("v1", "Namespace", namespace, propagation="Background")
