"""Prometheus metrics of the daemon, fed from stage and eviction reports.

A registry of its own (not the library's global one) so that tests, and several
daemons in one process, do not collide.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from mmerep.synclocal.cache import DatasetInfo, EvictionReport, Usage
from mmerep.synclocal.stage import StageReport


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.bytes = Counter("synclocal_copied_bytes", "Bytes copied to the local disk",
                             ["dataset"], registry=r)
        self.files = Counter("synclocal_copied_files", "Files copied to the local disk",
                             ["dataset"], registry=r)
        self.skipped = Counter("synclocal_skipped_files",
                               "Files already staged and verified, not copied again",
                               ["dataset"], registry=r)
        self.verify_failures = Counter(
            "synclocal_verify_failures",
            "Copies found not to match their source (source changed, checksum mismatch)",
            ["dataset"], registry=r)
        self.errors = Counter("synclocal_errors", "Files or datasets that failed to stage",
                              ["dataset", "kind"], registry=r)
        self.evictions = Counter("synclocal_evictions", "Datasets evicted", registry=r)
        self.evicted_bytes = Counter("synclocal_evicted_bytes", "Bytes freed by eviction",
                                     registry=r)
        self.throughput = Gauge("synclocal_throughput_bytes_per_second",
                                "Copy throughput of the dataset's last run", ["dataset"],
                                registry=r)
        self.complete = Gauge("synclocal_dataset_complete",
                              "1 when the dataset is completely staged and verified",
                              ["dataset"], registry=r)
        self.dataset_bytes = Gauge("synclocal_dataset_bytes", "Bytes staged per dataset",
                                   ["dataset"], registry=r)
        self.used = Gauge("synclocal_cache_used_bytes", "Bytes used on the local disk",
                          registry=r)
        self.capacity = Gauge("synclocal_cache_capacity_bytes",
                              "Size of the local disk (or the configured capacity)",
                              registry=r)
        self.last_pass = Gauge("synclocal_last_pass_timestamp_seconds",
                               "When the daemon last finished a pass", registry=r)

    def stage(self, rep: StageReport) -> None:
        d = rep.dataset
        self.bytes.labels(d).inc(rep.bytes_copied)
        self.files.labels(d).inc(rep.files_copied)
        self.skipped.labels(d).inc(rep.files_skipped)
        self.verify_failures.labels(d).inc(rep.verify_failures)
        for f in rep.failures:
            self.errors.labels(d, f.kind.__name__).inc()
        if rep.bytes_copied:
            self.throughput.labels(d).set(rep.throughput)

    def error(self, dataset: str, kind: str) -> None:
        self.errors.labels(dataset, kind).inc()

    def eviction(self, rep: EvictionReport) -> None:
        self.evictions.inc(len(rep.evicted))
        self.evicted_bytes.inc(sum(n for _, n in rep.evicted))

    def state(self, datasets: Sequence[DatasetInfo], use: Usage, now: float) -> None:
        self.complete.clear()  # so that evicted datasets' series disappear
        self.dataset_bytes.clear()
        for d in datasets:
            self.complete.labels(d.name).set(1 if d.complete else 0)
            self.dataset_bytes.labels(d.name).set(d.bytes)
        self.used.set(use.used)
        self.capacity.set(use.total)
        self.last_pass.set(now)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - a pod's port
        start_http_server(port, addr=addr, registry=self.registry)
