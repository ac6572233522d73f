"""The command line as a user meets it: help, version, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mmerep import __version__


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmerep", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=60)


def help_sections(text: str) -> dict[str, list[str]]:
    """The names listed in each section of a help text ("Commands:" -> ["env", ...])."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = sections.setdefault(line[:-1], [])
        elif current is not None and line.startswith("  ") and not line.startswith("   "):
            current.append(line.split()[0])
    return sections


def test_help_lists_every_command_group_and_apart_what_is_not_there() -> None:
    from mmerep.cli import GROUPS, PLANNED

    out = run("--help")
    assert out.returncode == 0
    assert out.stdout.startswith("Usage: mme-rep")
    sections = help_sections(out.stdout)
    assert sections["Commands"] == list(GROUPS)
    # Every feature planned so far has landed: nothing is listed as missing.
    assert PLANNED == {}
    assert "Not available in this version" not in sections


def test_a_feature_not_there_says_so_in_one_line_and_exits_2() -> None:
    # The mechanism, with a made-up planned feature: the real program with it added.
    code = ("import sys; from mmerep import cli; "
            "cli.PLANNED['teleport'] = 'Move an environment to another cluster.'; "
            "sys.argv = ['mme-rep', *sys.argv[1:]]; cli.main()")
    what = {"teleport": "Move an environment to another cluster"}
    for args in (["teleport"], ["teleport", "--help"], ["teleport", "--anything"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2, args
        assert out.stdout == ""
        assert out.stderr.splitlines() == [
            f"error: mme-rep {args[0]} is not available in this version "
            f"({what[args[0]]}); nothing was done"]


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"mme-rep {__version__}"


def test_mmerep_error_is_one_red_line_with_a_hint_and_exit_1(tmp_path) -> None:
    # No cluster was ever started in this state dir: the local profile's kubeconfig is
    # missing, which the gateway reports as a KubeError (an MmerepError, exit code 1).
    out = run("env", "list", env={"MMEREP_STATE_DIR": str(tmp_path / "state"),
                                  "FORCE_COLOR": "1", "COLUMNS": "400"})
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("\x1b[1;31merror:\x1b[0m cannot load kubeconfig "
                               f"{tmp_path / 'state' / 'kubeconfig'} context 'mmerep-local'")
    assert lines[0].endswith("(check the file and the context name (kubectl config "
                             "get-contexts))\x1b[0m")


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
    from mmerep.cli import GROUPS

    for name in GROUPS:
        out = run(name, "--help")
        assert out.returncode == 0, (name, out.stderr)
        assert out.stdout.startswith(f"Usage: mme-rep {name}")


def test_root_help_loads_no_command_group(tmp_path: Path) -> None:
    from mmerep.cli import GROUPS

    code = ("import sys\nsys.argv=['mme-rep','--help']\nimport mmerep.cli as c\n"
            "try:\n    c.main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('mmerep.cli.')))")
    env = {**os.environ, "MMEREP_CACHE_DIR": str(tmp_path)}
    first, again = (subprocess.run([sys.executable, "-c", code], capture_output=True,
                                   text=True, timeout=60, env=env) for _ in range(2))
    for out in (first, again):
        loaded = out.stdout.strip().splitlines()[-1]
        assert not any(f"'{module}'" in loaded for module, _ in GROUPS.values()), loaded
    # the second one prints what typer rendered the first time, without typer
    assert first.stdout.startswith("Usage: mme-rep [OPTIONS] COMMAND")
    assert again.stdout.splitlines()[:-1] == first.stdout.splitlines()[:-1]
    assert "'mmerep.cli.root'" not in again.stdout.splitlines()[-1]
