"""`env list` reads revision records' metadata only: what it shows is there from the
record's creation on, its status follows every change, and records written before are
read from their data as before. (That a status change reaches the metadata:
tests/cluster/test_environments.py, on the API server.)"""

from __future__ import annotations

import copy
from typing import Any

from mmerep.environments.model import Rendered, record_summary
from mmerep.environments.records import build_record
from mmerep.environments.status import environment_rows


def _rendered(env: str = "s3", image: str = "reg/p/htcondor-batch/s3:v1@sha256:ab") -> Rendered:
    return Rendered(env, "ns", "htcondor-batch", image, {}, [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{env}-config"}}])


def _metadata_only(record: dict[str, Any]) -> dict[str, Any]:
    """What a PartialObjectMetadataList item holds of the record."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": copy.deepcopy(record["metadata"])}


def test_rows_from_metadata_equal_rows_from_data() -> None:
    records = [build_record(_rendered(), 1, "superseded"), build_record(_rendered(), 2, "deployed"),
               build_record(_rendered("olci", "reg/p/jupyter/olci:v2"), 1, "failed")]
    full = environment_rows(records)
    assert environment_rows([_metadata_only(r) for r in records]) == full
    assert [(r["name"], r["revision"], r["status"]) for r in full] == [
        ("olci", 1, "failed"), ("s3", 2, "deployed")]


def test_records_written_before_are_read_from_their_data() -> None:
    old = build_record(_rendered(), 3, "deployed")
    del old["metadata"]["annotations"]
    assert record_summary(old) is None
    assert environment_rows([old])[0]["revision"] == 3
    assert environment_rows([old])[0]["image"] == "reg/p/htcondor-batch/s3:v1@sha256:ab"


def test_the_status_annotation_is_the_one_revisions_writes() -> None:
    from mmerep import revisions
    from mmerep.environments import model

    assert model.STATUS_ANNOTATION == revisions.STATUS_ANNOTATION
