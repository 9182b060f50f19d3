"""End to end in a real terminal: tmux runs `seachat chat`; keys in, screen out, process killed."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import regex

from seachat.app.chat.session import ChatSettings
from seachat.app.chat.store import COMPLETE, INTERRUPTED, STREAMING, Store
from tests.app.scripts import BURMESE, KHMER, THAI_QUESTION
from tests.app.terminal import Terminal, seachat_command, terminal_width

pytestmark = pytest.mark.slow


def env_for(home: Path) -> dict[str, str]:
    return {
        "SEACHAT_HOME": str(home),
        "SEACHAT_MODELS_DIR": str(home / "models"),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "COLORTERM": "truecolor",
    }


def db_messages(home: Path) -> list[tuple[str, str, str]]:
    path = home / "conversations.sqlite3"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(
            "SELECT role, content, status FROM messages ORDER BY conversation_id, position"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def test_thai_question_in_a_real_terminal(seachat_home: Path, smollm2_gguf: Path):
    store = Store(seachat_home / "conversations.sqlite3")
    settings = ChatSettings(temperature=0.0, max_tokens=60)  # a short, reproducible answer
    store.create_conversation("New chat", settings=settings.to_dict())
    store.close()
    command = seachat_command(
        "chat", "--threads", "2", "--ctx", "1024", "--continue", str(smollm2_gguf)
    )
    term = Terminal(command, env_for(seachat_home))
    try:
        term.wait_for(lambda s: "CPU" in s and "ctx 0/1024" in s, 60, "the model to load")
        # Layout is width-correct with spacing marks: the input box's right border stays at
        # column 80 with Khmer and Burmese text in it.
        term.type(KHMER[:30] + " " + BURMESE[:20])
        screen = term.wait_for(lambda s: KHMER[:8] in s, 10, "the typed text")
        for line in screen.splitlines():
            assert terminal_width(line) <= 80, line
        box = next(line for line in screen.splitlines() if KHMER[:8] in line)
        assert (
            box.startswith("│")
            and box.rstrip().endswith("│")
            and terminal_width(box.rstrip()) == 80
        )
        term.key("C-u")  # clear the line
        term.type(THAI_QUESTION)
        term.key("Enter")
        screen = term.wait_for(
            lambda s: (
                any(st == COMPLETE and r == "assistant" for r, _c, st in db_messages(seachat_home))
                and "tok/s" in s.replace("\n", "")
            ),
            120,
            "the answer",
        )
        (_, question, _), (_, answer, status) = db_messages(seachat_home)
        assert question == THAI_QUESTION and status == COMPLETE and answer.strip()
        assert THAI_QUESTION in screen
        # The answer is rendered as Markdown: look for its first run of letters (a few
        # clusters, so a line wrap cannot split it) rather than its raw source.
        first_word = regex.search(r"(?:\X(?<=\w)){1,6}", answer).group(0)
        assert first_word in screen, f"answer start {first_word!r} not on screen:\n{screen}"
        for line in screen.splitlines():
            assert terminal_width(line) <= 80, line
        term.key("C-q")
        deadline = time.monotonic() + 15
        while term.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not term.alive(), "seachat did not quit on Ctrl+Q"
    finally:
        term.close()


def test_sigkill_mid_answer_keeps_every_committed_message(seachat_home: Path, smollm2_gguf: Path):
    store = Store(seachat_home / "conversations.sqlite3")
    settings = ChatSettings(
        system_prompt="You are a storyteller. Always write very long, detailed stories.",
        temperature=0.9,
        seed=3,
        max_tokens=1500,
        repeat_penalty=1.05,
    )
    conv = store.create_conversation(
        "story", system_prompt=settings.system_prompt, settings=settings.to_dict()
    )
    store.add_message(conv.id, "user", "Say hello in Thai.")
    store.add_message(conv.id, "assistant", "สวัสดีครับ")
    store.close()
    term = Terminal(
        seachat_command("chat", "--threads", "2", "--ctx", "2048", "--continue", str(smollm2_gguf)),
        env_for(seachat_home),
    )
    try:
        term.wait_for(
            lambda s: "ctx 0/2048" in s and "สวัสดีครับ" in s, 60, "the model and the conversation"
        )
        first = db_messages(seachat_home)
        term.type("Write a very long story about a cat who sails to Thailand.")
        term.key("Enter")
        term.wait_for(
            lambda s: (
                len(db_messages(seachat_home)) == 4
                and db_messages(seachat_home)[-1][2] == STREAMING
                and len(db_messages(seachat_home)[-1][1]) > 20
            ),
            120,
            "a draft of the second answer on disk",
        )
        os.kill(term.pid(), signal.SIGKILL)
        time.sleep(0.5)
        after = db_messages(seachat_home)
        assert after[:2] == first  # the finished exchange is intact
        assert after[2][0] == "user" and after[2][2] == COMPLETE
        assert after[3][0] == "assistant" and after[3][2] == STREAMING and len(after[3][1]) > 20
        reopened = Store(seachat_home / "conversations.sqlite3")
        assert reopened.recover_interrupted() == 1
        msgs = reopened.messages(conv.id)
        assert msgs[-1].status == INTERRUPTED and msgs[-1].content == after[3][1]
    finally:
        term.close()
