"""Grapheme clusters and line-break opportunities.

Clusters come from the `regex` module's ``\\X`` (extended grapheme clusters, kept current with
Unicode). Line breaks come from ICU's dictionary-based line breaker (`icu4py`, which bundles
ICU4C): Thai, Lao, Khmer and Burmese have no spaces between words, so only a dictionary can
say where a word ends. Without ICU (no wheel for the platform) lines break after spaces and,
inside long runs of spaceless script, between grapheme clusters: never inside a cluster.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left, bisect_right
from functools import lru_cache

import regex

try:  # pragma: no cover - exercised by whichever branch the platform has
    from icu4py.breakers import LineBreaker as _IcuLineBreaker
except ImportError:  # pragma: no cover
    _IcuLineBreaker = None

_CLUSTER = regex.compile(r"\X")
_SPACE_RUN = regex.compile(r"\s+")


def graphemes(text: str) -> list[str]:
    """The user-perceived characters of `text`, in order."""
    bounds = grapheme_boundaries(text)
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def _is_mark(char: str) -> bool:
    return unicodedata.category(char)[0] == "M"


def _compute_boundaries(text: str) -> tuple[int, ...]:
    # Unicode leaves a few spacing vowels out of the cluster of their consonant (Burmese
    # tall AA U+102B/U+102C, some Tai Tham and Khmer-adjacent signs): a cluster would then
    # start with a mark. Readers see one syllable, so such a "cluster" joins the previous one.
    out = [0]
    for m in _CLUSTER.finditer(text):
        if len(out) > 1 and _is_mark(text[m.start()]):
            out[-1] = m.end()
        else:
            out.append(m.end())
    return tuple(out)


@lru_cache(maxsize=2048)
def _boundaries_cached(text: str) -> tuple[int, ...]:
    return _compute_boundaries(text)


def grapheme_boundaries(text: str) -> tuple[int, ...]:
    """Code point offsets where clusters start, plus len(text); always starts with 0."""
    if text.isascii() and "\r" not in text:
        return tuple(range(len(text) + 1))
    if len(text) > 4096:
        return _compute_boundaries(text)
    return _boundaries_cached(text)


def previous_boundary(text: str, index: int) -> int:
    """The cluster boundary before `index` (0 at the start)."""
    if index <= 0:
        return 0
    bounds = grapheme_boundaries(text)
    i = bisect_left(bounds, index)
    return bounds[max(i - 1, 0)]


def next_boundary(text: str, index: int) -> int:
    """The cluster boundary after `index` (len(text) at the end)."""
    if index >= len(text):
        return len(text)
    bounds = grapheme_boundaries(text)
    i = bisect_right(bounds, index)
    return bounds[min(i, len(bounds) - 1)]


def snap_to_boundary(text: str, index: int) -> int:
    """`index` moved back to the start of the cluster it falls in."""
    if index <= 0 or index >= len(text):
        return max(0, min(index, len(text)))
    bounds = grapheme_boundaries(text)
    i = bisect_right(bounds, index)
    return bounds[i - 1]


@lru_cache(maxsize=4096)
def _icu_breaks(text: str) -> tuple[int, ...]:
    assert _IcuLineBreaker is not None
    return tuple(end for _start, end in _IcuLineBreaker(text, "en").segments())


def line_break_opportunities(text: str) -> tuple[int, ...]:
    """Offsets at which a line may end (each after any trailing spaces), ending with len(text).

    Offsets are always grapheme cluster boundaries.
    """
    if not text:
        return ()
    if _IcuLineBreaker is not None:
        breaks = _icu_breaks(text)
        if text.isascii():
            return breaks
        bounds = set(grapheme_boundaries(text))
        return tuple(b for b in breaks if b in bounds)
    return _fallback_breaks(text)  # pragma: no cover


def _fallback_breaks(text: str) -> tuple[int, ...]:
    """After each run of spaces; inside spaceless complex-script runs, between clusters."""
    out: list[int] = []
    pos = 0
    for m in _SPACE_RUN.finditer(text):
        out.extend(_word_breaks(text, pos, m.start()))
        out.append(m.end())
        pos = m.end()
    out.extend(_word_breaks(text, pos, len(text)))
    out.append(len(text))
    return tuple(sorted(set(b for b in out if b > 0)))


_SPACELESS = regex.compile(r"[\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Han}\p{Hiragana}\p{Katakana}]")


def _word_breaks(text: str, start: int, end: int) -> list[int]:
    word = text[start:end]
    if not _SPACELESS.search(word):
        return []
    return [start + b for b in grapheme_boundaries(word)[1:-1]]
