"""Kubernetes resource quantities ("500m", "2", "1.5", "10G", "8Gi", "1e9"): parse and format.

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
