"""Sizes as docker prints them (`5.2MB`, `1.23GB`): decimal units, three significant digits.

Pure, and here rather than in one adapter because two print it: the CLI's tables (images,
history, stats) and viz's pictures of layers.
"""

from __future__ import annotations


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g}{unit}" if unit != "B" else f"{n}B"
        n /= 1000  # type: ignore[assignment]
    return f"{n:.3g}TB"
