"""Widgets of the chat view: the input, a message, the status bar."""

from __future__ import annotations

import asyncio
import threading

from textual import events
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message as TextualMessage
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Markdown, Static, TextArea
from textual.widgets.markdown import MarkdownStream
from textual.widgets.text_area import Location

from seachat.app.chat.store import COMPLETE, INTERRUPTED, STOPPED, STREAMING, Message
from seachat.app.text.segment import next_boundary, previous_boundary, snap_to_boundary


class ChatInput(TextArea):
    """Multi-line input that moves and deletes by grapheme cluster.

    TextArea steps one code point at a time, which puts the cursor between a Thai consonant
    and its vowel mark or inside a Khmer subscript stack, and backspace would leave a mark
    hanging on the previous letter. Here every step lands on a cluster boundary.
    """

    # Shown in the footer; the keys themselves are handled in `_on_key`, in order with the
    # typed text. (As priority bindings they ran at the App level ahead of characters still
    # queued for this widget, so a fast typist's or a paste's last letters missed the send.)
    BINDINGS = [
        Binding("enter", "submit", "Send", show=True),
        Binding("ctrl+j", "newline", "New line", show=False),
    ]
    _KEY_ACTIONS = {
        "enter": "submit",
        "ctrl+j": "newline",
        "shift+enter": "newline",
        "alt+enter": "newline",
    }

    class EditLast(TextualMessage):
        """Up in an empty input: edit the last message (as in Slack or a shell)."""

    class Submitted(TextualMessage):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, **kwargs) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus", **kwargs)

    def action_submit(self) -> None:
        text = self.text
        if text.strip():
            self.post_message(self.Submitted(text))

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and not self.text:
            self.post_message(self.EditLast())
            return
        super().action_cursor_up(select)

    def action_newline(self) -> None:
        start, end = self.selection
        self._replace_via_keyboard("\n", start, end)

    # -- cluster-aware navigation --------------------------------------------------------
    def _line(self, row: int) -> str:
        try:
            return self.document[row]
        except IndexError:
            return ""

    def get_cursor_left_location(self) -> Location:
        row, col = self.cursor_location
        if col == 0:
            return super().get_cursor_left_location()
        return row, previous_boundary(self._line(row), col)

    def get_cursor_right_location(self) -> Location:
        row, col = self.cursor_location
        line = self._line(row)
        if col >= len(line):
            return super().get_cursor_right_location()
        return row, next_boundary(line, col)

    def get_cursor_up_location(self) -> Location:
        row, col = super().get_cursor_up_location()
        return row, snap_to_boundary(self._line(row), col)

    def get_cursor_down_location(self) -> Location:
        row, col = super().get_cursor_down_location()
        return row, snap_to_boundary(self._line(row), col)

    def clamp_visitable(self, location: Location) -> Location:
        row, col = super().clamp_visitable(location)
        return row, snap_to_boundary(self._line(row), col)

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "escape":  # let the screen stop generation / cancel an edit
            return
        action = self._KEY_ACTIONS.get(event.key)
        if action is not None:
            event.stop()
            event.prevent_default()
            getattr(self, f"action_{action}")()
            return
        await super()._on_key(event)


ROLE_LABEL = {"user": "You", "assistant": "Assistant", "system": "System"}
STATUS_LABEL = {
    STOPPED: "stopped",
    INTERRUPTED: "interrupted — the app closed while answering",
    STREAMING: "…",
    "error": "error",
}


class MessageView(Vertical, can_focus=True):
    """One message: a header line and its body (Markdown for the model, plain for people)."""

    BINDINGS = [
        Binding("c", "copy", "Copy"),
        Binding("e", "edit", "Edit & resend"),
        Binding("r", "regenerate", "Regenerate"),
    ]

    class Action(TextualMessage):
        def __init__(self, view: MessageView, action: str) -> None:
            super().__init__()
            self.view = view
            self.action = action

    def __init__(self, message: Message, model_name: str = "") -> None:
        classes = f"message {message.role}"
        super().__init__(classes=classes)
        self.message = message
        self.model_name = model_name
        self._stream: MarkdownStream | None = None
        self._pending: list[str] = []
        self._pending_lock = threading.Lock()

    def compose(self):
        yield Static(self._header_text(), classes="message-header", markup=False)
        if self.message.role == "assistant":
            yield Markdown(self.message.content, classes="message-body")
        else:
            yield Static(self.message.content, classes="message-body", markup=False)

    def _header_text(self) -> str:
        label = ROLE_LABEL.get(self.message.role, self.message.role)
        if self.message.role == "assistant" and self.model_name:
            label += f" · {self.model_name}"
        status = self.message.status
        if status != COMPLETE and status in STATUS_LABEL:
            label += f" · {STATUS_LABEL[status]}"
        return label

    def refresh_header(self) -> None:
        if not self.is_attached:
            return
        self.query_one(".message-header", Static).update(self._header_text())
        self.set_class(self.message.status in (STOPPED, INTERRUPTED, "error"), "incomplete")

    def on_mount(self) -> None:
        self.set_class(self.message.status in (STOPPED, INTERRUPTED, "error"), "incomplete")

    # -- streaming (text arrives from the worker thread) ---------------------------------
    def start_stream(self) -> None:
        self._stream = Markdown.get_stream(self.query_one(Markdown))

    def push(self, text: str) -> None:
        """Thread-safe: queue text; `flush` (UI thread, on a timer) renders it."""
        with self._pending_lock:
            self._pending.append(text)

    async def flush(self) -> bool:
        with self._pending_lock:
            text = "".join(self._pending)
            self._pending.clear()
        if text and self._stream is not None:
            await self._stream.write(text)
            return True
        return False

    async def end_stream(self) -> None:
        await self.flush()
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        # Let the stream's last append land before re-rendering from the final text.
        await asyncio.sleep(0)
        self.refresh_header()

    def set_body(self, text: str) -> None:
        body = self.query_one(".message-body")
        if isinstance(body, (Markdown, Static)):
            body.update(text)

    def action_copy(self) -> None:
        self.post_message(self.Action(self, "copy"))

    def action_edit(self) -> None:
        self.post_message(self.Action(self, "edit"))

    def action_regenerate(self) -> None:
        self.post_message(self.Action(self, "regenerate"))


class StatusBar(Widget):
    """Model, backend, context use and speeds, on one line that fits any width.

    When the line is too long, the least useful details go first (prompt speed, then the
    model name is shortened), so tokens/s and context use stay visible at 80 columns. Each
    part is a reactive attribute: assigning one repaints the line, as does a resize.
    """

    SEPARATOR = " │ "

    state: reactive[str] = reactive("")
    model: reactive[str] = reactive("")
    backend: reactive[str] = reactive("")
    context: reactive[str] = reactive("")
    speed: reactive[str] = reactive("")
    prompt_speed: reactive[str] = reactive("")

    def __init__(self, **kwargs) -> None:
        super().__init__(markup=False, **kwargs)

    def render(self) -> str:
        return self.compose_line(self.size.width or 80)

    def compose_line(self, width: int) -> str:
        from rich.cells import cell_len

        from seachat.app.text.segment import graphemes

        room = max(width - 2, 10)  # padding
        speed = self.speed + (
            f" · prompt {self.prompt_speed}" if self.prompt_speed and self.speed else ""
        )
        model = self.model
        for attempt in range(4):
            parts = [p for p in (self.state, model, self.backend, self.context, speed) if p]
            line = self.SEPARATOR.join(parts)
            if cell_len(line) <= room:
                return line
            if attempt == 0:
                speed = self.speed
            elif attempt == 1 and model:
                over = cell_len(line) - room
                keep = max(8, cell_len(model) - over - 1)
                clusters, out = graphemes(model), ""
                for c in clusters:
                    if cell_len(out + c) > keep:
                        break
                    out += c
                model = out + "…"
            elif attempt == 2:
                model = ""
        return line
