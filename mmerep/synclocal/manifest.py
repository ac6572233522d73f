"""The daemon's manifest: which datasets each node stages, from a ConfigMap.

    datasets:
      - name: s3-olci-2019
        paths: [/bulk/s3/olci/2019, "/bulk/s3/aux/*.nc"]
    settings:            # all optional
      interval: 300      # seconds between passes
      high_watermark: 0.9
      low_watermark: 0.8
      capacity: 2T       # evict against this instead of the file system's size
      jobs: 8
      bwlimit: 500M      # bytes per second, all threads together
      verify: true

The daemon reads the file again on every pass: a mounted ConfigMap changes in place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmerep.errors import UsageError
from mmerep.quantity import parse_size
from mmerep.synclocal.errors import ManifestError, SyncError
from mmerep.synclocal.layout import check_dataset_name

_SETTINGS = {"interval", "high_watermark", "low_watermark", "capacity", "jobs", "bwlimit",
             "verify"}


@dataclass(frozen=True)
class Dataset:
    name: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    interval: float = 300.0
    high_watermark: float = 0.9
    low_watermark: float = 0.8
    capacity: int | None = None
    jobs: int = 8
    bwlimit: int | None = None
    verify: bool = True


@dataclass(frozen=True)
class Manifest:
    datasets: tuple[Dataset, ...] = ()
    settings: Settings = field(default_factory=Settings)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.datasets]


def _bad(what: str) -> ManifestError:
    return ManifestError(f"invalid synclocal manifest: {what}",
                         hint="see `mme-rep synclocal daemon --help` for the format")


def _dataset(i: int, raw: Any) -> Dataset:
    if not isinstance(raw, dict) or set(raw) - {"name", "paths"}:
        raise _bad(f"datasets[{i}] must be a mapping with only 'name' and 'paths'")
    name = raw.get("name")
    if not isinstance(name, str):
        raise _bad(f"datasets[{i}] has no name")
    try:
        check_dataset_name(name)
    except SyncError as exc:
        raise _bad(f"datasets[{i}]: {exc.message}") from None
    paths = raw.get("paths")
    if isinstance(paths, str):
        paths = [paths]
    if not paths or not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise _bad(f"dataset {name} needs 'paths': a list of paths or globs")
    for p in paths:
        if not os.path.isabs(p) or ".." in Path(p).parts:
            raise _bad(f"dataset {name}: path {p!r} must be absolute, without '..'")
    return Dataset(name, tuple(paths))


def _settings(raw: Any) -> Settings:
    if raw is None:
        return Settings()
    if not isinstance(raw, dict) or set(raw) - _SETTINGS:
        extra = sorted(set(raw) - _SETTINGS) if isinstance(raw, dict) else raw
        raise _bad(f"unknown settings {extra}; known: {', '.join(sorted(_SETTINGS))}")
    try:
        s = Settings(
            interval=float(raw.get("interval", 300)),
            high_watermark=float(raw.get("high_watermark", 0.9)),
            low_watermark=float(raw.get("low_watermark", 0.8)),
            capacity=parse_size(raw["capacity"], "capacity") if raw.get("capacity") else None,
            jobs=int(raw.get("jobs", 8)),
            bwlimit=parse_size(raw["bwlimit"], "bwlimit") if raw.get("bwlimit") else None,
            verify=bool(raw.get("verify", True)),
        )
    except (TypeError, ValueError, SyncError, UsageError) as exc:
        raise _bad(f"settings: {exc}") from None
    if not 0 < s.low_watermark <= s.high_watermark <= 1:
        raise _bad("settings: need 0 < low_watermark <= high_watermark <= 1")
    if s.jobs < 1 or s.interval <= 0:
        raise _bad("settings: jobs and interval must be positive")
    return s


def parse_manifest(text: str) -> Manifest:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise _bad(f"not YAML: {exc}") from None
    if not isinstance(raw, dict) or set(raw) - {"datasets", "settings"}:
        raise _bad("top level must be a mapping with 'datasets' and optional 'settings'")
    items = raw.get("datasets") or []
    if not isinstance(items, list):
        raise _bad("'datasets' must be a list")
    datasets = tuple(_dataset(i, d) for i, d in enumerate(items))
    names = [d.name for d in datasets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _bad(f"dataset names repeat: {', '.join(dupes)}")
    return Manifest(datasets, _settings(raw.get("settings")))


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}",
                            hint="mount the synclocal ConfigMap or pass --manifest") from None
    return parse_manifest(text)
