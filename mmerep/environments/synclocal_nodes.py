"""The one place environments reach into synclocal: which nodes hold which datasets."""

from __future__ import annotations

from mmerep.errors import KubeForbidden
from mmerep.kube import Kube
from mmerep.synclocal.notes import status_line


def synclocal_line(kube: Kube) -> str:
    """Which staged datasets are complete on how many nodes (from synclocal's node notes)."""
    try:
        return status_line(kube.list_metadata("v1", "Node"))  # the notes are annotations
    except KubeForbidden:
        return "synclocal: nodes are not readable with these credentials"
