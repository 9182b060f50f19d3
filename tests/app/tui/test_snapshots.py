"""Snapshots (pytest-textual-snapshot) of the main screens with complex-script conversations.

Conversations are stored beforehand, so the pictures do not depend on sampling. Update them
with `pytest tests/app/tui/test_snapshots.py --snapshot-update` after a deliberate UI change,
and look at the report before committing.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from seachat.app.chat.session import ChatSettings
from seachat.app.chat.store import Store
from tests.app.apphelpers import make_app
from tests.app.scripts import ARABIC, BURMESE, KHMER, LAO, THAI

pytestmark = pytest.mark.slow

CONVERSATION = [
    ("user", "ช่วยแนะนำที่เที่ยวทะเลในประเทศไทยหน่อยครับ"),
    (
        "assistant",
        "ได้เลยครับ ลองดูที่เหล่านี้:\n\n"
        "- **ภูเก็ต** หาดทรายขาวและน้ำทะเลใส เหมาะกับการดำน้ำ\n"
        "- **กระบี่** มีเกาะสวยงามมากมายให้ล่องเรือเที่ยว\n\n"
        f"{THAI}",
    ),
    ("user", KHMER),
    ("assistant", f"{KHMER} {KHMER}"),
    ("user", BURMESE),
    ("assistant", f"**{BURMESE}**\n\n{BURMESE}"),
]

SECOND = [
    ("user", LAO),
    ("assistant", f"{LAO}\n\n```python\nprint('ສະບາຍດີ')\n```"),
    ("user", ARABIC),
    ("assistant", f"{ARABIC}\n\n1. {ARABIC[:20]}\n2. {ARABIC[20:40]}"),
]


def stored(home: Path, title: str, messages, **settings) -> int:
    store = Store(home / "conversations.sqlite3")
    conv = store.create_conversation(title, settings=ChatSettings(**settings).to_dict())
    for role, text in messages:
        store.add_message(conv.id, role, text)
    store.close()
    return conv.id


def no_blink(app) -> None:
    """A blinking cursor would make the picture depend on the moment it is taken."""
    for widget in app.screen.query("Input, TextArea"):
        widget.cursor_blink = False


async def ready(pilot) -> None:
    """Model loaded and the message list laid out and anchored at its end. On a loaded machine
    the Markdown layout settles late, so wait for the scroll position to stop moving rather
    than for a fixed time."""
    app = pilot.app
    deadline = time.monotonic() + 60
    while app.runtime is None and time.monotonic() < deadline:
        await pilot.pause(0.05)
    box = app.screen.query_one("ChatInput")
    box.cursor_blink = False
    # The input takes focus once the model is in (what a person sees); under load that can
    # come a few frames after `runtime` is set.
    while not box.has_focus and time.monotonic() < deadline:
        await pilot.pause(0.05)
    messages = app.screen.query("#messages")
    last = None
    while time.monotonic() < deadline:
        await pilot.pause(0.1)
        if not messages:
            break
        view = messages.first()
        state = (view.scroll_y, view.max_scroll_y, view.virtual_size)
        if state == last and view.scroll_y == view.max_scroll_y:
            break
        last = state
    await pilot.pause()


def test_chat_thai_khmer_burmese_80x24(snap_compare, seachat_home: Path, smollm2_gguf: Path):
    cid = stored(seachat_home, "ทะเล", CONVERSATION)
    app = make_app(seachat_home, smollm2_gguf, resume=cid)
    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


def test_chat_lao_arabic_code_100x32(snap_compare, seachat_home: Path, smollm2_gguf: Path):
    cid = stored(seachat_home, "ລາວ", SECOND)
    app = make_app(seachat_home, smollm2_gguf, resume=cid)
    assert snap_compare(app, terminal_size=(100, 32), run_before=ready)


def test_welcome_80x24(snap_compare, seachat_home: Path):
    app = make_app(seachat_home, None, models_dir=Path("/home/you/.local/share/seachat/models"))
    assert snap_compare(app, terminal_size=(80, 24))


def test_help_80x24(snap_compare, seachat_home: Path):
    app = make_app(seachat_home, None, models_dir=Path("/models"))
    assert snap_compare(app, terminal_size=(80, 24), press=["f1"])


def test_conversations_80x24(snap_compare, seachat_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    for title, body in [
        ("ทะเลภูเก็ต", THAI),
        ("ដំណើរទៅសមុទ្រ", KHMER),
        ("ပင်လယ်ခရီး", BURMESE),
        ("رحلة إلى البحر", ARABIC),
    ]:
        stored(seachat_home, title, [("user", body)])
    db = sqlite3.connect(seachat_home / "conversations.sqlite3")
    db.execute("UPDATE conversations SET updated = 1767225600 + id * 3600")  # 2026-01-01 UTC
    db.commit()
    db.close()

    async def open_list(pilot) -> None:
        from seachat.app.tui.chat_screen import ChatScreen

        app = pilot.app
        app.chat = ChatScreen(app.store)
        await app.push_screen(app.chat)
        await pilot.press("ctrl+o")
        await pilot.pause(0.2)
        no_blink(app)
        await pilot.pause()

    app = make_app(seachat_home, None)
    try:
        assert snap_compare(app, terminal_size=(80, 24), run_before=open_list)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_settings_with_preset_80x24(snap_compare, seachat_home: Path):
    async def open_settings(pilot) -> None:
        from seachat.app.tui.chat_screen import ChatScreen

        app = pilot.app
        app.chat = ChatScreen(app.store)
        await app.push_screen(app.chat)
        await pilot.press("f4")
        await pilot.pause()
        app.screen.query_one("#preset").value = 2  # Answer in Khmer
        await pilot.pause()
        no_blink(app)
        await pilot.pause()

    app = make_app(seachat_home, None)
    assert snap_compare(app, terminal_size=(80, 24), run_before=open_settings)
