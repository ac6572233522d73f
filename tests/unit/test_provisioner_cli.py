"""`mme-rep provisioner ...` as a user meets it: help, and bad input refused in one line
with exit 2 before anything is touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmerep", "provisioner", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_help_lists_commands_with_examples() -> None:
    out = run("--help")
    assert out.returncode == 0
    for cmd in ("install", "status", "uninstall", "run"):
        assert cmd in out.stdout
    assert "mme-rep provisioner install -F local" in out.stdout
    out = run("run", "--help")
    assert "controller" in out.stdout and "agent" in out.stdout


@pytest.mark.parametrize(("args", "says"), [
    (["run", "controller", "--name", "mme-rep.io/local-ssd"], "DNS subdomain"),
    (["run", "controller", "--namespace", "Bad_NS"], "not a DNS label"),
    (["run", "agent", "--node", "n1", "--root", "/does/not/exist", "--kubeconfig",
      "/dev/null"], "is not a directory"),
    (["install", "--root", "relative/path"], "not an absolute path"),
    (["status", "--name", "UPPER"], "DNS subdomain"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], says: str, tmp_path: Path) -> None:
    out = run(*args, env={"MMEREP_STATE_DIR": str(tmp_path)})
    assert out.returncode == 2, out.stderr
    assert says in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 2
