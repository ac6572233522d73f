"""The read commands' fast path (no typer): its option tables agree with the typer
commands', it runs only plain arguments, and it answers as the typer commands do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from mmerep.cli import group_app
from mmerep.cli.fast import FLAG, SPECS, Spec, parse, run_fast
from mmerep.cli.formats import OutputFormat


def _command(path: tuple[str, ...]) -> typer.core.TyperCommand:
    group = typer.main.get_command(group_app(path[0]))
    if len(path) == 1:
        return group  # the scaler is one command
    return group.commands[path[1]]  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: " ".join(s.path))
def test_option_tables_agree_with_the_typer_commands(spec: Spec) -> None:
    by_spelling = {o: p for p in _command(spec.path).params for o in p.opts + p.secondary_opts}
    names: dict[str, str] = {}  # ours -> typer's: one parameter each
    for spelling, (name, kind) in spec.options.items():
        param = by_spelling[spelling]
        assert names.setdefault(name, str(param.name)) == param.name, spelling
        assert getattr(param, "is_flag", False) == (kind == FLAG), spelling
        assert param.default == spec.defaults[name], name
        assert getattr(param, "envvar", None) == spec.envvars.get(name), name


@pytest.mark.parametrize("argv, expected", [
    (["-F", "dev"], {"profile_name": "dev"}),
    (["-Fdev", "-ojson"], {"profile_name": "dev", "output": OutputFormat.json}),
    (["--profile=dev", "--output", "yaml", "-A"], {"profile_name": "dev", "all_namespaces": True,
                                                  "output": OutputFormat.yaml}),
])
def test_plain_arguments_are_parsed(argv: list[str], expected: dict[str, object]) -> None:
    parsed = parse(SPECS[0], argv)
    assert parsed is not None
    values, args = parsed
    assert args == []
    assert {k: values[k] for k in expected} == expected


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--nope"], ["-F"], ["-o", "xml"],
                                  ["-A=1"], ["--", "x"]])
def test_anything_else_is_left_to_typer(argv: list[str]) -> None:
    assert parse(SPECS[0], argv) is None


@pytest.mark.parametrize("argv", [
    ["scaler", "-F", "x", "sentinel3", "scale", "3"], ["scaler", "--env", "s3", "daemon", "on"],
    ["scaler", "-F", "x"], ["scaler", "s3", "--pool-timeout", "0.1"], ["env", "status"],
    ["env", "list", "extra"], ["provisioner", "install"], ["env", "deploy", "a", "b"]])
def test_other_verbs_and_bad_shapes_are_left_to_typer(argv: list[str]) -> None:
    assert run_fast(argv) is False  # returned before connecting anywhere


def test_provisioner_names_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMEREP_PROVISIONER_NAME", "x.example.org")
    spec = next(s for s in SPECS if s.path == ("provisioner", "status"))
    parsed = parse(spec, [])
    assert parsed is not None and parsed[0]["name"] == "x.example.org"


def test_an_error_is_one_line_without_typer(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("profiles: {}\n")
    code = ("import sys\nfrom mmerep.cli import main\n"
            f"sys.argv = ['mme-rep', 'env', 'list', '-F', 'nope', '--profiles', '{profiles}']\n"
            "try:\n    main()\nexcept SystemExit as e:\n"
            "    print('typer' in sys.modules, e.code)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "False 2"
    assert out.stderr.startswith("error: unknown profile 'nope'")
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("registered", [False, True])
def test_a_read_command_ends_with_its_output_flushed_and_exit_handlers_honoured(
        registered: bool) -> None:
    code = ("import atexit, sys\nfrom mmerep.cli.fast import leave\n"
            + ("atexit.register(print, 'at exit')\n" if registered else "")
            + "print('the table')\nleave()\nprint('after leave')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    # Buffered output is flushed before the process ends; with an exit handler registered
    # the usual exit runs (the handler too), so nothing is skipped that asked to run.
    assert out.stdout.splitlines() == (["the table", "after leave", "at exit"] if registered
                                       else ["the table"])
