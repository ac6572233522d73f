"""A cluster state directory of the benchmark's own, so the user's cluster is left alone."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def private_cluster(prefix: str) -> Iterator[Path]:
    """A work directory whose ``state`` holds the cluster; stopped and removed at the end."""
    from mmerep.cluster import local

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        old = os.environ.get("MMEREP_STATE_DIR")
        os.environ["MMEREP_STATE_DIR"] = str(Path(tmp) / "state")
        try:
            yield Path(tmp)
        finally:
            local.down()
            if old is None:
                os.environ.pop("MMEREP_STATE_DIR", None)
            else:
                os.environ["MMEREP_STATE_DIR"] = old
