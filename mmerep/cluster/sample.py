"""A small sample processor image, assembled in Python and pushed to the local registry.

No base image can be pulled here, so the sample is a single layer holding a script; it
is enough to resolve and pin a real digest, which is what a deployment needs.
"""

from __future__ import annotations

from mmerep.registry import RegistryClient, image_config, layer_from_files

SAMPLE_REPO = "mme-rep/htcondor-batch/sentinel3"
SAMPLE_TAG = "v0.1.0"

_PROCESS = b"""#!/bin/sh
# Sample processor: echoes its arguments, as a real one would process a product.
echo "sentinel3 sample processor: $*"
"""


def push_sample_image(registry: str, repo: str = SAMPLE_REPO, tag: str = SAMPLE_TAG,
                      note: str = "") -> str:
    """Push the sample image as ``repo:tag``; returns its manifest digest."""
    layer, diff_id = layer_from_files({
        "opt/processor/process": _PROCESS,
        "opt/processor/VERSION": f"{tag}{note}\n".encode(),
    })
    config = image_config([diff_id], entrypoint=["/opt/processor/process"], labels={
        "org.opencontainers.image.title": repo.rsplit("/", 1)[-1],
        "org.opencontainers.image.version": tag,
    })
    return RegistryClient(registry).push_image(repo, tag, [layer], config)
