"""Terminal cell widths that match what terminals draw.

Rich's width tables (from the wcwidth project) give spacing combining marks (Unicode
category Mc) zero cells. Terminals that follow the C library's wcwidth (glibc, tmux, VTE,
xterm, most others) give them one cell, so Khmer ``ថ្ងៃ`` or Burmese ``ကျွန်တော်`` takes more
columns on screen than Rich planned for: borders are pushed right and lines overflow.

`install()` gives every Mc code point its terminal width (1, or 2 when East Asian Wide) in
Rich's table, and makes Rich split text into grapheme clusters rather than code points when it
crops or folds, so a spacing mark is never separated from its base.

These are patches of Rich's internals, and Rich has no upper version bound: the module checks
when it is imported that everything it replaces or calls still exists, so a Rich that renamed
one fails at once with its name rather than later with wrong widths or an AttributeError.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from importlib import metadata

import rich._unicode_data
import rich.cells

from seachat.app.text.segment import grapheme_boundaries


def require_attributes(module: object, names: Iterable[str]) -> None:
    """Raise ImportError naming the first of `names` (dotted: `f.cache_clear`) that `module`
    lacks. The patches depend on private names that a new Rich or Textual may drop."""
    module_name = getattr(module, "__name__", type(module).__name__)
    for name in names:
        target = module
        for part in name.split("."):
            if not hasattr(target, part):
                raise ImportError(_missing_message(module_name, name))
            target = getattr(target, part)


def _missing_message(module_name: str, name: str) -> str:
    distribution = module_name.split(".")[0]
    try:
        installed = f"{distribution} {metadata.version(distribution)}"
    except (metadata.PackageNotFoundError, ValueError):
        installed = distribution
    return (
        f"{module_name}.{name} does not exist in the installed {installed}; seachat's script-aware "
        f"widths and wrapping patch or call it. Install a version of {distribution} that seachat supports."
    )


# What install() replaces and what the replacements call, checked below.
PATCH_TARGETS: tuple[tuple[object, tuple[str, ...]], ...] = (
    (rich._unicode_data, ("load",)),
    (
        rich.cells,
        (
            "CellTable",
            "cell_len",
            "load_cell_table",
            "split_graphemes",
            "get_character_cell_size.cache_clear",
            "cached_cell_len.cache_clear",
        ),
    ),
)
for _module, _names in PATCH_TARGETS:
    require_attributes(_module, _names)

_installed = False


def terminal_width_of_mark(char: str) -> int:
    """Width a wcwidth-following terminal gives a spacing combining mark."""
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _spacing_marks(lo: int, hi: int) -> list[int]:
    return [cp for cp in range(lo, hi + 1) if unicodedata.category(chr(cp)) == "Mc"]


@lru_cache(maxsize=8)
def corrected_table(unicode_version: str = "auto") -> rich.cells.CellTable:
    """Rich's cell table for `unicode_version` with spacing marks given their terminal width."""
    base = rich._unicode_data.load(unicode_version)
    widths: list[tuple[int, int, int]] = []
    for lo, hi, width in base.widths:
        marks = _spacing_marks(lo, hi) if width == 0 else []
        if not marks:
            widths.append((lo, hi, width))
            continue
        start = lo
        for cp in marks:
            if cp > start:
                widths.append((start, cp - 1, 0))
            widths.append((cp, cp, terminal_width_of_mark(chr(cp))))
            start = cp + 1
        if start <= hi:
            widths.append((start, hi, 0))
    return rich.cells.CellTable(base.unicode_version, widths, base.narrow_to_wide)


def _cluster_spans(
    text: str, unicode_version: str = "auto"
) -> tuple[list[tuple[int, int, int]], int]:
    """Rich's split_graphemes, with spans that are real grapheme clusters."""
    bounds = grapheme_boundaries(text)
    spans: list[tuple[int, int, int]] = []
    total = 0
    cell_len = rich.cells.cell_len
    for start, end in zip(bounds, bounds[1:], strict=False):
        width = cell_len(text[start:end], unicode_version)
        spans.append((start, end, width))
        total += width
    return spans, total


def install() -> None:
    """Make Rich (and so Textual) measure text as terminals draw it. Idempotent."""
    global _installed
    if _installed:
        return
    rich.cells.load_cell_table = corrected_table  # type: ignore[assignment]
    rich.cells.split_graphemes = _cluster_spans  # type: ignore[assignment]
    rich.cells.get_character_cell_size.cache_clear()
    rich.cells.cached_cell_len.cache_clear()
    _installed = True


def cell_width(text: str) -> int:
    """Columns `text` takes in a terminal (after `install()`, the same as Rich's cell_len)."""
    install()
    return rich.cells.cell_len(text)
