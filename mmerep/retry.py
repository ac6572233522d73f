"""Back-off for transient failures, shared by the gateways (the API server's, the registry's)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass
class RetryPolicy:
    """Delays between attempts after a transient failure (connection errors, 429, 5xx):
    doubling from ``initial`` up to ``maximum``, ``attempts`` tries in all."""

    attempts: int = 6
    initial: float = 0.2
    maximum: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delays(self) -> Iterator[float]:
        delay = self.initial
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(delay * 2, self.maximum)
