"""The daemon's manifest, parsed as data."""

from __future__ import annotations

import pytest

from mmerep.synclocal.errors import ManifestError
from mmerep.synclocal.manifest import Dataset, Settings, parse_manifest

GOOD = """
datasets:
  - name: s3-olci-2019
    paths: [/bulk/s3/olci/2019, "/bulk/s3/aux/*.nc"]
  - name: lut
    paths: /bulk/aux/lut.dat
settings:
  interval: 60
  high_watermark: 0.95
  low_watermark: 0.85
  capacity: 2T
  bwlimit: 500M
"""


def test_good_manifest() -> None:
    m = parse_manifest(GOOD)
    assert m.datasets == (Dataset("s3-olci-2019", ("/bulk/s3/olci/2019", "/bulk/s3/aux/*.nc")),
                          Dataset("lut", ("/bulk/aux/lut.dat",)))
    assert m.settings == Settings(interval=60, high_watermark=0.95, low_watermark=0.85,
                                  capacity=2 * 10**12, bwlimit=500 * 10**6)


def test_empty_manifest_stages_nothing() -> None:
    assert parse_manifest("").datasets == ()


@pytest.mark.parametrize(("text", "message"), [
    ("datasets: [{name: a}]", "needs 'paths'"),
    ("datasets: [{name: a, paths: [relative/dir]}]", "must be absolute"),
    ("datasets: [{name: a, paths: [/bulk/../etc]}]", "without '..'"),
    ("datasets: [{name: '../x', paths: [/b]}]", "invalid dataset name"),
    ("datasets: [{name: a, paths: [/b]}, {name: a, paths: [/c]}]", "repeat: a"),
    ("datasets: [{name: a, paths: [/b], extra: 1}]", "only 'name' and 'paths'"),
    ("settings: {low_watermark: 0.9, high_watermark: 0.8}", "low_watermark <= high"),
    ("settings: {colour: blue}", "unknown settings"),
    ("settings: {capacity: lots}", "capacity 'lots' is not a size"),
    ("datasets: {a: 1}", "must be a list"),
    ("[1, 2]", "top level"),
    ("datasets: [", "not YAML"),
])
def test_bad_manifests_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message) as err:
        parse_manifest(text)
    assert err.value.hint and err.value.exit_code == 2
