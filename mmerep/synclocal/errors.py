"""synclocal's errors, defined with the rest of the one tree in ``mmerep.errors``."""

from __future__ import annotations

from mmerep.errors import (
    Busy,
    DestinationFull,
    LocalWriteError,
    ManifestError,
    SourceChanged,
    SourceMissing,
    SourceUnreadable,
    SyncError,
)

__all__ = ["Busy", "DestinationFull", "LocalWriteError", "ManifestError", "SourceChanged",
           "SourceMissing", "SourceUnreadable", "SyncError"]
