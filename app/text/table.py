"""Plain-text tables whose columns line up for Thai, Khmer, Lao, Burmese, Arabic and CJK.

`len()` counts code points, but a Khmer cluster with a subscript consonant is one cell on
screen, a Khmer vowel sign that Rich counts as zero cells takes one in the terminal, and a CJK
character two. Widths and clipping go through rich's cell functions with the chat UI's
terminal-width correction installed (seachat.app.text.width), so a clipped name never ends in
half a cluster and the columns after it line up on screen.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len, set_cell_size

from seachat.app.text.width import install as _install_terminal_widths

_install_terminal_widths()


def clip(text: str, width: int) -> str:
    """At most `width` cells; clipped text ends with '…' on a grapheme boundary."""
    if cell_len(text) <= width:
        return text
    return set_cell_size(text, width - 1).rstrip() + "…"


def pad(text: str, width: int, right: bool = False) -> str:
    gap = " " * max(0, width - cell_len(text))
    return gap + text if right else text + gap


def render(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    max_widths: Sequence[int | None] | None = None,
    right: Sequence[bool] | None = None,
    indent: str = "",
) -> str:
    """Columns separated by two spaces, no trailing spaces."""
    n = len(headers)
    limits = list(max_widths or [None] * n)
    align = list(right or [False] * n)
    clipped = [[clip(c, limits[i]) if limits[i] else c for i, c in enumerate(r)] for r in rows]
    widths = [max([cell_len(headers[i])] + [cell_len(r[i]) for r in clipped]) for i in range(n)]
    lines = []
    for row in [list(headers), *clipped]:
        cells = [pad(c, widths[i], align[i]) for i, c in enumerate(row)]
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)
