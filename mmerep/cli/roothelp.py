"""``mme-rep --help`` from a cache: typer renders it once (its import alone is ~60 ms, four
times a Python start), and later runs print the same text. The entry's first line names
everything the text depends on: this version, the modules that define the root command
and its groups, typer's own files, and the width click wraps it to. The path that reads
the cache imports nothing beyond what Python starts with."""

from __future__ import annotations

import os
import sys


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns, as click asks it (without importing shutil)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def _typer_file() -> str | None:
    for entry in sys.path:
        candidate = os.path.join(entry or ".", "typer", "__init__.py")
        if os.path.isfile(candidate):
            return candidate
    return None


def _key() -> str | None:
    from mmerep import __version__

    here = os.path.dirname(os.path.abspath(__file__))
    typer_file = _typer_file()
    if typer_file is None:
        return None
    width = max(min(_terminal_columns(), 80) - 2, 50)  # click's HelpFormatter width
    parts = [__version__, sys.version, str(width)]
    for f in (os.path.join(here, "__init__.py"), os.path.join(here, "root.py"), typer_file):
        try:
            st = os.stat(f)
        except OSError:
            return None
        parts.append(f"{f}:{st.st_mtime_ns}:{st.st_size}")
    return " ".join(parts).replace("\n", " ")


def print_root_help(argv: list[str]) -> bool:
    """Print the root help for ``--help``/``-h`` alone (from the cache when it can);
    False for any other arguments."""
    if argv not in (["--help"], ["-h"]):
        return False
    import zlib

    from mmerep.paths import cache_dir

    key = _key()
    path = None
    if key is not None:
        path = cache_dir() / "help" / f"{zlib.crc32(key.encode()):08x}.txt"
        try:
            first, _, text = path.read_text().partition("\n")
        except OSError:
            first, text = "", ""
        if first == key and text:
            sys.stdout.write(text)
            return True
    return _render_and_keep(path, key)


def _render_and_keep(path: object, key: str | None) -> bool:
    import contextlib
    import io
    from pathlib import Path

    from mmerep.cli.root import app

    out = io.StringIO()
    code: object = 0
    with contextlib.redirect_stdout(out):
        try:
            app(["--help"], prog_name="mme-rep")
        except SystemExit as exc:
            code = exc.code
    text = out.getvalue()
    sys.stdout.write(text)
    if isinstance(path, Path) and key and code in (0, None) and text:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(f"{key}\n{text}")
            os.replace(tmp, path)
    if code not in (0, None):
        sys.exit(code)  # type: ignore[arg-type]
    return True
