"""Where mme-rep keeps its cache and config; overridable for tests and CI."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$MMEREP_CACHE_DIR``, else ``$XDG_CACHE_HOME/mme-rep``, else ``~/.cache/mme-rep``."""
    explicit = os.environ.get("MMEREP_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mme-rep"


def config_dir() -> Path:
    """``$MMEREP_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/mme-rep``, else ``~/.config/mme-rep``."""
    explicit = os.environ.get("MMEREP_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mme-rep"


def state_dir() -> Path:
    """Where the local cluster keeps its state: ``$MMEREP_STATE_DIR`` or the cache's ``local``.

    Binaries stay under ``cache_dir()`` so a test run with its own state dir reuses them.
    """
    explicit = os.environ.get("MMEREP_STATE_DIR")
    return Path(explicit) if explicit else cache_dir() / "local"
