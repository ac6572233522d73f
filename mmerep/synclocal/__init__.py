"""synclocal: stage input data onto a node's local SSD at disk speed, verified, resumable.

Modules, from the bottom up: ``layout`` (where things live under a root, the lock),
``sources`` (paths and globs to files), ``copy`` (one file: chunks, hashing, change
detection), ``index`` (what is staged, crash-safe), ``plan`` and ``stage`` (one
dataset), ``cache`` (pins, LRU eviction by watermarks), ``manifest``, ``node``
(labels for job affinity), ``metrics`` and ``daemon`` (the DaemonSet's loop).
None of them imports typer or rich; progress is reported through a callback.
"""

from typing import TYPE_CHECKING

from mmerep.lazy import lazy_attributes

if TYPE_CHECKING:
    from mmerep.synclocal.errors import (
        Busy,
        DestinationFull,
        LocalWriteError,
        ManifestError,
        SourceChanged,
        SourceMissing,
        SourceUnreadable,
        SyncError,
    )
    from mmerep.synclocal.layout import Layout, writer_lock
    from mmerep.synclocal.stage import StageOptions, StageProgress, StageReport, stage_dataset

# name -> the module that defines it; imported on first use, so reading node notes
# (``mmerep.synclocal.notes``, for ``env status``) does not load the staging engine.
_WHERE = {
    **dict.fromkeys(["Busy", "DestinationFull", "LocalWriteError", "ManifestError",
                     "SourceChanged", "SourceMissing", "SourceUnreadable", "SyncError"],
                    "errors"),
    "Layout": "layout", "writer_lock": "layout",
    **dict.fromkeys(["StageOptions", "StageProgress", "StageReport", "stage_dataset"], "stage"),
}


__getattr__ = lazy_attributes(__name__, _WHERE)


__all__ = [
    "Busy",
    "DestinationFull",
    "Layout",
    "LocalWriteError",
    "ManifestError",
    "SourceChanged",
    "SourceMissing",
    "SourceUnreadable",
    "StageOptions",
    "StageProgress",
    "StageReport",
    "SyncError",
    "stage_dataset",
    "writer_lock",
]
