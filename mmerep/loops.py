"""The fixed-rate loop of the in-pod daemons (autoscaler, monitor)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from mmerep.errors import MmerepError


def every(interval: float, stop: threading.Event, step: Callable[[], object],
          on_error: Callable[[MmerepError], None]) -> None:
    """``step`` every ``interval`` seconds until ``stop`` is set. A step that fails (an
    ``MmerepError``) goes to ``on_error`` and the next one runs as planned; a slow step
    starts the next one at once instead of letting them pile up."""
    next_run = time.monotonic()
    while not stop.is_set():
        try:
            step()
        except MmerepError as exc:
            on_error(exc)
        next_run += interval
        delay = next_run - time.monotonic()
        if delay < 0:
            next_run, delay = time.monotonic(), 0
        if stop.wait(delay):
            return
