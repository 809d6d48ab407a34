"""Docker's size and cpu strings mean the same here as they do for `docker run`."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.kernel.units import parse_cpus, parse_size

K, M, G = 1 << 10, 1 << 20, 1 << 30


@pytest.mark.parametrize(("text", "expected"), [
    ("100", 100), ("100b", 100), ("100B", 100),
    ("512k", 512 * K), ("512K", 512 * K), ("512kb", 512 * K), ("512KiB", 512 * K),
    ("64m", 64 * M), ("64M", 64 * M), ("64mb", 64 * M), ("64 m", 64 * M),
    ("1g", G), ("1.5g", 3 * G // 2), ("2t", 2 << 40), ("1p", 1 << 50),
    ("0.5k", 512), ("0.1k", 102),  # fractions truncate to whole bytes, like docker
    (" 64m\n", 64 * M),
])
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", [
    "", "m", "-1", "-64m", "1x", "64mm", "1.2.3g", "1,5g", "0x10", "1e3", "64  m", ".5g",
    "5g6",
])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(text)
    message = str(info.value)
    assert repr(text) in message and "\n" not in message


@given(st.integers(min_value=0, max_value=1 << 40),
       st.sampled_from([("", 1), ("b", 1), ("k", K), ("m", M), ("g", G)]))
def test_parse_size_is_exact_for_integers(n: int, unit: tuple[str, int]) -> None:
    suffix, multiplier = unit
    assert parse_size(f"{n}{suffix}") == n * multiplier
    assert parse_size(f"{n}{suffix.upper()}") == n * multiplier


@pytest.mark.parametrize(("text", "expected"), [
    ("0.5", 0.5), ("2", 2.0), ("0.01", 0.01), ("4", 4.0), (" 1.25 ", 1.25),
])
def test_parse_cpus(text: str, expected: float) -> None:
    assert parse_cpus(text, max_cpus=4) == expected


@pytest.mark.parametrize("text", ["", "abc", "0", "-1", "0.001", "4.5", "nan", "inf", "1/2"])
def test_parse_cpus_rejects(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_cpus(text, max_cpus=4)
    assert repr(text) in str(info.value) and "\n" not in str(info.value)


def test_parse_cpus_defaults_to_this_hosts_cpu_count() -> None:
    cpus = os.cpu_count() or 1
    assert parse_cpus(str(cpus)) == cpus
    with pytest.raises(ValueError, match=f"as there are {cpus} CPUs"):
        parse_cpus(str(cpus + 1))
