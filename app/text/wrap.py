"""Line wrapping at word boundaries for every script, installed into Rich and Textual.

Rich and Textual wrap at spaces only and fold long "words" code point by code point. A Thai,
Lao, Khmer or Burmese sentence has no spaces, so it is one long word folded at arbitrary
code points: words are cut in half and marks can land at the start of a line. Here lines break
at ICU's dictionary word boundaries (see segment.py), and a word wider than the line is folded
between grapheme clusters.

Like width.py, these patch private names of Rich and Textual, checked when the module is
imported (see `width.require_attributes`).
"""

from __future__ import annotations

import rich._wrap
import rich.text
import textual._wrap
import textual.content
from rich.cells import cell_len
from textual.document import _wrapped_document

from seachat.app.text import width as _width
from seachat.app.text.segment import grapheme_boundaries, line_break_opportunities

# What install() replaces and the originals the replacements fall back to.
PATCH_TARGETS: tuple[tuple[object, tuple[str, ...]], ...] = (
    (rich._wrap, ("divide_line",)),
    (rich.text, ("divide_line",)),
    (textual.content, ("divide_line",)),
    (textual._wrap, ("compute_wrap_offsets",)),
    (_wrapped_document, ("compute_wrap_offsets",)),
)
for _module, _names in PATCH_TARGETS:
    _width.require_attributes(_module, _names)

_installed = False


def divide_line(text: str, width: int, fold: bool = True) -> list[int]:
    """Code point offsets at which to start new lines so each line fits in `width` cells.

    Same contract as rich._wrap.divide_line: trailing spaces may hang past the edge.
    """
    if text.isascii():
        return rich._wrap.divide_line(text, width, fold)
    width = max(width, 1)
    breaks: list[int] = []
    line_start = 0
    line_cells = 0
    prev = 0
    for end in line_break_opportunities(text):
        piece = text[prev:end]
        piece_cells = cell_len(piece.rstrip())
        if line_cells + piece_cells <= width:
            line_cells += cell_len(piece)
            prev = end
            continue
        if prev > line_start:  # start the piece on a new line
            breaks.append(prev)
            line_start = prev
            line_cells = 0
        if piece_cells <= width:
            line_cells = cell_len(piece)
        elif fold:
            line_cells = _fold(text, prev, end, width, breaks)
            line_start = breaks[-1] if breaks else 0
        else:
            line_cells = cell_len(piece)
        prev = end
    return breaks


def _fold(text: str, start: int, end: int, width: int, breaks: list[int]) -> int:
    """Fold text[start:end] between grapheme clusters; returns cells used on the last line."""
    piece = text[start:end]
    used = 0
    bounds = grapheme_boundaries(piece)
    for a, b in zip(bounds, bounds[1:], strict=False):
        cluster = piece[a:b]
        w = cell_len(cluster)
        if used + w > width and used > 0 and not cluster.isspace():
            breaks.append(start + a)
            used = 0
        used += w
    return used


def _compute_wrap_offsets(
    text: str, width: int, tab_size: int, fold: bool = True, precomputed_tab_sections=None
) -> list[int]:  # noqa: E501
    if "\t" in text or text.isascii():
        return textual._wrap.compute_wrap_offsets(
            text, width, tab_size, fold, precomputed_tab_sections
        )
    return divide_line(text, width, fold)


def install() -> None:
    """Install terminal widths and script-aware wrapping into Rich and Textual. Idempotent."""
    global _installed
    if _installed:
        return
    _width.install()
    rich.text.divide_line = divide_line  # type: ignore[assignment]
    textual.content.divide_line = divide_line  # type: ignore[assignment]
    _wrapped_document.compute_wrap_offsets = _compute_wrap_offsets  # type: ignore[assignment]
    _installed = True
