"""The model card quotes metadata without breaking the Markdown around it, and shows the
whole calibration record as a table (issue: the record was cut at 127 bytes mid-backtick)."""

from __future__ import annotations

import json

from markdown_it import MarkdownIt

from seachat.app.hub.card import CardOverrides, load_files, render_card, resolve_facts
from seachat.convert.gguf_file.keys import CALIBRATION_KEY
from tests.app.libtest import KHMER_NAME, THAI_NAME, write_gguf

NASTY = "ចំណុច `code` | ท่อ | ``two`` ‘ไทย’ *star* [link](x) <b>"


def test_card_quotes_metadata_safely_and_tables_the_calibration(tmp_path):
    record = {
        "method": "seachat token-balanced",
        "text": NASTY,
        "chunk_size": 512,
        "chunks": 34,
        "tokens": 16405,
        "languages": {"khm_Khmr": 963, "tha_Thai": 962, "lao_Laoo": 961, "arb_Arab": 960},
    }
    gguf = write_gguf(
        tmp_path / "m-sea-q4.gguf",
        name=f"{KHMER_NAME} `x` | {THAI_NAME}",
        profile="sea-q4",
        languages=["km", "th"],
        extra={
            CALIBRATION_KEY: json.dumps(record, ensure_ascii=False),
            "quantize.imatrix.dataset": "seachat token-balanced, 4 languages",
        },
    )
    files = load_files([gguf])
    card = render_card("me/m", files, resolve_facts(files, CardOverrides()))
    tokens = MarkdownIt("commonmark").enable("table").parse(card)
    # Every section heading survives whatever the metadata held.
    headings = [
        t.content
        for t in tokens
        if t.type == "inline" and t.map and card.splitlines()[t.map[0]].startswith("## ")
    ]
    assert "Calibration" in headings and "Languages" in headings and "License" in headings
    # The quoted text comes through whole, inside one code span.
    code_spans = [
        c.content
        for t in tokens
        if t.type == "inline"
        for c in t.children or []
        if c.type == "code_inline"
    ]
    assert NASTY in code_spans
    # The calibration table: one row a language, two cells each, tokens as recorded.
    html = MarkdownIt("commonmark").enable("table").render(card)
    section = html.split("Calibration tokens per language")[1].split("</table>")[0]
    rows = section.split("<tr>")[2:]
    assert len(rows) == 4 and all(r.count("<td") == 2 for r in rows)
    for code, n in record["languages"].items():
        assert f"<code>{code}</code>" in section and f"{n}</td>" in section
    # The model name in the title is text, not a code span or a table.
    title = html.split("</h1>")[0]
    assert KHMER_NAME in title and THAI_NAME in title and "<code>" not in title
