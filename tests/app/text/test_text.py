"""The text layer: clusters, terminal widths, word wrapping, safe streaming."""

from __future__ import annotations

import unicodedata
from types import SimpleNamespace

import pytest
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from seachat.app.text import segment, width, wrap
from seachat.app.text.stream import StreamText
from tests.app.scripts import ALL, ARABIC, BURMESE, EMOJI, KHMER, LAO, THAI
from tests.fixtures.terminal_width import glibc_width

wrap.install()


def test_clusters_keep_marks_with_their_base():
    assert segment.graphemes("สวัสดี") == ["ส", "วั", "ส", "ดี"]
    assert segment.graphemes("ខ្ញុំ") == ["ខ្ញុំ"]
    assert "ကျွ" in segment.graphemes("ကျွန်တော်")
    assert segment.graphemes("👨‍👩‍👧x") == ["👨‍👩‍👧", "x"]
    for text in ALL.values():
        for cluster in segment.graphemes(text):
            assert not unicodedata.category(cluster[0]).startswith("M"), (text, cluster)


def test_cursor_boundaries_step_over_whole_clusters():
    text = "ខ្ញុំចង់"
    assert segment.next_boundary(text, 0) == len("ខ្ញុំ")
    assert segment.previous_boundary(text, len("ខ្ញុំ")) == 0
    assert segment.snap_to_boundary(text, 2) == 0


@pytest.mark.parametrize("text", [KHMER, BURMESE, THAI, LAO, ARABIC, "ថ្ងៃ", "ကျွန်တော်", "ा"])
def test_widths_match_the_terminal(text):
    # Rich alone gives spacing marks (Mc) no cell; terminals give them one.
    assert cell_len(text) == glibc_width(text)
    assert width.cell_width(text) == glibc_width(text)


def test_width_fix_changes_what_rich_gets_wrong():
    from rich._unicode_data import load

    original = sum(w for ch in "ថ្ងៃ" for lo, hi, w in load().widths if lo <= ord(ch) <= hi)
    assert original == 0  # Rich's own table says the marks take no cell...
    assert cell_len("ថ្ងៃ") == 3  # ...the installed one counts the spacing mark ៃ


@pytest.mark.parametrize("lang", list(ALL))
@pytest.mark.parametrize("cells", [7, 13, 20, 31])
def test_wrapping_never_splits_a_cluster_and_lines_fit(lang, cells):
    text = ALL[lang]
    offsets = wrap.divide_line(text, cells)
    bounds = set(segment.grapheme_boundaries(text))
    assert all(o in bounds for o in offsets)
    lines = [text[a:b] for a, b in zip([0, *offsets], [*offsets, len(text)], strict=False)]
    assert "".join(lines) == text
    for line in lines:
        assert cell_len(line.rstrip()) <= cells, (line, cell_len(line))


def test_thai_wraps_at_words_not_anywhere():
    words = ["วันนี้", "อากาศ", "ดี", "มาก", "ผม", "อยาก", "ไป", "เที่ยว", "ทะเล"]
    text = "".join(words)
    starts = {sum(len(w) for w in words[:i]) for i in range(len(words))}
    offsets = wrap.divide_line(text, 12)
    assert offsets, "a 30-cell line must wrap at 12 cells"
    assert set(offsets) <= starts, "every break must fall between two dictionary words"


def test_rich_console_uses_the_script_aware_wrapping():
    console = Console(width=24, file=None, record=True, color_system=None)
    console.print(Text(KHMER))
    out = console.export_text()
    for line in out.splitlines():
        assert glibc_width(line.rstrip()) <= 24
        if line:
            assert not unicodedata.category(line[0]).startswith("M")


def test_english_wrapping_is_unchanged():
    from rich._wrap import divide_line as rich_divide

    text = "The quick brown fox jumps over the lazy dog " * 3
    assert wrap.divide_line(text, 17) == rich_divide(text, 17)


def test_the_installed_rich_and_textual_have_everything_the_patches_touch():
    for module, names in (*width.PATCH_TARGETS, *wrap.PATCH_TARGETS):
        width.require_attributes(module, names)


def test_a_missing_patch_target_is_named_in_the_error():
    import rich.cells

    # A Rich that dropped split_graphemes (the stand-in has everything else the check asks for).
    present = {"cell_len": rich.cells.cell_len, "load_cell_table": rich.cells.load_cell_table}
    stand_in = SimpleNamespace(__name__="rich.cells", **present)
    with pytest.raises(ImportError, match=r"rich\.cells\.split_graphemes does not exist"):
        width.require_attributes(stand_in, ["cell_len", "load_cell_table", "split_graphemes"])
    # A dotted name: the function exists but is no longer lru_cached.
    stand_in.get_character_cell_size = lambda char: 1
    with pytest.raises(ImportError, match=r"get_character_cell_size\.cache_clear"):
        width.require_attributes(stand_in, ["get_character_cell_size.cache_clear"])


@pytest.mark.parametrize("text", [*ALL.values(), EMOJI, "ខ្ញុំ" * 5, "ကျွန်တော်" * 3])
def test_stream_never_shows_replacement_or_half_clusters(text):
    data = text.encode("utf-8")
    stream = StreamText()
    shown = ""
    for i in range(len(data)):  # worst case: one byte per token (byte-fallback vocabularies)
        piece = stream.feed(data[i : i + 1])
        assert "\ufffd" not in piece
        shown += piece
        # What is on screen so far is always a prefix made of whole clusters of the text.
        assert text.startswith(shown)
        assert len(shown) in segment.grapheme_boundaries(text)
    shown += stream.finish()
    assert shown == text


def test_stream_drops_invalid_bytes_instead_of_showing_u_fffd():
    stream = StreamText()
    out = stream.feed(b"ok \xff\xfe") + stream.feed("ไทย".encode()) + stream.finish()
    assert out == "ok ไทย"


def test_stream_text_property_includes_the_held_back_tail():
    stream = StreamText()
    stream.feed("กขค".encode())
    assert stream.shown == "กข"
    assert stream.text == "กขค"


def test_flush_pacer_keeps_ui_cpu_within_budget() -> None:
    """Updates are spaced so the UI's CPU share stays under the budget, within bounds."""
    from seachat.app.tui.pacing import FlushPacer

    now = [0.0]
    pacer = FlushPacer(budget=0.02, min_interval=0.05, max_interval=0.5, clock=lambda: now[0])
    assert pacer.start() == 0.05
    now[0] += 0.0005  # a cheap update: 0.5 ms of CPU → full speed
    assert pacer.next_interval() == 0.05
    pacer.start()
    for _ in range(20):  # each update costs 4 ms of UI CPU
        now[0] += 0.004
        interval = pacer.next_interval()
    assert abs(interval - 0.004 / 0.02) < 1e-6  # 0.2 s apart: 4 ms per 200 ms = 2 %
    now[0] += 0.05  # a pathological 50 ms frame never stops text for more than 0.5 s
    assert pacer.next_interval() == 0.5
