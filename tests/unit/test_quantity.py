"""Resource quantities as a profile author writes them, and the messages for wrong ones."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mmerep.errors import UsageError
from mmerep.quantity import (
    format_cpu,
    format_memory,
    parse_cpu,
    parse_memory,
    parse_quantity,
    parse_size,
)


@pytest.mark.parametrize(("text", "cores"), [
    ("500m", 0.5), ("2", 2.0), ("1.5", 1.5), (".5", 0.5), ("1.", 1.0), ("+1", 1.0),
    ("250m", 0.25), ("1e3", 1000.0), ("0", 0.0), (2, 2.0), (1.5, 1.5),
])
def test_cpu_forms(text: str | int | float, cores: float) -> None:
    assert parse_cpu(text) == cores


@pytest.mark.parametrize(("text", "size"), [
    ("10G", 10 * 1000**3), ("8Gi", 8 * 1024**3), ("512Mi", 512 * 1024**2),
    ("1e9", 10**9), ("1E9", 10**9), ("128974848", 128974848), ("129M", 129 * 10**6),
    ("123Mi", 123 * 2**20), ("1.5Gi", 3 * 2**29), ("1k", 1000), ("1Ki", 1024),
    ("2Ti", 2 * 2**40), ("1E", 10**18), ("0.5", 1), (1024, 1024),
])
def test_memory_forms(text: str | int, size: int) -> None:
    assert parse_memory(text) == size


def test_parse_quantity_is_exact() -> None:
    assert parse_quantity("100m") == Decimal("0.1")
    assert parse_quantity("3Mi") == 3 * 2**20


@pytest.mark.parametrize("bad", ["10X", "", " 1", "1 ", "1_000", "NaN", "inf", "1e", "ten",
                                 "1GiB", "1gi", "1.2.3", "0x10", "1ki", "--1"])
def test_not_a_quantity_names_field_value_and_forms(bad: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_memory(bad, "requests.memory")
    assert str(exc.value) == (f"requests.memory '{bad}' is not a quantity "
                              "(use e.g. 512Mi, 10G, 8Gi)")


def test_bad_cpu_suggests_cpu_forms() -> None:
    with pytest.raises(UsageError, match=r"max_cpu 'two' is not a quantity \(use e\.g\. 500m"):
        parse_cpu("two", "max_cpu")


@pytest.mark.parametrize("bad", [True, None, [1], {"a": 1}])
def test_non_scalars_are_rejected(bad: object) -> None:
    with pytest.raises(UsageError, match="is not a quantity"):
        parse_cpu(bad)  # type: ignore[arg-type]


def test_negative_is_rejected() -> None:
    with pytest.raises(UsageError, match=r"cpu '-1' is negative"):
        parse_cpu("-1")
    assert parse_cpu("-0") == 0


def test_huge_exponent_is_out_of_range_not_a_hang() -> None:
    with pytest.raises(UsageError, match="out of range"):
        parse_memory("1e999")


def test_memory_in_millibytes_is_a_mixup() -> None:
    with pytest.raises(UsageError) as exc:
        parse_memory("512m", "limits.memory")
    assert str(exc.value) == ("limits.memory '512m' is 0.512 bytes "
                              "(did you mean 512Mi or 512M?)")


def test_cpu_with_binary_suffix_is_a_mixup() -> None:
    with pytest.raises(UsageError, match=r"cpu '2Gi' is a memory size, not CPU cores"):
        parse_cpu("2Gi", "requests.cpu")


@pytest.mark.parametrize(("cores", "text"), [
    (2.0, "2"), (0.5, "500m"), (1.25, "1250m"), (0.0001, "1m"), (0, "0"), (16, "16"),
])
def test_format_cpu(cores: float, text: str) -> None:
    assert format_cpu(cores) == text
    assert parse_cpu(text) == pytest.approx(max(cores, 0.001) if cores else 0)


@pytest.mark.parametrize(("size", "text"), [
    (8 * 2**30, "8Gi"), (10**10, "10G"), (1500, "1500"), (0, "0"), (512 * 2**20, "512Mi"),
    (1000 * 1024, "1000Ki"), (3 * 2**29, "1536Mi"),
])
def test_format_memory_round_trips(size: int, text: str) -> None:
    assert format_memory(size) == text
    assert parse_memory(text) == size


@pytest.mark.parametrize(("text", "size"), [
    ("4096", 4096), ("512K", 512_000), ("64k", 64_000), ("200M", 200_000_000),
    ("1.5Mi", 1_572_864), ("2GiB", 2 << 30), ("10GB", 10**10), ("8Gi", 8 << 30),
    ("2T", 2 * 10**12), ("100B", 100),
])
def test_one_size_reading_powers_of_ten_without_i_powers_of_two_with_it(text: str,
                                                                        size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "message"), [
    ("lots", "--bwlimit 'lots' is not a size"),
    ("1g", "--bwlimit '1g' is not a size"),
    ("64m", "--bwlimit '64m' is 0.064 bytes"),
])
def test_a_bad_size_names_the_option_and_the_forms(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_size(text, "--bwlimit")
    assert str(caught.value).startswith(message)
