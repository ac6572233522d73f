"""The DaemonSet's loop: read the manifest, stage each dataset, evict, report, sleep.

A failing dataset is logged, counted and retried on the next pass; it never stops the
others. Being killed at any moment is safe: the next pass resumes from the index.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mmerep.errors import MmerepError
from mmerep.synclocal.cache import DatasetInfo, EvictionReport, evict, list_datasets, usage
from mmerep.synclocal.errors import SyncError
from mmerep.synclocal.layout import Layout, writer_lock
from mmerep.synclocal.manifest import Manifest, load_manifest
from mmerep.synclocal.metrics import Metrics
from mmerep.synclocal.node import Reporter
from mmerep.synclocal.stage import OnStageProgress, StageOptions, StageReport, stage_dataset

log = logging.getLogger(__name__)


@dataclass
class PassReport:
    staged: list[StageReport] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    eviction: EvictionReport | None = None
    datasets: list[DatasetInfo] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class Daemon:
    def __init__(self, layout: Layout, manifest_path: str | Path, *,
                 reporter: Reporter | None = None, metrics: Metrics | None = None,
                 progress: OnStageProgress | None = None) -> None:
        self.layout, self.manifest_path = layout, Path(manifest_path)
        self.reporter, self.progress = reporter, progress
        self.metrics = metrics or Metrics()
        self.stop = threading.Event()
        self._manifest: Manifest | None = None

    def manifest(self) -> Manifest:
        """The manifest as it is now; a broken edit keeps the last good one running."""
        try:
            self._manifest = load_manifest(self.manifest_path)
        except SyncError as exc:
            if self._manifest is None:
                raise
            log.error("%s; keeping the previous manifest", exc)
        assert self._manifest is not None
        return self._manifest

    def run_pass(self) -> PassReport:
        manifest = self.manifest()
        s = manifest.settings
        report = PassReport()
        with writer_lock(self.layout, wait=True):
            for ds in manifest.datasets:
                if self.stop.is_set():
                    break

                def make_room(need: int, name: str = ds.name) -> None:
                    rep = evict(self.layout, high=s.high_watermark, low=s.low_watermark,
                                need=need, capacity=s.capacity, protect={name},
                                keep_if_possible=manifest.names)
                    self._evicted(rep)

                opts = StageOptions(jobs=s.jobs, verify=s.verify, bwlimit=s.bwlimit,
                                    progress=self.progress, make_room=make_room,
                                    cancel=self.stop)
                try:
                    rep = stage_dataset(self.layout, ds.name, list(ds.paths), opts)
                except SyncError as exc:
                    report.errors[ds.name] = str(exc)
                    self.metrics.error(ds.name, type(exc).__name__)
                    log.error("dataset %s: %s", ds.name, exc)
                    continue
                report.staged.append(rep)
                self.metrics.stage(rep)
                try:
                    rep.raise_for_failures()
                    log.info("dataset %s: %d copied, %d skipped, %.0f MB/s", ds.name,
                             rep.files_copied, rep.files_skipped, rep.throughput / 1e6)
                except SyncError as exc:
                    report.errors[ds.name] = str(exc)
                    log.error("%s", exc)
            report.eviction = evict(self.layout, high=s.high_watermark, low=s.low_watermark,
                                    capacity=s.capacity, keep_if_possible=manifest.names)
            self._evicted(report.eviction)
        report.datasets = list_datasets(self.layout)
        self.metrics.state(report.datasets, usage(self.layout, s.capacity), time.time())
        if self.reporter is not None:
            try:
                self.reporter(report.datasets)
            except MmerepError as exc:  # the data is staged; the label comes next pass
                report.errors["(node report)"] = str(exc)
                log.error("reporting to the node failed: %s", exc)
        return report

    def _evicted(self, rep: EvictionReport) -> None:
        self.metrics.eviction(rep)
        for name, size in rep.evicted:
            log.info("evicted %s (%d bytes, LRU above the high watermark)", name, size)

    def run(self, *, once: bool = False) -> PassReport:
        """Passes until ``stop`` is set (SIGTERM); with ``once``, a single pass."""
        while True:
            report = self.run_pass()
            if once or self.stop.wait(self.manifest().settings.interval):
                return report
