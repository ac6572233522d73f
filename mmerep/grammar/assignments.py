"""``KEY=VALUE`` options (``--set``, ``--var``, ``--node-selector``), repeated."""

from __future__ import annotations

from mmerep.errors import UsageError


def parse_assignments(items: list[str], option: str, example: str) -> dict[str, str]:
    """``["a=b", "c=d"]`` -> ``{"a": "b", "c": "d"}``; a later KEY wins. The value may
    hold "=" and may be empty; the key may not.

    ``example`` is a valid item, shown in the error's hint (``--set executors=4``).
    """
    result = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"{option} '{item}' is not KEY=VALUE",
                             hint=f"e.g. {option} {example}")
        result[key.strip()] = value
    return result
