"""synclocal's errors: subclasses of the project's one hierarchy, each with a fix hint."""

from __future__ import annotations

from mmerep.errors import MmerepError


class SyncError(MmerepError):
    """Staging, indexing or evicting local data failed."""


class SourceMissing(SyncError):
    """A source path or glob matched nothing on the bulk tier."""


class SourceUnreadable(SyncError):
    """A source exists but cannot be read (permissions, not a regular file, I/O error)."""


class SourceChanged(SyncError):
    """A source file kept changing while it was being copied."""


class LocalWriteError(SyncError):
    """Writing to the local disk failed; every further file would fail too."""


class DestinationFull(LocalWriteError):
    """The local file system has no room for the data."""


class ManifestError(SyncError):
    """The daemon's dataset manifest is invalid."""

    exit_code = 2


class Busy(SyncError):
    """Another synclocal process holds the root's lock."""
