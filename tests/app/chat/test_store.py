"""SQLite store and export: schema migrations, durability, search and file names in any script."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from seachat.app.chat import store as store_mod
from seachat.app.chat.export import export, safe_filename
from seachat.app.chat.store import INTERRUPTED, SCHEMA_VERSION, STREAMING, Store
from seachat.convert.errors import UserError
from tests.app.scripts import ARABIC, BURMESE, KHMER, LAO, THAI


def test_new_database_is_wal_and_at_the_latest_schema(tmp_path: Path):
    s = Store(tmp_path / "c.db")
    assert s.schema_version() == SCHEMA_VERSION == len(store_mod.MIGRATIONS)
    mode = sqlite3.connect(tmp_path / "c.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_old_schema_is_migrated_in_place_keeping_data(tmp_path: Path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1);"
        + store_mod.MIGRATIONS[0]
    )
    db.execute("INSERT INTO conversations (title, created, updated) VALUES (?, 1, 1)", (THAI,))
    db.execute(
        "INSERT INTO messages (conversation_id, position, role, content, created) VALUES (1, 0, 'user', ?, 1)",
        (KHMER,),
    )
    db.commit()
    db.close()
    s = Store(path)
    assert s.schema_version() == SCHEMA_VERSION
    (conv,) = s.list_conversations()
    assert conv.title == THAI and s.messages(conv.id)[0].content == KHMER
    s.set_preference("theme", "nord")  # a table from migration 2
    assert s.get_preference("theme") == "nord"


def test_newer_schema_is_refused_with_one_line(tmp_path: Path):
    path = tmp_path / "new.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(UserError, match="newer seachat"):
        Store(path)


def test_messages_survive_reopen_and_streaming_rows_become_interrupted(tmp_path: Path):
    s = Store(tmp_path / "c.db")
    conv = s.create_conversation("chat")
    s.add_message(conv.id, "user", BURMESE)
    draft = s.add_message(conv.id, "assistant", "", STREAMING)
    s.update_message(draft.id, "ကျွန်တော်", STREAMING)
    # No close(): as if the process died.
    again = Store(tmp_path / "c.db")
    assert again.recover_interrupted() == 1
    msgs = again.messages(conv.id)
    assert [m.content for m in msgs] == [BURMESE, "ကျွန်တော်"]
    assert msgs[1].status == INTERRUPTED and msgs[1].incomplete


def test_search_finds_every_script_in_titles_and_messages(tmp_path: Path):
    s = Store(tmp_path / "c.db")
    for title, body in [
        ("Thai", THAI),
        ("Khmer", KHMER),
        ("Lao", LAO),
        ("Burmese", BURMESE),
        (ARABIC[:12], ARABIC),
    ]:
        conv = s.create_conversation(title)
        s.add_message(conv.id, "user", body)
    assert [c.title for c in s.list_conversations("ทะเล")] == ["Thai"]
    assert [c.title for c in s.list_conversations("សមុទ្រ")] == ["Khmer"]
    assert [c.title for c in s.list_conversations("ນ້ຳຕົກ")] == ["Lao"]
    assert [c.title for c in s.list_conversations("ပင်လယ်")] == ["Burmese"]
    assert len(s.list_conversations("البحر")) == 1
    assert [c.title for c in s.list_conversations("khMER")] == ["Khmer"]  # case-insensitive
    assert s.list_conversations("100%") == []  # LIKE wildcards are escaped
    assert len(s.list_conversations("")) == 5


def test_rename_delete_and_truncate(tmp_path: Path):
    s = Store(tmp_path / "c.db")
    conv = s.create_conversation("a")
    for i in range(4):
        s.add_message(conv.id, "user" if i % 2 == 0 else "assistant", str(i))
    s.rename(conv.id, "  ชื่อ   ใหม่ ")
    assert s.get_conversation(conv.id).title == "ชื่อ ใหม่"
    s.delete_messages_from(conv.id, 2)
    assert [m.content for m in s.messages(conv.id)] == ["0", "1"]
    s.delete(conv.id)
    assert s.get_conversation(conv.id) is None and s.messages(conv.id) == []


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("แมวของฉัน: ตอนที่ 1/2", "แมวของฉัน_ ตอนที่ 1_2"),
        ("សមុទ្រ និង ភ្នំ", "សមុទ្រ និង ភ្នំ"),
        ("رحلة إلى البحر؟", "رحلة إلى البحر؟"),
        ('a<b>c"d|e?f*g\\h', "a_b_c_d_e_f_g_h"),
        ("...", "chat"),
        ("CON", "chat_CON"),
    ],
)
def test_export_file_names_keep_titles_readable(title: str, expected: str):
    assert safe_filename(title) == expected


def test_long_titles_are_cut_at_a_cluster_within_the_byte_limit():
    name = safe_filename("ខ្ញុំ" * 200)
    assert len(name.encode()) <= 200 and len(name) % len("ខ្ញុំ") == 0


def test_export_markdown_and_json(tmp_path: Path):
    s = Store(tmp_path / "c.db")
    conv = s.create_conversation(KHMER[:20], model="Gemma", system_prompt="ตอบเป็นภาษาไทย")
    s.add_message(conv.id, "user", THAI)
    s.add_message(conv.id, "assistant", ARABIC, "stopped")
    conv = s.get_conversation(conv.id)
    md = export(conv, s.messages(conv.id), tmp_path / "out", "md")
    assert md.name == f"{safe_filename(conv.title)}.md"
    text = md.read_text("utf-8")
    assert THAI in text and ARABIC in text and "(stopped)" in text and "ตอบเป็นภาษาไทย" in text
    js = export(conv, s.messages(conv.id), tmp_path / "out", "json")
    doc = json.loads(js.read_text("utf-8"))
    assert [m["content"] for m in doc["messages"]] == [THAI, ARABIC]
    again = export(conv, s.messages(conv.id), tmp_path / "out", "md")
    assert again != md and again.name.endswith("(2).md")
    assert not list((tmp_path / "out").glob(".*.tmp"))  # convert/files.py's temporary names
