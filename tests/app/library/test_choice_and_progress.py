"""Small pure pieces: reading `REPO:WHICH`, picking the file, the progress line, and tables
that stay aligned when names are Thai, Khmer, Lao, Burmese or Arabic."""

from __future__ import annotations

import io

import pytest

from seachat.app.hub.repo import Ambiguous, PullSpec, RepoGGUF, choose, parse_spec, split_parts
from seachat.app.text.progress import REDRAW, TransferProgress
from seachat.app.text.table import clip, render
from seachat.convert.errors import UserError
from tests.app.libtest import ARABIC_NAME, BURMESE_NAME, KHMER_NAME, LAO_NAME, THAI_NAME
from tests.fixtures.terminal_width import glibc_width


@pytest.mark.parametrize(
    ("text", "repo", "selector"),
    [
        ("owner/repo", "owner/repo", None),
        ("owner/repo:Q4_K_M", "owner/repo", "Q4_K_M"),
        ("hf.co/owner/repo:sea-q4", "owner/repo", "sea-q4"),
        ("https://huggingface.co/owner/repo", "owner/repo", None),
        (
            "https://huggingface.co/owner/repo/blob/main/sub/m-Q8_0.gguf",
            "owner/repo",
            "sub/m-Q8_0.gguf",
        ),
        ("owner/repo:ไทย-Q8_0.gguf", "owner/repo", "ไทย-Q8_0.gguf"),
    ],
)
def test_parse_spec(text, repo, selector):
    assert parse_spec(text) == PullSpec(repo, selector)


@pytest.mark.parametrize("bad", ["", "a b/c", "owner/repo/extra/more", "../etc"])
def test_parse_spec_rejects_non_repo_ids(bad):
    with pytest.raises(UserError, match="OWNER/NAME"):
        parse_spec(bad)


FILES = [
    RepoGGUF(name, size, None)
    for name, size in [
        ("m-Q4_K_M.gguf", 400),
        ("m-Q4_K_S.gguf", 380),
        ("m-sea-q4.gguf", 410),
        ("m-sea-q4-long.gguf", 420),
        ("m-Q8_0-00001-of-00002.gguf", 500),
        ("m-Q8_0-00002-of-00002.gguf", 500),
        (f"{KHMER_NAME}-IQ4_XS.gguf", 300),
    ]
]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("Q4_K_M", "m-Q4_K_M.gguf"),
        ("q4_k_m", "m-Q4_K_M.gguf"),
        ("sea-q4", "m-sea-q4.gguf"),  # the file *ending* in the tag wins over sea-q4-long
        ("sea-q4-long", "m-sea-q4-long.gguf"),
        ("iq4_xs", f"{KHMER_NAME}-IQ4_XS.gguf"),
        ("Q8_0", "m-Q8_0-00001-of-00002.gguf"),  # a split set is picked by its first part
        ("m-Q4_K_S.gguf", "m-Q4_K_S.gguf"),
    ],
)
def test_choose(selector, expected):
    assert choose(PullSpec("o/r", selector), FILES, FILES).filename == expected


def test_choose_refuses_to_guess():
    with pytest.raises(Ambiguous) as info:
        choose(PullSpec("o/r", "Q4_K"), FILES, FILES)
    assert {c.filename for c in info.value.choices} == {"m-Q4_K_M.gguf", "m-Q4_K_S.gguf"}
    with pytest.raises(Ambiguous, match="no GGUF file matches"):
        choose(PullSpec("o/r", "Q2_K"), FILES, FILES)
    with pytest.raises(Ambiguous, match="pick one"):
        choose(PullSpec("o/r", None), FILES, FILES)


def test_split_parts_are_downloaded_together():
    first = FILES[4]
    assert [p.filename for p in split_parts(first, FILES)] == [
        "m-Q8_0-00001-of-00002.gguf",
        "m-Q8_0-00002-of-00002.gguf",
    ]


def test_progress_line_has_bytes_rate_and_eta():
    now = [0.0]
    out = io.StringIO()
    bar = TransferProgress(
        f"{THAI_NAME}.gguf",
        100 << 20,
        initial=40 << 20,
        stream=out,
        is_tty=False,
        clock=lambda: now[0],
    )
    for _ in range(10):
        now[0] += 1.0
        bar.update(1 << 20)  # 1 MiB/s, whatever was there before this run
    line = bar.line()
    assert "50.0 MiB / 100.0 MiB (50%)" in line
    assert "1.0 MiB/s" in line  # the resumed 40 MiB do not inflate the rate
    assert "ETA 50s" in line
    bar.close()
    assert out.getvalue().count("\n") >= 2  # off a terminal: plain lines, no \r


def test_progress_redraws_one_line_on_a_terminal():
    now = [0.0]
    out = io.StringIO()
    bar = TransferProgress("m.gguf", 10 << 20, stream=out, is_tty=True, clock=lambda: now[0])
    for _ in range(5):
        now[0] += 0.5
        bar.update(1 << 20)
    bar.close()
    text = out.getvalue()
    assert text.count("\r") >= 5 and text.count("\n") == 1


def test_table_columns_align_for_complex_scripts():
    names = [THAI_NAME, KHMER_NAME, LAO_NAME, BURMESE_NAME, ARABIC_NAME, "中文模型", "English"]
    table = render(["NAME", "SIZE"], [[n, "1.0 GiB"] for n in names], right=[False, True])
    lines = table.splitlines()
    # Every row ends at the same screen column, whatever the script.
    assert len({glibc_width(line) for line in lines}) == 1, [glibc_width(x) for x in lines]
    for name, line in zip(names, lines[1:], strict=True):
        assert line.startswith(name)


def test_clip_keeps_whole_clusters():
    clipped = clip(KHMER_NAME, 5)
    assert clipped.endswith("…") and glibc_width(clipped) <= 5
    # Khmer coeng (U+17D2) joins two consonants: never cut between them.
    assert not clipped[:-1].endswith("\u17d2")
    clipped = clip(BURMESE_NAME, 6)
    assert glibc_width(clipped) <= 6 and not clipped[:-1].endswith("\u1039")


def test_messages_do_not_tear_the_progress_line():
    now = [0.0]
    out = io.StringIO()
    bar = TransferProgress("m.gguf", 10 << 20, stream=out, is_tty=True, clock=lambda: now[0])
    now[0] += 1
    bar.update(1 << 20)
    bar.interject("HTTP 503 from the server; retrying in 1.0s")
    text = out.getvalue()
    # The line is blanked, the message gets its own line, then the bar is drawn again.
    before, after = text.split("HTTP 503 from the server; retrying in 1.0s\n")
    assert before.endswith(REDRAW) and "m.gguf" in after
