"""Driving the real app headless (App.run_test) with real models."""

from __future__ import annotations

import time
from pathlib import Path

from textual.pilot import Pilot

from seachat.app.chat.runtime import LoadOptions
from seachat.app.chat.store import Store
from seachat.app.tui.app import SeachatApp
from seachat.app.tui.chat_screen import ChatScreen
from seachat.app.tui.widgets import ChatInput, MessageView

SIZE = (80, 24)


def make_app(home: Path, model: Path | None, n_ctx: int = 2048, **kwargs) -> SeachatApp:
    store = Store(home / "conversations.sqlite3")
    return SeachatApp(store, model, LoadOptions(n_ctx=n_ctx, n_threads=2), **kwargs)


async def wait_for(pilot: Pilot, condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def wait_model(pilot: Pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.runtime is not None, 60, "the model to load")
    await pilot.pause()


def chat(app: SeachatApp) -> ChatScreen:
    assert app.chat is not None
    return app.chat


async def wait_answer(pilot: Pilot, timeout: float = 120.0) -> None:
    screen = chat(pilot.app)
    await wait_for(
        pilot,
        lambda: not screen.generating and screen.streaming_view is None,
        timeout,
        "the answer to finish",
    )
    await pilot.pause()


async def send(pilot: Pilot, text: str) -> None:
    box = pilot.app.screen.query_one(ChatInput)
    box.focus()
    box.text = text
    box.move_cursor(box.document.end)
    await pilot.press("enter")
    await pilot.pause()


def views(app: SeachatApp) -> list[MessageView]:
    return list(chat(app).query(MessageView))


def shown_text(view: MessageView) -> str:
    """What the message body currently holds (Markdown source or plain text)."""
    from textual.widgets import Markdown, Static

    body = view.query_one(".message-body")
    if isinstance(body, Markdown):
        return body.source
    assert isinstance(body, Static)
    return str(body.content)
