"""`mme-rep synclocal ...` as a user runs it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmerep.cli.synclocal import app
from mmerep.errors import UsageError
from mmerep.synclocal.errors import Busy
from mmerep.synclocal.layout import Layout, writer_lock

runner = CliRunner()


@pytest.fixture
def bulk(tmp_path: Path) -> Path:
    b = tmp_path / "bulk"
    for name in ("olci", "slstr"):
        (b / name).mkdir(parents=True)
        (b / name / "x.nc").write_bytes(random.Random(name).randbytes(100_000))
    return b


def test_stage_each_directory_as_its_own_dataset_like_cp_r(tmp_path: Path, bulk: Path) -> None:
    ssd = tmp_path / "ssd"
    result = runner.invoke(app, ["stage", str(bulk / "olci"), str(bulk / "slstr"),
                                 "--to", str(ssd)])
    assert result.exit_code == 0, result.output
    assert "complete olci: 1 copied" in result.output
    assert (ssd / "slstr" / "x.nc").read_bytes() == (bulk / "slstr" / "x.nc").read_bytes()
    again = runner.invoke(app, ["stage", str(bulk / "olci"), "--to", str(ssd)])
    assert "0 copied (0 B), 1 already staged" in again.output


def test_a_file_needs_a_dataset_name(tmp_path: Path, bulk: Path) -> None:
    result = runner.invoke(app, ["stage", str(bulk / "olci" / "x.nc"), "--to", str(tmp_path)])
    assert isinstance(result.exception, UsageError) and "--dataset" in str(result.exception)
    ok = runner.invoke(app, ["stage", str(bulk / "olci" / "x.nc"), "-d", "one",
                             "--to", str(tmp_path / "ssd")])
    assert ok.exit_code == 0 and (tmp_path / "ssd" / "one" / "x.nc").exists()


def test_a_second_stager_is_told_who_holds_the_root(tmp_path: Path, bulk: Path) -> None:
    layout = Layout(tmp_path / "ssd")
    with writer_lock(layout):
        result = runner.invoke(app, ["stage", str(bulk / "olci"), "--to", str(layout.root)])
    assert isinstance(result.exception, Busy) and "pid" in str(result.exception)


def test_status_pin_unpin_evict(tmp_path: Path, bulk: Path) -> None:
    ssd = str(tmp_path / "ssd")
    runner.invoke(app, ["stage", str(bulk / "olci"), str(bulk / "slstr"), "--to", ssd])
    assert runner.invoke(app, ["pin", "olci", "--root", ssd, "--holder", "job-1"]).exit_code == 0
    data = json.loads(runner.invoke(app, ["status", "--root", ssd, "-o", "json"]).output)
    rows = {d["name"]: d for d in data["datasets"]}
    assert rows["olci"]["complete"] and rows["olci"]["bytes"] == 100_000
    assert rows["olci"]["pinned_by"] == ["job-1"] and rows["slstr"]["pinned_by"] == []
    out = runner.invoke(app, ["evict", "--root", ssd, "--capacity", "100K", "--high", "0.5",
                              "--low", "0.5"]).output
    assert "evicted slstr" in out and "pinned: olci" in out
    assert "unpinned olci" in runner.invoke(app, ["unpin", "olci", "--root", ssd,
                                                  "--holder", "job-1"]).output
    table = runner.invoke(app, ["status", "--root", ssd]).output
    assert "olci" in table and "slstr" not in table


def test_daemon_once(tmp_path: Path, bulk: Path) -> None:
    m = tmp_path / "m.yaml"
    m.write_text(f"datasets: [{{name: olci, paths: [{bulk}/olci]}}]")
    result = runner.invoke(app, ["daemon", "--manifest", str(m), "--root", str(tmp_path / "ssd"),
                                 "--once"])
    assert result.exit_code == 0, result.output
    assert "1/1 datasets complete" in result.output
    m.write_text(f"datasets: [{{name: gone, paths: [{bulk}/nothing]}}]")
    failed = runner.invoke(app, ["daemon", "--manifest", str(m), "--root", str(tmp_path / "ssd"),
                                 "--once"])
    assert failed.exit_code == 1 and "does not exist" in failed.output
