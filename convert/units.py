"""Sizes and counts for people: one spelling everywhere (CLI tables, plans, cards, the chat).

Binary units (KiB, MiB …) because that is what file managers and `ls -h` show for files;
parameter counts in decimal (270M, 1.5B) because that is how models are named.
"""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """1536 → '1.5 KiB'; bytes below 1 KiB are shown whole ('512 B')."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def human_count(n: int) -> str:
    """268_098_176 → '268.1M'; 1_000_000_000 → '1B'."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}".replace(".0", "")
    return str(n)
