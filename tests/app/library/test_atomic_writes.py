"""Files the library, the Hub commands and chat export write: renamed into place whole, with
the permissions the user's umask gives any new file, and no temporary file left behind."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from seachat.app.chat.export import export
from seachat.app.chat.store import Store
from seachat.app.hub.card import GENERATED_MARKER
from seachat.app.hub.publish import write_card
from seachat.app.library.catalog import ModelSource, read_source, source_path, write_source
from seachat.app.text.progress import REDRAW, LiveLine
from tests.app.scripts import KHMER, THAI


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_export_honours_the_umask(tmp_path: Path, umask_022: None):
    s = Store(tmp_path / "c.db")
    conv = s.create_conversation(THAI[:20], model="Gemma")
    s.add_message(conv.id, "user", KHMER)
    out = tmp_path / "out"
    md = export(s.get_conversation(conv.id), s.messages(conv.id), out, "md")
    assert mode(md) == 0o644  # not mkstemp's 0600: others may read an export like any file
    assert KHMER in md.read_text(encoding="utf-8")
    assert [p.name for p in out.iterdir()] == [md.name]


def test_source_record_is_written_whole(tmp_path: Path, umask_022: None):
    model = tmp_path / "m.gguf"
    source = ModelSource("o/r", "m.gguf", "main", "c" * 40, "a" * 64, 123, "2024-01-01", "x")
    write_source(model, source)
    write_source(model, source)  # again over the first: replaced, not appended to
    assert read_source(model) == source
    assert mode(source_path(model)) == 0o644
    assert [p.name for p in source_path(model).parent.iterdir()] == ["m.gguf.json"]


def test_card_is_written_whole(tmp_path: Path, umask_022: None):
    card = tmp_path / "README.md"
    write_card(card, f"{GENERATED_MARKER}\n# ไทย\n")
    write_card(card, f"{GENERATED_MARKER}\n# ខ្មែរ\n")
    assert card.read_text(encoding="utf-8").endswith("# ខ្មែរ\n")
    assert mode(card) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


def test_live_line_redraws_in_place_on_a_terminal():
    now = [0.0]
    out = io.StringIO()
    line = LiveLine(out, is_tty=True, every=(0.2, 10.0), clock=lambda: now[0])
    assert line.due()
    line.show("quantize: 1/4")
    assert not line.due()
    now[0] += 0.2
    assert line.due()
    line.show("quantize: 2/4")
    line.say("ภาษาไทย")
    line.show("quantize: 4/4")
    line.end()
    line.end()  # nothing left to end
    assert out.getvalue() == (
        f"{REDRAW}quantize: 1/4{REDRAW}quantize: 2/4{REDRAW}ภาษาไทย\n{REDRAW}quantize: 4/4\n"
    )


def test_live_line_writes_plain_lines_to_a_log():
    now = [0.0]
    out = io.StringIO()
    line = LiveLine(out, is_tty=False, every=(0.2, 10.0), clock=lambda: now[0])
    line.show("quantize: 1/4")
    now[0] += 5.0
    assert not line.due()  # a log gets a line every 10 s, not 5 times a second
    line.say("note")
    line.end()
    assert out.getvalue() == "quantize: 1/4\nnote\n"
