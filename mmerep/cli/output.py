"""The one shared console and the renderers every read command uses.

rich is imported when something is drawn with it: read commands whose output is not a
terminal print their tables without it (``mmerep.cli.plain``), and ``-o json`` never
needs it. ``console`` and ``err_console`` are made on first use.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mmerep.cli.formats import OutputFormat
from mmerep.cli.plain import Table, plain_text

if TYPE_CHECKING:
    from rich.console import Console

    console: Console
    err_console: Console


def __getattr__(name: str) -> Any:
    if name in ("console", "err_console"):  # made once, then an ordinary module attribute
        from rich.console import Console

        made = globals()[name] = Console(stderr=name == "err_console", highlight=False)
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _console() -> Console:
    con: Console = globals().get("console") or __getattr__("console")
    return con


def _err_console() -> Console:
    con: Console = globals().get("err_console") or __getattr__("err_console")
    return con


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A table: drawn by rich (it is a rich renderable), or without it by ``render``."""
    return Table(title, columns, rows)


def render(data: Any, output: OutputFormat, as_table: Callable[[Any], Any]) -> None:
    """Print ``data`` as JSON or YAML (machine-readable), or as the rich table it builds."""
    if output is OutputFormat.json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif output is OutputFormat.yaml:
        import yaml

        print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), end="")
    else:
        shown = as_table(data)
        text = plain_text(shown)
        if text is None:
            _console().print(shown)
        else:
            print(text, end="")


def age(seconds: int | None) -> str:
    """A duration as operators read it: 45s, 12m, 3h, 9d; "-" when unknown."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def fail(message: str, hint: str | None = None) -> None:
    from rich.markup import escape  # a hint such as "[status|scale N]" is not markup

    _err_console().print(f"[bold red]error:[/] {escape(message)}"
                         + (f" [dim]({escape(hint)})[/]" if hint else ""), soft_wrap=True)


class Spinner:
    """Long work with no measurable progress: a live spinner on a terminal, else a line
    every ``every`` s. (``LiveWorkloads`` shows workloads' pods; synclocal a byte bar.)"""

    def __init__(self, label: str, every: float = 15.0) -> None:
        self.label = label
        self.every = every
        self._status: Any = None
        self._last = 0.0

    def __enter__(self) -> Spinner:
        if _err_console().is_terminal:
            self._status = _err_console().status(self.label)
            self._status.__enter__()
        else:
            _err_console().print(f"{self.label}...")
        return self

    def __call__(self, message: str) -> None:
        import time

        if self._status is not None:
            self._status.update(message)
        elif time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            _err_console().print(f"  {message}", soft_wrap=True)

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)


def _state(status: Any) -> str:
    """ready (serving), started (running, its service not answering yet) or waiting."""
    if status.ready:
        return "ready"
    started = getattr(status, "started", None)
    if started and started > status.ready_pods:
        return f"started {started}/{status.desired}"
    return "waiting"


class LiveWorkloads:
    """A live table of workloads (desired/ready pods) while a rollout runs. With
    ``prefix`` (an environment's ``<name>-``) workloads are shown by their role."""

    def __init__(self, label: str, prefix: str = "") -> None:
        self.label = label
        self.prefix = prefix
        self._live: Any = None
        self._last: str = ""

    def __enter__(self) -> LiveWorkloads:
        _err_console().print(f"{self.label}...", soft_wrap=True)
        if _err_console().is_terminal:
            from rich.live import Live

            self._live = Live(console=_err_console(), refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def update(self, statuses: list[Any]) -> None:
        rows = [(_state(s), self._shown(s.kind, s.name),
                 f"{s.ready_pods}/{s.desired}", getattr(s, "note", "")) for s in statuses]
        if self._live is not None:
            self._live.update(table(None, ["state", "workload", "pods serving", "latest event"],
                                    rows))
            return
        summary = ", ".join(f"{w} {p}" + (f" {st}" if st.startswith("started") else "")
                            + (f" ({n})" if n else "") for st, w, p, n in rows)
        if summary != self._last:  # without a terminal, print only changes
            self._last = summary
            _err_console().print(f"  {summary}", soft_wrap=True)

    def _shown(self, kind: str, name: str) -> str:
        if self.prefix and name.startswith(self.prefix):
            return name[len(self.prefix):]
        return f"{kind}/{name}"

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
