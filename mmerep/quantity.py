"""Sizes and CPU as users write them: Kubernetes quantities, the product's one reading.

``G`` is 10^9 bytes and ``Gi`` is 2^30, everywhere (profiles, ``--set``, the scaler's
``8G``, synclocal's ``--bwlimit 200M``), because the first three end up in pod specs,
where the API server reads them so. ``parse_size`` also takes a trailing ``B``
(``1.5GiB``, ``10GB``) and ``K`` for ``k``, for sizes that never reach the API server.

A small parser of the API server's grammar (apimachinery ``resource.Quantity``). The
client library has one too, but only the gateway (``mmerep.kube``) may import it, and
it accepts forms the API server refuses ("1_000", "NaN", " 1").
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from mmerep.errors import UsageError

CPU_FORMS = "use e.g. 500m, 1, 2.5"
MEMORY_FORMS = "use e.g. 512Mi, 10G, 8Gi"
SIZE_FORMS = "use e.g. 200M (10^6 bytes), 512Mi (2^20 bytes), 10G, 8Gi or 4096"

_QUANTITY = re.compile(
    r"(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<binary>[KMGTPE]i)|[eE](?P<exponent>[+-]?[0-9]{1,3})|(?P<decimal>[numkMGTPE]?))",
    re.ASCII,
)
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
# Beyond this no node has it; it also keeps "1e999" from building a huge integer.
_MAX_EXPONENT = 24


def _text(value: str | int | float) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return repr(value)
    return str(value)


def parse_quantity(value: str | int | float, field: str = "quantity",
                   forms: str = f"{CPU_FORMS}; {MEMORY_FORMS}") -> Decimal:
    """The exact value of ``value``; UsageError naming ``field`` when it is no quantity."""
    text = _text(value)
    match = _QUANTITY.fullmatch(text) if not isinstance(value, bool) else None
    if match is None:
        raise UsageError(f"{field} '{text}' is not a quantity", hint=forms)
    if match["binary"]:
        number = Decimal(match["number"]) * (1 << _BINARY[match["binary"]])
    else:
        exponent = int(match["exponent"]) if match["exponent"] else _DECIMAL[match["decimal"]]
        if abs(exponent) > _MAX_EXPONENT:
            raise UsageError(f"{field} '{text}' is out of range", hint=forms)
        number = Decimal(match["number"]).scaleb(exponent)
    if match["sign"] == "-" and number != 0:
        raise UsageError(f"{field} '{text}' is negative", hint=forms)
    return number


def parse_cpu(value: str | int | float, field: str = "cpu") -> float:
    """CPU cores: "500m" -> 0.5, "2" -> 2.0, "1.5" -> 1.5."""
    text = _text(value)
    if isinstance(value, str) and value.endswith("i") and _QUANTITY.fullmatch(value):
        # Legal for the API server (1Ki = 1024 cores) but always a mix-up with memory.
        raise UsageError(f"{field} '{text}' is a memory size, not CPU cores",
                         hint=CPU_FORMS)
    return float(parse_quantity(value, field, CPU_FORMS))


def parse_memory(value: str | int | float, field: str = "memory") -> int:
    """Bytes, rounded up like the API server does: "512Mi", "10G", "1e9"."""
    text = _text(value)
    match = _QUANTITY.fullmatch(text) if isinstance(value, str) else None
    if match is not None and match["decimal"] in ("m", "u", "n"):
        # "512m" is 0.512 bytes: the API server takes it, the pod then never starts.
        amount = match["number"]
        raise UsageError(f"{field} '{text}' is {parse_quantity(text, field):f} bytes",
                         hint=f"did you mean {amount}Mi or {amount}M?")
    return math.ceil(parse_quantity(value, field, MEMORY_FORMS))


def parse_size(value: str | int, field: str = "size") -> int:
    """Bytes from a size: a memory quantity ("200M" = 200*10^6, "8Gi" = 8*2^30, "4096"),
    also with a trailing B ("1.5GiB", "10GB") or an upper-case K ("512K" = 512*10^3)."""
    text = str(value).strip()
    unit = re.fullmatch(r"(.*?[0-9.])([KkMGTPE]i?)?B", text)
    if unit:  # "GiB" -> "Gi", "GB" -> "G", "B" alone -> bytes
        text = unit[1] + (unit[2] or "")
    if text.endswith("K"):
        text = text[:-1] + "k"
    try:
        return parse_memory(text, field)
    except UsageError as exc:
        if exc.hint == MEMORY_FORMS:
            raise UsageError(f"{field} '{value}' is not a size", hint=SIZE_FORMS) from None
        raise


def format_cpu(cores: float) -> str:
    """The canonical CPU form: 2.0 -> "2", 0.5 -> "500m", 1.25 -> "1250m"."""
    milli = math.ceil(round(cores * 1000, 6))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def format_memory(size: int) -> str:
    """The shortest exact form: 8589934592 -> "8Gi", 10**10 -> "10G", 1500 -> "1500"."""
    units = [(1 << bits, suffix) for suffix, bits in _BINARY.items()]
    units += [(10 ** exp, suffix) for suffix, exp in _DECIMAL.items() if exp > 0]
    exact = [(unit, suffix) for unit, suffix in units if size and size % unit == 0]
    if not exact:
        return str(size)
    unit, suffix = max(exact)
    return f"{size // unit}{suffix}"
