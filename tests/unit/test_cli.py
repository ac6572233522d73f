"""The command line as a user meets it: help, version, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

from mmerep import __version__


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmerep", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=60)


def test_help_lists_every_command_group() -> None:
    out = run("--help")
    assert out.returncode == 0
    for group in ("env", "scaler", "ssh", "ci", "images", "provisioner", "synclocal",
                  "cluster"):
        assert group in out.stdout, group
    assert "Usage: mme-rep" in out.stdout


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"mme-rep {__version__}"


def test_mmerep_error_is_one_red_line_with_a_hint_and_exit_1(tmp_path) -> None:
    # No cluster was ever started in this state dir, so kubeconfig needs `cluster up`.
    out = run("cluster", "status", "-o", "json",
              env={"MMEREP_STATE_DIR": str(tmp_path / "state")})
    assert out.returncode == 1
    assert '"running": false' in out.stdout
    assert "Traceback" not in out.stderr


def test_missing_go_is_one_clear_line(tmp_path) -> None:
    # An empty cache and no go on PATH: the build cannot even start.
    env = {"PATH": str(tmp_path), "MMEREP_CACHE_DIR": str(tmp_path / "cache")}
    out = run("cluster", "build", env=env)
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1
    assert "go is not installed" in lines[0] and "install Go 1.26" in lines[0]
    assert "Traceback" not in out.stderr


def test_debug_shows_the_traceback(tmp_path) -> None:
    env = {"PATH": str(tmp_path), "MMEREP_CACHE_DIR": str(tmp_path / "cache")}
    out = run("--debug", "cluster", "build", env=env)
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "ToolchainError" in out.stderr


def test_bad_option_value_exits_2_without_traceback() -> None:
    out = run("cluster", "up", "--nodes", "0")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr


def test_help_does_not_import_the_kubernetes_client() -> None:
    code = ("import sys\nsys.argv=['mme-rep','--help']\nimport mmerep.cli as c\n"
            "try:\n    c.main()\nexcept SystemExit:\n    pass\n"
            "print('kubernetes' in sys.modules, 'mmerep.cluster.local' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_the_root_listing_matches_each_groups_own_help() -> None:
    from mmerep.cli import GROUPS, group_app

    for name, (_, short) in GROUPS.items():
        own = " ".join(str(group_app(name).info.help).split())
        assert own.startswith(" ".join(short.split()).rstrip(".")), name


def test_every_group_answers_its_help() -> None:
    from mmerep.cli import GROUPS, PLANNED

    for name in [*GROUPS, *PLANNED]:
        out = run(name, "--help")
        assert out.returncode == 0, (name, out.stderr)
        assert f"Usage: mme-rep {name}" in out.stdout


def test_root_help_loads_no_command_group() -> None:
    code = ("import sys\nsys.argv=['mme-rep','--help']\nimport mmerep.cli as c\n"
            "try:\n    c.main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('mmerep.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]"
