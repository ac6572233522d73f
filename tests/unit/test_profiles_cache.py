"""Profiles are parsed with PyYAML once per version of the file; later commands read the
parsed document from the cache, and see every change of the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CODE = ("import sys\nfrom mmerep.profiles import get_profile\n"
        "p = get_profile('dev', sys.argv[1])\nprint(p.namespace, 'yaml' in sys.modules)\n")


def _namespace(profiles: Path, cache: Path) -> str:
    out = subprocess.run([sys.executable, "-c", CODE, str(profiles)], capture_output=True,
                         text=True, check=True,
                         env={**os.environ, "MMEREP_CACHE_DIR": str(cache)})
    return out.stdout.strip()


def test_parsed_once_and_every_change_seen(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("profiles:\n  dev: {namespace: s3, registry: r.example.org, "
                        "project: p}\n")
    cache = tmp_path / "cache"
    assert _namespace(profiles, cache) == "s3 True"
    assert _namespace(profiles, cache) == "s3 False"  # from the cache, without PyYAML
    profiles.write_text("profiles:\n  dev: {namespace: olci, registry: r.example.org, "
                        "project: p}\n")
    assert _namespace(profiles, cache) == "olci True"
    assert all(oct(f.stat().st_mode)[-3:] == "600" for f in (cache / "profiles").iterdir())
