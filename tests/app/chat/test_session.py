"""The conversation layer: context trimming, durable drafts, regenerate and edit."""

from __future__ import annotations

from pathlib import Path

import pytest

from seachat.app.chat import session as session_mod
from seachat.app.chat.runtime import Runtime
from seachat.app.chat.session import ChatSession, ChatSettings, ContextTooSmall, title_from
from seachat.app.chat.store import COMPLETE, STOPPED, STREAMING, Store
from tests.app.scripts import KHMER, THAI


@pytest.fixture(scope="module")
def tiny_ctx(smollm2_gguf) -> Runtime:
    rt = Runtime(smollm2_gguf, n_ctx=256, n_threads=2)
    yield rt
    rt.close()


def new_session(tmp_path: Path, rt: Runtime, **settings) -> ChatSession:
    store = Store(tmp_path / "c.db")
    conv = store.create_conversation(
        settings=ChatSettings(**settings).to_dict(), system_prompt=settings.get("system_prompt", "")
    )
    return ChatSession(store, rt, conv)


def test_oldest_turns_are_dropped_but_never_the_system_prompt(tmp_path, tiny_ctx):
    s = new_session(tmp_path, tiny_ctx, system_prompt="SYSTEM-RULE: be brief.", max_tokens=32)
    for i in range(6):
        s.add_user_message(f"Question {i}: " + "tell me about rivers " * 4)
        a = s.begin_answer()
        s.store.update_message(a.id, f"Answer {i}: " + "rivers flow " * 6, COMPLETE)
        a.content = f"Answer {i}: " + "rivers flow " * 6
    s.add_user_message("Last question?")
    tokens, dropped = s.prompt_tokens()
    assert dropped > 0 and dropped % 2 == 0  # whole turns
    assert len(tokens) <= tiny_ctx.n_ctx - 32
    text = tiny_ctx.llm.detokenize(tokens, special=True).decode()
    assert "SYSTEM-RULE" in text and "Last question?" in text
    assert "Question 0" not in text


def test_a_message_longer_than_the_context_is_a_clear_error(tmp_path, tiny_ctx):
    s = new_session(tmp_path, tiny_ctx)
    s.add_user_message("word " * 400)
    with pytest.raises(ContextTooSmall, match="--ctx"):
        s.prompt_tokens()


def test_answer_is_committed_and_drafts_are_saved_while_streaming(tmp_path, smollm, monkeypatch):
    monkeypatch.setattr(session_mod, "DRAFT_SAVE_SECONDS", 0.0)  # save at every piece
    s = new_session(tmp_path, smollm, temperature=0.0, max_tokens=40)
    s.add_user_message("Write three sentences about the sea.")
    answer = s.begin_answer()
    seen_in_db: list[str] = []

    def on_text(piece: str) -> None:
        (row,) = [
            m for m in Store(tmp_path / "c.db").messages(s.conversation.id) if m.id == answer.id
        ]
        seen_in_db.append(row.status)

    result = s.generate(answer, on_text)
    assert result.message.status == COMPLETE and result.message.content
    assert STREAMING in seen_in_db  # partial text was on disk before the end
    final = Store(tmp_path / "c.db").messages(s.conversation.id)
    assert final[-1].content == result.message.content and final[-1].status == COMPLETE
    assert final[-1].stats["gen_tokens"] == result.stats.gen_tokens


def test_stopped_answer_is_kept_and_marked(tmp_path, smollm):
    s = new_session(tmp_path, smollm, temperature=0.0, max_tokens=300)
    s.add_user_message("Write a long story about a cat.")
    answer = s.begin_answer()
    pieces: list[str] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 4:
            s.stop()

    s.generate(answer, on_text)
    stored = s.store.messages(s.conversation.id)[-1]
    assert stored.status == STOPPED and stored.content == "".join(pieces)


def test_regenerate_and_edit_truncate_the_history(tmp_path, smollm):
    s = new_session(tmp_path, smollm, temperature=0.0, max_tokens=8)
    first = s.add_user_message(THAI[:16])
    s.generate(s.begin_answer(), lambda _t: None)
    s.add_user_message(KHMER[:12])
    s.generate(s.begin_answer(), lambda _t: None)
    assert len(s.messages) == 4
    assert s.prepare_regenerate()
    assert [m.role for m in s.messages] == ["user", "assistant", "user"]
    s.truncate_from(first)  # edit-and-resend of the first message
    assert s.messages == [] and s.store.messages(s.conversation.id) == []


def test_title_from_first_message_cuts_at_a_cluster():
    assert title_from("  hello\nworld") == "hello"
    t = title_from("ខ្ញុំ" * 60, limit=10)
    assert t == "ខ្ញុំ" * 10 + "…"


def test_settings_default_to_the_runtime_sampling_and_keep_top_k(tmp_path):
    from dataclasses import fields

    from seachat.app.chat.runtime import SamplingParams

    defaults = ChatSettings()
    assert defaults.sampling() == SamplingParams()  # one set of defaults, top_k included
    store = Store(tmp_path / "c.db")
    conv = store.create_conversation(system_prompt="brief")
    session = ChatSession(store, None, conv)
    session.save_settings(ChatSettings(system_prompt="brief", top_k=7, temperature=0.2))
    reopened = ChatSession(store, None, store.get_conversation(conv.id))
    assert reopened.settings.top_k == 7 and reopened.settings.sampling().top_k == 7
    assert reopened.settings.system_prompt == "brief"
    # A conversation stored before top_k was saved gets the runtime's default.
    old = store.create_conversation(settings={"temperature": 0.3})
    assert ChatSession(store, None, old).settings.top_k == SamplingParams().top_k
    assert {f.name for f in fields(SamplingParams)} <= set(defaults.to_dict())
    store.close()
