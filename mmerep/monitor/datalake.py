"""Aggregated read throughput from the bulk/data-lake tier, from synclocal's own metrics.

Each node's synclocal daemon counts the bytes it copied (``synclocal_copied_bytes``); the
monitor reads every daemon's endpoint and adds the increases up. A daemon that restarted
(its counter went down) counts from zero again.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

COPIED = "synclocal_copied_bytes"


def copied_bytes(text: str) -> float:
    """The sum of ``synclocal_copied_bytes`` over datasets in one exposition."""
    total = 0.0
    # The family's name depends on how the TYPE line is written; the samples' does not.
    for family in text_string_to_metric_families(text):
        total += sum(s.value for s in family.samples if s.name == f"{COPIED}_total")
    return total


def fetch(url: str, timeout: float) -> float | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only
            return copied_bytes(response.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


@dataclass
class ReadThroughput:
    timeout: float = 2.0
    _last: dict[str, float] = field(default_factory=dict)
    _total: float = 0.0
    _last_time: float | None = None

    def observe(self, urls: Sequence[str], now: float) -> tuple[float, float, int]:
        """(bytes read in all, bytes per second since the last call, endpoints that answered)."""
        urls = [u for u in urls if u.startswith(("http://", "https://"))]
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(urls)))) as pool:
            values = list(pool.map(lambda u: fetch(u, self.timeout), urls))
        grown, up = 0.0, 0
        for url, value in zip(urls, values, strict=True):
            if value is None:
                continue
            up += 1
            before = self._last.get(url)
            grown += value if before is None or value < before else value - before
            self._last[url] = value
        first = self._last_time is None
        elapsed = now - (self._last_time or now)
        self._last_time = now
        self._total += grown
        rate = grown / elapsed if elapsed > 0 and not first else 0.0
        return self._total, rate, up
