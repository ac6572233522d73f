"""`env status`'s synclocal line comes from synclocal's own reading of its node notes,
without loading the staging engine (a read command pays for every module it imports)."""

from __future__ import annotations

import subprocess
import sys


def test_env_status_reads_node_notes_without_the_staging_engine() -> None:
    code = ("import sys, mmerep.environments.synclocal_nodes as s, mmerep.synclocal.notes as n;"
            "assert s.status_line is n.status_line;"
            "print(sorted(m for m in sys.modules if m.startswith('mmerep.synclocal')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    loaded = out.stdout.strip()
    assert "mmerep.synclocal.stage" not in loaded, loaded
    assert "mmerep.synclocal.copy" not in loaded, loaded
