"""The daemon's passes: staging from a manifest, eviction, metrics, node reports."""

from __future__ import annotations

import random
import socket
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mmerep.errors import KubeUnreachable
from mmerep.synclocal.cache import DatasetInfo, list_datasets
from mmerep.synclocal.daemon import Daemon
from mmerep.synclocal.errors import ManifestError
from mmerep.synclocal.layout import Layout, writer_lock
from mmerep.synclocal.stage import stage_dataset

MiB = 1 << 20


def write(path: Path, size: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))


@pytest.fixture
def bulk(tmp_path: Path) -> Path:
    b = tmp_path / "bulk"
    write(b / "olci" / "a.nc", MiB, seed=1)
    write(b / "olci" / "b.nc", MiB // 2, seed=2)
    write(b / "aux" / "lut.dat", 1000, seed=3)
    return b


def manifest(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(body)
    return path


class Reports:
    def __init__(self) -> None:
        self.seen: list[list[DatasetInfo]] = []

    def __call__(self, datasets: Sequence[DatasetInfo]) -> None:
        self.seen.append(list(datasets))


def test_a_pass_stages_reports_and_counts(tmp_path: Path, bulk: Path) -> None:
    m = manifest(tmp_path, f"""
datasets:
  - {{name: olci, paths: [{bulk}/olci]}}
  - {{name: aux, paths: ["{bulk}/aux/*.dat"]}}
  - {{name: missing, paths: [{bulk}/nothing-here]}}
""")
    reports = Reports()
    d = Daemon(Layout(tmp_path / "ssd"), m, reporter=reports)
    first = d.run(once=True)
    assert list(first.errors) == ["missing"] and "does not exist" in first.errors["missing"]
    assert {x.name: x.complete for x in reports.seen[-1]} == {"olci": True, "aux": True}
    staged = tmp_path / "ssd" / "olci" / "a.nc"
    assert staged.read_bytes() == (bulk / "olci" / "a.nc").read_bytes()

    sample = d.metrics.registry.get_sample_value
    assert sample("synclocal_copied_bytes_total", {"dataset": "olci"}) == MiB + MiB // 2
    assert sample("synclocal_copied_files_total", {"dataset": "aux"}) == 1
    assert sample("synclocal_errors_total", {"dataset": "missing", "kind": "SourceMissing"}) == 1
    assert sample("synclocal_dataset_complete", {"dataset": "olci"}) == 1
    assert sample("synclocal_throughput_bytes_per_second", {"dataset": "olci"}) > 0

    d.run_pass()  # nothing changed: everything is skipped, nothing copied again
    assert sample("synclocal_copied_bytes_total", {"dataset": "olci"}) == MiB + MiB // 2
    assert sample("synclocal_skipped_files_total", {"dataset": "olci"}) == 2


def test_room_is_made_by_evicting_datasets_no_longer_wanted(tmp_path: Path, bulk: Path) -> None:
    layout = Layout(tmp_path / "ssd")
    write(tmp_path / "bulk" / "old" / "x.nc", 2 * MiB)
    with writer_lock(layout):
        stage_dataset(layout, "old", [str(bulk / "old")])
    m = manifest(tmp_path, f"""
datasets: [{{name: olci, paths: [{bulk}/olci]}}]
settings: {{capacity: 3M, high_watermark: 0.9, low_watermark: 0.8}}
""")
    d = Daemon(layout, m)
    report = d.run(once=True)
    assert report.ok and [x.name for x in list_datasets(layout)] == ["olci"]
    assert d.metrics.registry.get_sample_value("synclocal_evictions_total") == 1
    assert d.metrics.registry.get_sample_value("synclocal_evicted_bytes_total") == 2 * MiB


def test_a_broken_manifest_edit_keeps_the_last_good_one(tmp_path: Path, bulk: Path) -> None:
    m = manifest(tmp_path, "datasets: [")
    with pytest.raises(ManifestError):
        Daemon(Layout(tmp_path / "ssd"), m).run_pass()
    m.write_text(f"datasets: [{{name: olci, paths: [{bulk}/olci]}}]")
    d = Daemon(Layout(tmp_path / "ssd"), m)
    d.run_pass()
    m.write_text("datasets: [{name: olci}]")
    assert d.run_pass().ok


def test_a_failing_node_report_does_not_lose_the_staged_data(tmp_path: Path, bulk: Path) -> None:
    def unreachable(_: Sequence[DatasetInfo]) -> None:
        raise KubeUnreachable("cannot reach the API server")

    m = manifest(tmp_path, f"datasets: [{{name: olci, paths: [{bulk}/olci]}}]")
    report = Daemon(Layout(tmp_path / "ssd"), m, reporter=unreachable).run(once=True)
    assert list(report.errors) == ["(node report)"]
    assert [x.complete for x in report.datasets] == [True]


def test_metrics_are_served_over_http(tmp_path: Path, bulk: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = manifest(tmp_path, f"datasets: [{{name: olci, paths: [{bulk}/olci]}}]")
    d = Daemon(Layout(tmp_path / "ssd"), m)
    d.metrics.serve(port, addr="127.0.0.1")
    d.run(once=True)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    samples = {(s.name, tuple(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("synclocal_copied_bytes_total", (("dataset", "olci"),))] == MiB + MiB // 2
    assert samples[("synclocal_cache_used_bytes", ())] > 0
