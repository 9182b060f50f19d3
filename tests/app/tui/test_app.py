"""The Textual app, driven headless with real models (SmolLM2 for the flow, Gemma 3 for scripts)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from seachat.app.chat.session import ChatSettings
from seachat.app.chat.store import STOPPED, Store
from seachat.app.text.segment import grapheme_boundaries
from seachat.app.tui.chat_screen import ChatScreen
from seachat.app.tui.screens import (
    HELP_KEYS,
    ConversationsScreen,
    HelpScreen,
    ModelPickerScreen,
    SettingsScreen,
    WelcomeScreen,
)
from seachat.app.tui.widgets import ChatInput, MessageView, StatusBar
from tests.app.apphelpers import (
    SIZE,
    chat,
    make_app,
    send,
    shown_text,
    views,
    wait_answer,
    wait_for,
    wait_model,
)
from tests.app.scripts import ALL, ARABIC, BURMESE, KHMER, THAI

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


async def test_chat_flow_settings_regenerate_copy_edit(seachat_home: Path, smollm2_gguf: Path):
    app = make_app(seachat_home, smollm2_gguf)
    async with app.run_test(size=SIZE) as pilot:
        await wait_model(pilot)
        # Settings screen: greedy sampling and a system prompt for this conversation.
        await pilot.press("f4")
        assert isinstance(app.screen, SettingsScreen)
        app.screen.query_one("#set-temperature").value = "0"
        app.screen.query_one("#set-max_tokens").value = "40"
        app.screen.query_one("#system-prompt").text = "You answer briefly."
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ChatScreen)

        await send(pilot, "What is the capital of Thailand?")
        await wait_answer(pilot)
        session = chat(app).session
        assert session is not None and session.settings.temperature == 0.0
        user, answer = session.messages
        assert "Bangkok" in answer.content and answer.status == "complete"
        assert shown_text(views(app)[-1]).strip() == answer.content.strip()
        status = str(app.screen.query_one(StatusBar).render())
        assert "Smollm2" in status and "CPU" in status and "tok/s" in status and "/2048" in status
        assert session.conversation.title == "What is the capital of Thailand?"

        await pilot.press("ctrl+r")  # regenerate: same greedy answer replaces the old one
        await wait_answer(pilot)
        assert [m.role for m in session.messages] == ["user", "assistant"]
        assert session.messages[-1].content == answer.content
        assert len(views(app)) == 2

        await pilot.press("ctrl+y")  # copy the last answer
        assert app.clipboard == answer.content

        app.screen.query_one(ChatInput).focus()
        await pilot.press("up")  # empty input: edit and resend the question
        box = app.screen.query_one(ChatInput)
        assert box.text == user.content
        box.text = "What is the capital of Japan?"
        await pilot.press("enter")
        await pilot.pause()
        await wait_answer(pilot)
        assert [m.content for m in session.messages][0] == "What is the capital of Japan?"
        assert len(session.messages) == 2 and len(views(app)) == 2
        stored = app.store.messages(session.conversation.id)
        assert [m.content for m in stored] == [m.content for m in session.messages]

        # Message actions from the keyboard: focus the answer, press c.
        views(app)[-1].focus()
        await pilot.press("c")
        assert app.clipboard == session.messages[-1].content


async def test_escape_stops_a_long_prompt_within_a_second(seachat_home: Path, smollm2_gguf: Path):
    app = make_app(seachat_home, smollm2_gguf)
    async with app.run_test(size=SIZE) as pilot:
        await wait_model(pilot)
        # ~1300 tokens: seconds of prompt evaluation on 2 cores, within the 2048 context.
        long_text = " ".join(f"Line {i}: the river runs past the old mill." for i in range(90))
        await send(pilot, long_text)
        screen = chat(app)
        await wait_for(pilot, lambda: "reading" in screen.status().state, 30, "prompt evaluation")
        await pilot.pause(0.3)
        pressed = time.perf_counter()
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.generating, 5, "the stop")
        latency = time.perf_counter() - pressed
        await wait_answer(pilot)
        assert latency < 1.0, f"Esc took {latency:.2f} s"
        answer = screen.session.messages[-1]
        assert answer.status == STOPPED
        assert "stopped" in str(views(app)[-1].query_one(".message-header").render())
        assert app.store.messages(screen.session.conversation.id)[-1].status == STOPPED


async def test_conversation_survives_restart(seachat_home: Path, smollm2_gguf: Path):
    app = make_app(seachat_home, smollm2_gguf)
    async with app.run_test(size=SIZE) as pilot:
        await wait_model(pilot)
        chat(app).pending_settings = ChatSettings(temperature=0.0, max_tokens=12)
        await send(pilot, KHMER)
        await wait_answer(pilot)
        conv_id = chat(app).session.conversation.id
        before = [(m.role, m.content, m.status) for m in chat(app).session.messages]
    app.store.close()

    again = make_app(seachat_home, smollm2_gguf, resume=conv_id)
    async with again.run_test(size=SIZE) as pilot:
        await wait_model(pilot)
        after = [(v.message.role, v.message.content, v.message.status) for v in views(again)]
        assert after == before
        assert shown_text(views(again)[0]) == KHMER
        assert chat(again).session.settings.max_tokens == 12


async def test_context_overflow_is_announced(seachat_home: Path, smollm2_gguf: Path):
    store = Store(seachat_home / "conversations.sqlite3")
    conv = store.create_conversation(
        "long", settings=ChatSettings(temperature=0.0, max_tokens=16).to_dict()
    )
    for i in range(8):
        store.add_message(conv.id, "user", f"Question {i} about rivers and lakes and seas.")
        store.add_message(conv.id, "assistant", "Rivers flow into lakes and seas. " * 3)
    store.close()
    app = make_app(seachat_home, smollm2_gguf, n_ctx=256, resume=conv.id)
    async with app.run_test(size=SIZE) as pilot:
        await wait_model(pilot)
        await send(pilot, "And the last one?")
        await wait_answer(pilot)
        notice = str(app.screen.query_one("#notice").render())
        assert "oldest message(s) were left out" in notice
        assert chat(app).session.dropped_messages > 0
        assert len(views(app)) == 18  # nothing is removed from the screen or the database


async def test_input_moves_and_deletes_by_grapheme_cluster(seachat_home: Path):
    app = make_app(seachat_home, None)
    async with app.run_test(size=SIZE) as pilot:
        screen = ChatScreen(app.store)
        await app.push_screen(screen)
        box = screen.query_one(ChatInput)
        box.focus()
        box.text = "ខ្ញុំចង់"
        box.move_cursor((0, 0))
        await pilot.press("right")
        assert box.cursor_location == (0, len("ខ្ញុំ"))  # over all five code points at once
        await pilot.press("right", "left")
        assert box.cursor_location == (0, len("ខ្ញុំ"))
        await pilot.press("backspace")
        assert box.text == "ចង់"
        box.text = "ကျွန်တော်"
        box.move_cursor(box.document.end)
        await pilot.press("backspace")
        assert box.text == "ကျွန်"
        await pilot.press("left")
        assert box.cursor_location[1] in grapheme_boundaries("ကျွန်")
        box.move_cursor((0, 1))  # inside ကျွ: snapped to its start
        assert box.cursor_location == (0, 0)
        await pilot.press("delete")
        assert box.text == "န်"


@pytest.mark.parametrize("lang", list(ALL))
async def test_streaming_in_every_script_never_shows_broken_text(
    seachat_home: Path, gemma3_gguf: Path, lang
):
    app = make_app(seachat_home, gemma3_gguf)
    snapshots: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        await wait_model(pilot)
        assert "no chat template" in str(app.screen.query_one("#notice").render())
        chat(app).pending_settings = ChatSettings(temperature=0.8, seed=11, max_tokens=32)
        original_flush = MessageView.flush

        async def spying_flush(view: MessageView) -> bool:
            changed = await original_flush(view)
            if changed:
                snapshots.append(shown_text(view))
            return changed

        MessageView.flush = spying_flush  # type: ignore[method-assign]
        try:
            await send(pilot, ALL[lang])
            await wait_answer(pilot)
        finally:
            MessageView.flush = original_flush  # type: ignore[method-assign]
        answer = chat(app).session.messages[-1]
        assert answer.content
        for shown in snapshots:
            assert "\ufffd" not in shown
            assert answer.content.startswith(shown.rstrip("\n")) or shown.strip() == ""
        assert shown_text(views(app)[-1]) == answer.content


async def test_conversations_search_rename_export_delete(seachat_home: Path, tmp_path: Path):
    store = Store(seachat_home / "conversations.sqlite3")
    for title, body in [("ทะเล", THAI), ("សមុទ្រ", KHMER), ("ပင်လယ်", BURMESE), ("البحر", ARABIC)]:
        c = store.create_conversation(title)
        store.add_message(c.id, "user", body)
    store.close()
    out = tmp_path / "exports"
    app = make_app(seachat_home, None, export_dir=out)
    async with app.run_test(size=SIZE) as pilot:
        app.chat = ChatScreen(app.store)
        await app.push_screen(app.chat)
        await pilot.press("ctrl+o")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ConversationsScreen)
        assert len(screen.conversations) == 4
        screen.query_one("#search").value = "ញ៉ាំ"  # a word inside the Khmer message
        await pilot.pause()
        assert [c.title for c in screen.conversations] == ["សមុទ្រ"]

        await pilot.press("f2")
        await pilot.pause()
        app.screen.query_one("#prompt-input").value = "ដំណើរទៅសមុទ្រ: ថ្ងៃទី ១"
        await pilot.press("enter")
        await pilot.pause()
        assert [c.title for c in screen.conversations] == ["ដំណើរទៅសមុទ្រ: ថ្ងៃទី ១"]

        await pilot.press("f6")
        await pilot.press("f7")
        await pilot.pause()
        assert sorted(p.name for p in out.iterdir()) == [
            "ដំណើរទៅសមុទ្រ_ ថ្ងៃទី ១.json",
            "ដំណើរទៅសមុទ្រ_ ថ្ងៃទី ១.md",
        ]
        assert KHMER in (out / "ដំណើរទៅសមុទ្រ_ ថ្ងៃទី ១.md").read_text("utf-8")

        await pilot.press("ctrl+d")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert screen.conversations == []
        screen.query_one("#search").value = ""
        await pilot.pause()
        assert sorted(c.title for c in screen.conversations) == sorted(["ทะเล", "ပင်လယ်", "البحر"])

        await pilot.press("enter")  # open the newest
        await pilot.pause()
        assert isinstance(app.screen, ChatScreen)
        assert app.chat.session is not None and len(views(app)) == 1


async def test_model_picker_lists_library_and_switches_model(
    seachat_home: Path, smollm2_gguf: Path, gemma3_gguf: Path
):
    models = seachat_home / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "gemma.gguf").symlink_to(gemma3_gguf)
    (models / "broken.gguf").write_bytes(b"not a gguf at all, just text" * 4)
    app = make_app(seachat_home, smollm2_gguf, models_dir=models)
    async with app.run_test(size=SIZE) as pilot:
        await wait_model(pilot)
        assert app.screen.query_one("#notice").display is False  # SmolLM2 has a template
        await pilot.press("f3")
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, ModelPickerScreen)
        table = picker.query_one("#model-table")
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        by_name = {r[0]: r for r in rows}
        assert by_name["Gemma 3 270m"][1:4] == ["gemma3", "270M", "Q4_K_M"]
        assert by_name["Smollm2 135M 8k Lc100K Mix1 Ep2"][1:4] == ["llama", "135M", "Q4_1"]
        assert all(r[5] == "yes" for r in rows)  # a few hundred MB fit in 24 GiB
        assert "broken.gguf" in str(picker.query_one("#models-note").render())
        table.move_cursor(row=[r[0] for r in rows].index("Gemma 3 270m"))
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: app.runtime is not None and app.runtime.model_name == "Gemma 3 270m", 60
        )
        await pilot.pause()
        assert "no chat template" in str(app.screen.query_one("#notice").render())


async def test_top_k_is_a_setting_with_the_runtime_default(seachat_home: Path):
    from seachat.app.chat.runtime import SamplingParams

    app = make_app(seachat_home, None)
    async with app.run_test(size=SIZE) as pilot:
        app.chat = ChatScreen(app.store)
        await app.push_screen(app.chat)
        await pilot.press("f4")
        assert isinstance(app.screen, SettingsScreen)
        assert app.screen.query_one("#set-top_k").value == str(SamplingParams().top_k)
        app.screen.query_one("#set-top_k").value = "-1"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)  # out of range: not saved
        app.screen.query_one("#set-top_k").value = "12"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ChatScreen)
        assert app.chat.pending_settings.top_k == 12
        assert app.chat.pending_settings.sampling().top_k == 12
        await pilot.press("f4")
        assert app.screen.query_one("#set-top_k").value == "12"


async def test_welcome_screen_when_there_is_no_model(seachat_home: Path):
    app = make_app(seachat_home, None, models_dir=seachat_home / "models")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, WelcomeScreen)
        text = app.screen.query_one("Markdown").source
        assert "seachat pull" in text and "seachat convert" in text and "seachat[demo]" in text
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)


def test_help_lists_every_chat_binding():
    documented = " ".join(k for k, _ in HELP_KEYS).lower()
    for binding in ChatScreen.BINDINGS:
        for key in binding.key.split(","):
            assert key.replace("escape", "esc") in documented, key


async def test_theme_choice_is_remembered(seachat_home: Path):
    app = make_app(seachat_home, None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        chosen = app.theme
    app.store.close()
    again = make_app(seachat_home, None)
    async with again.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert again.theme == chosen


async def test_enter_right_after_fast_typing_sends_every_letter(
    seachat_home: Path, smollm2_gguf: Path
):
    """Keys arrive from the terminal faster than the input processes them (a paste, a fast
    typist, a loaded machine): Enter must not overtake the letters queued before it."""
    from textual import events

    app = make_app(seachat_home, smollm2_gguf)
    async with app.run_test(size=SIZE) as pilot:
        await wait_model(pilot)
        chat(app).pending_settings = ChatSettings(temperature=0.0, max_tokens=4)
        box = app.screen.query_one(ChatInput)
        box.focus()
        await pilot.pause()
        text = THAI + " " + KHMER
        keys = [events.Key(ch if ch != " " else "space", ch) for ch in text]
        keys.append(events.Key("enter", "\r"))
        for key in keys:  # as the terminal driver delivers them, without waiting in between
            key.set_sender(app)
            app._driver.send_message(key)
        await wait_for(
            pilot,
            lambda: chat(app).session is not None and chat(app).session.messages,
            10,
            "the send",
        )
        await wait_answer(pilot)
        assert chat(app).session.messages[0].content == text
        assert box.text == ""
