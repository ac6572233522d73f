"""The fast path (no typer) of the read commands and `synclocal stage`: its option tables
agree with the typer commands', it runs only plain arguments, and it answers as the typer
commands do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from mmerep.cli import group_app
from mmerep.cli.fast import FLAG, JOBS_RANGE, OFF, SPECS, Spec, parse, run_fast
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
        assert getattr(param, "is_flag", False) == (kind in (FLAG, OFF)), spelling
        assert (spelling in param.secondary_opts) == (kind == OFF), spelling
        if isinstance(param.type, typer._click.types.IntRange):  # type: ignore[attr-defined]
            assert (param.type.min, param.type.max) == JOBS_RANGE, spelling
            assert kind(str(JOBS_RANGE[1])) == JOBS_RANGE[1]
            for outside in (JOBS_RANGE[0] - 1, JOBS_RANGE[1] + 1):
                with pytest.raises(ValueError):
                    kind(str(outside))
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


STAGE = next(s for s in SPECS if s.path == ("synclocal", "stage"))


def test_stage_arguments_are_parsed() -> None:
    parsed = parse(STAGE, ["/bulk/a", "--to=/ssd", "-j4", "--no-verify", "/bulk/b", "-d", "x",
                           "--bwlimit", "200M"])
    assert parsed is not None
    values, args = parsed
    assert args == ["/bulk/a", "/bulk/b"]
    assert values == {"to": Path("/ssd"), "dataset": "x", "jobs": 4, "verify": False,
                      "recheck": False, "bwlimit": "200M"}
    assert parse(STAGE, ["a", "--to", "b", "--no-verify", "--verify"])[0]["verify"] is True  # type: ignore[index]


@pytest.mark.parametrize("argv", [
    ["synclocal", "stage", "/bulk/a"], ["synclocal", "stage", "--to", "/ssd"],
    ["synclocal", "stage", "/bulk/a", "--to", "/ssd", "-j", "0"],
    ["synclocal", "stage", "/bulk/a", "--to", "/ssd", "--jobs", "many"],
    ["synclocal", "stage", "/bulk/a", "--to"], ["synclocal", "stage", "--help"],
    ["synclocal", "stage", "/bulk/a", "--to", "/ssd", "--verify=no"],
    ["synclocal", "status", "--root", "/ssd"]])
def test_stage_leaves_what_typer_reports_to_typer(argv: list[str]) -> None:
    assert run_fast(argv) is False  # nothing was staged: /bulk/a does not exist


def test_stage_runs_without_typer_or_rich(tmp_path: Path) -> None:
    src = tmp_path / "olci"
    src.mkdir()
    (src / "a.nc").write_bytes(b"x" * 1000)
    # At exit (main() ends the process itself after a fast command).
    code = ("import atexit, sys\nfrom mmerep.cli import main\n"
            f"sys.argv = ['mme-rep', 'synclocal', 'stage', '{src}', '--to', '{tmp_path}/ssd']\n"
            "atexit.register(lambda: print(sorted(m for m in ('typer', 'rich')"
            " if m in sys.modules)))\nmain()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "complete olci: 1 copied (1000 B), 0 already staged, 0 removed in "
        + out.stdout.split(" removed in ")[1].split("\n")[0], "[]"]
    assert (tmp_path / "ssd" / "olci" / "a.nc").read_bytes() == b"x" * 1000
    a_file = subprocess.run([sys.executable, "-c", code.replace(f"'{src}'", f"'{src}/a.nc'")],
                            capture_output=True, text=True, timeout=60)
    assert a_file.returncode == 2
    assert a_file.stderr.startswith(f"error: {src}/a.nc is not a directory (name the dataset")
    assert len(a_file.stderr.splitlines()) == 1


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
