"""`mme-rep images list` against a real CNCF distribution registry on 127.0.0.1.

The registry binary is the one the local cluster uses (built and cached); it starts in a
fraction of a second with its own storage directory, so no cluster is needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mmerep.cli.images import app
from mmerep.cluster.sample import push_sample_image
from mmerep.errors import RegistryError, UsageError
from mmerep.registry import (
    OCI_CONFIG,
    OCI_MANIFEST,
    Blob,
    RegistryClient,
    layer_from_files,
)
from testkit.registry import Registry, free_port

pytestmark = pytest.mark.cluster  # the Go-built registry (mme-rep cluster build)

CREATED = "2024-05-01T10:00:00Z"
ANNOTATED = "2024-06-01T08:30:00Z"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with Registry(tmp_path_factory.mktemp("registry")) as registry:
        yield registry.address


def _push_built(registry: str, repo: str, tag: str) -> str:
    """An image whose config says when it was built (as buildah writes it)."""
    client = RegistryClient(registry)
    layer, diff_id = layer_from_files({"opt/notebook/VERSION": f"{tag}\n".encode()})
    config = Blob(OCI_CONFIG, json.dumps({
        "architecture": "amd64", "os": "linux", "created": CREATED,
        "config": {"User": "1000:1000"}, "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }).encode())
    return client.push_image(repo, tag, [layer], config)


def _push_annotated(registry: str, repo: str, tag: str) -> str:
    """An image with no created in its config, but the OCI annotation on the manifest."""
    client = RegistryClient(registry)
    layer, diff_id = layer_from_files({"opt/x": tag.encode()})
    config = Blob(OCI_CONFIG, json.dumps({"architecture": "amd64", "os": "linux",
                                          "rootfs": {"type": "layers",
                                                     "diff_ids": [diff_id]}}).encode())
    for blob in (layer, config):
        client.push_blob(repo, blob)
    manifest = Blob(OCI_MANIFEST, json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
        "layers": [layer.descriptor()],
        "annotations": {"org.opencontainers.image.created": ANNOTATED},
    }).encode())
    return client.push_manifest(repo, tag, manifest)


@pytest.fixture(scope="module")
def pushed(registry: str) -> dict[tuple[str, str], str]:
    """Digest by (repository, tag)."""
    images = {
        ("mme-rep/htcondor-batch/sentinel3", "v0.1.0"): push_sample_image(
            registry, repo="mme-rep/htcondor-batch/sentinel3", tag="v0.1.0"),
        ("mme-rep/htcondor-batch/sentinel3", "v0.2.0"): push_sample_image(
            registry, repo="mme-rep/htcondor-batch/sentinel3", tag="v0.2.0"),
        ("mme-rep/htcondor-batch/olci-l2", "v1.0.0"): push_sample_image(
            registry, repo="mme-rep/htcondor-batch/olci-l2", tag="v1.0.0"),
        ("mme-rep/jupyter/sentinel3", "v0.1.0"): _push_built(
            registry, "mme-rep/jupyter/sentinel3", "v0.1.0"),
        ("mme-rep/jupyter/sentinel3", "v0.1.1"): _push_annotated(
            registry, "mme-rep/jupyter/sentinel3", "v0.1.1"),
    }
    # Outside the profile's project: never listed.
    push_sample_image(registry, repo="other/htcondor-batch/sentinel3", tag="v9.9.9")
    push_sample_image(registry, repo="mme-rep-old/jupyter/sentinel3", tag="v0.0.1")
    return images


@pytest.fixture()
def profiles(tmp_path: Path, registry: str) -> Path:
    file = tmp_path / "profiles.yaml"
    file.write_text(yaml.safe_dump({"profiles": {
        "test": {"namespace": "s3", "registry": registry, "project": "mme-rep"},
        "down": {"namespace": "s3", "registry": f"127.0.0.1:{free_port()}",
                 "project": "mme-rep"},
    }}))
    return file


def list_json(profiles: Path, *args: str, profile: str = "test") -> Any:
    out = CliRunner().invoke(app, ["list", *args, "-F", profile, "--profiles", str(profiles),
                                   "-o", "json"])
    assert out.exit_code == 0, (out.output, out.exception)
    return json.loads(out.stdout)


def test_lists_every_flavour_with_tags_and_digests(pushed, profiles, registry) -> None:
    rows = list_json(profiles)
    got = {(r["repository"], r["tag"]): r["digest"] for r in rows}
    assert got == pushed
    by_key = {(r["repository"], r["tag"]): r for r in rows}
    first = by_key["mme-rep/htcondor-batch/sentinel3", "v0.1.0"]
    assert first["flavour"] == "htcondor-batch" and first["image"] == "sentinel3"
    assert first["reference"] == f"{registry}/mme-rep/htcondor-batch/sentinel3:v0.1.0"
    assert first["digest"] == RegistryClient(registry).resolve(
        "mme-rep/htcondor-batch/sentinel3", "v0.1.0")
    # Same content, other tag: other digest (the tag is in the image).
    assert first["digest"] != by_key["mme-rep/htcondor-batch/sentinel3", "v0.2.0"]["digest"]


def test_age_from_the_config_or_the_annotation(pushed, profiles) -> None:
    rows = {(r["repository"], r["tag"]): r for r in list_json(profiles, "jupyter")}
    built = rows["mme-rep/jupyter/sentinel3", "v0.1.0"]
    annotated = rows["mme-rep/jupyter/sentinel3", "v0.1.1"]
    assert built["created"] == CREATED and annotated["created"] == ANNOTATED
    assert built["age_seconds"] > annotated["age_seconds"] > 0
    # Newest first within an image.
    assert [r["tag"] for r in list_json(profiles, "jupyter")] == ["v0.1.1", "v0.1.0"]
    sample = list_json(profiles, "htcondor-batch")[0]
    assert sample["created"] is None and sample["age_seconds"] is None


def test_flavour_filters(pushed, profiles) -> None:
    rows = list_json(profiles, "htcondor-batch")
    assert {r["repository"] for r in rows} == {"mme-rep/htcondor-batch/sentinel3",
                                               "mme-rep/htcondor-batch/olci-l2"}
    assert {r["flavour"] for r in rows} == {"htcondor-batch"}
    assert list_json(profiles, "interactive") == []


def test_table_output(pushed, profiles) -> None:
    out = CliRunner().invoke(app, ["list", "jupyter", "-F", "test", "--profiles",
                                   str(profiles)])
    assert out.exit_code == 0, out.output
    digest = pushed["mme-rep/jupyter/sentinel3", "v0.1.0"]
    assert "sentinel3" in out.stdout and "v0.1.1" in out.stdout
    assert digest[:19] in out.stdout
    assert "d" in out.stdout.split("v0.1.0")[1].splitlines()[0]  # age in days
    empty = CliRunner().invoke(app, ["list", "interactive", "-F", "test", "--profiles",
                                     str(profiles)])
    assert empty.exit_code == 0 and "no images under" in empty.stderr


def test_bad_flavour_and_unreachable_registry(profiles) -> None:
    bad = CliRunner().invoke(app, ["list", "Jupyter/x", "-F", "test", "--profiles",
                                   str(profiles)])
    assert isinstance(bad.exception, UsageError) and bad.exception.exit_code == 2
    down = CliRunner().invoke(app, ["list", "-F", "down", "--profiles", str(profiles)])
    assert isinstance(down.exception, RegistryError)
    assert "unreachable" in down.exception.message


def test_catalog_and_tags_follow_pagination(pushed, registry) -> None:
    client = RegistryClient(registry)
    one_by_one = client._paged("/v2/_catalog?n=1", "repositories", "listing")
    assert one_by_one is not None and sorted(one_by_one) == client.catalog()
    assert len(one_by_one) == 5
    tags = client._paged("/v2/mme-rep/htcondor-batch/sentinel3/tags/list?n=1", "tags",
                         "listing")
    assert tags == ["v0.1.0", "v0.2.0"]
    assert client.all_tags("mme-rep/none/such") == []


def test_candidate_tags_of_ci_builds_only_with_all(pushed, profiles, registry) -> None:
    """The build jobs push build-<key> (or ci-<pipeline>) before the scan; `images list`
    shows only what was published, unless --all."""
    repo = "mme-rep/interactive/sentinel3"
    key_tag = "build-" + "0123456789abcdef" * 2
    for tag in (key_tag, "ci-1234", "v0.3.0", "build-notakey"):
        push_sample_image(registry, repo=repo, tag=tag)
    # buildah's layer cache in the registry: never an image to deploy.
    push_sample_image(registry, repo="mme-rep/buildcache/interactive/sentinel3", tag="a" * 64)
    assert all(r["flavour"] != "buildcache" for r in list_json(profiles, "--all"))
    assert [r["tag"] for r in list_json(profiles, "interactive")] == ["build-notakey", "v0.3.0"]
    every = {r["tag"]: r["candidate"] for r in list_json(profiles, "interactive", "--all")}
    assert every == {key_tag: True, "ci-1234": True, "v0.3.0": False, "build-notakey": False}
    table = CliRunner().invoke(app, ["list", "interactive", "-F", "test", "--profiles",
                                     str(profiles)])
    assert table.exit_code == 0 and key_tag not in table.stdout
    assert "2 candidate tags of CI builds not shown" in table.stderr
