"""The seachat Textual application: screens, model loading, conversations, themes.

The app owns the store and the model. Screens get what they read when they are created and
post messages for what the app must do or know (a conversation renamed, deleted, exported;
the open one changed); the app handles them in `on_<screen>_<message>` methods.
"""

from __future__ import annotations

import sys
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding

from seachat.app.chat.runtime import LoadOptions, Runtime
from seachat.app.chat.session import ChatSession
from seachat.app.chat.store import Store
from seachat.app.text import wrap as _wrap
from seachat.app.tui.chat_screen import ChatScreen
from seachat.app.tui.screens import (
    ConversationsScreen,
    HelpScreen,
    ModelPickerScreen,
    SettingsScreen,
    WelcomeScreen,
)
from seachat.convert.errors import UserError

THEME_PREFERENCE = "theme"
GIL_SWITCH_INTERVAL = 0.0002  # seconds
THEMES = ("textual-dark", "textual-light", "nord", "gruvbox", "tokyo-night", "solarized-light")


class SeachatApp(App):
    CSS_PATH = Path(__file__).parent / "seachat.tcss"
    TITLE = "seachat"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("f1", "help", "Help", show=False),
        Binding("f5", "next_theme", "Theme", show=False, priority=True),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        store: Store,
        model_path: Path | None,
        options: LoadOptions | None = None,
        models_dir: Path | None = None,
        extra_paths: tuple[Path, ...] = (),
        resume: int | None = None,
        export_dir: Path | None = None,
        welcome_problem: str = "",
    ) -> None:
        _wrap.install()  # script-aware widths and wrapping in Rich and Textual
        # The generation thread hands the GIL back and forth with llama.cpp several times per
        # token; with Python's default 5 ms switch interval each hand-off can wait for a
        # whole UI frame, costing 10-40% of generation speed. A short interval keeps the
        # worker fed while the UI renders.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        super().__init__()
        self.store = store
        self.model_path = model_path
        self.options = options or LoadOptions()
        from seachat.app.paths import models_dir as default_models_dir

        self.models_dir = models_dir or default_models_dir()
        self.extra_paths = extra_paths
        self.resume = resume
        self.export_dir = export_dir or Path.cwd()
        self.welcome_problem = welcome_problem
        self.runtime: Runtime | None = None
        self.chat: ChatScreen | None = None

    # -- start ------------------------------------------------------------------------------
    def on_mount(self) -> None:
        theme = self.store.get_preference(THEME_PREFERENCE)
        if theme and theme in self.available_themes:
            self.theme = theme
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self.model_path is None:
            self.push_screen(WelcomeScreen(self.models_dir, self.welcome_problem))
            return
        self.push_screen(self._new_chat_screen())
        self.call_after_refresh(self._open_initial)

    def _new_chat_screen(self) -> ChatScreen:
        self.chat = ChatScreen(self.store)
        return self.chat

    async def _open_initial(self) -> None:
        assert self.chat is not None
        session = None
        if self.resume is not None:
            conv = self.store.get_conversation(self.resume)
            if conv is not None:
                session = ChatSession(self.store, None, conv)
        await self.chat.load_session(session)
        self.load_model(self.model_path)

    def _remember_theme(self, theme) -> None:
        self.store.set_preference(THEME_PREFERENCE, theme.name)

    # -- model ------------------------------------------------------------------------------
    def load_model(self, path: Path | None) -> None:
        if path is None:
            return
        if self.chat is not None:
            self.chat.status().state = f"loading {path.name}…"
        self._load_worker(path)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load_worker(self, path: Path) -> None:
        try:
            runtime = Runtime(
                path,
                n_ctx=self.options.n_ctx,
                n_threads=self.options.n_threads,
                n_gpu_layers=self.options.n_gpu_layers,
            )
        except UserError as exc:
            self.call_from_thread(self._model_failed, str(exc))
            return
        self.call_from_thread(self._model_loaded, runtime)

    async def _model_loaded(self, runtime: Runtime) -> None:
        old, self.runtime = self.runtime, runtime
        if old is not None:
            old.close()
        self.model_path = runtime.path
        self.store.set_preference("last_model", str(runtime.path))
        chat = self.chat
        if chat is None:
            chat = self._new_chat_screen()
            await self.push_screen(chat)
            await chat.load_session(None)
        chat.use_runtime(runtime)
        if self.screen is chat and self.focused is None:
            chat.focus_input()

    def _model_failed(self, message: str) -> None:
        self.notify(message, severity="error", timeout=15)
        if self.chat is not None:
            self.chat.status().state = "no model loaded (F3 to pick one)"

    def on_chat_screen_conversation_changed(self, event: ChatScreen.ConversationChanged) -> None:
        self.refresh_title()

    def refresh_title(self) -> None:
        parts = ["seachat"]
        if self.chat is not None and self.chat.session is not None:
            parts.append(self.chat.session.conversation.title)
        self.title = " — ".join(parts)

    # -- actions ----------------------------------------------------------------------------
    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_next_theme(self) -> None:
        names = [t for t in THEMES if t in self.available_themes]
        i = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(i + 1) % len(names)]
        self.notify(f"Theme: {self.theme}", timeout=2)

    async def action_new_chat(self) -> None:
        if self.chat is not None:
            await self.chat.load_session(None)

    def action_conversations(self) -> None:
        async def opened(conversation_id: int | None) -> None:
            if conversation_id is None or self.chat is None:
                return
            conv = self.store.get_conversation(conversation_id)
            if conv is not None:
                await self.chat.load_session(ChatSession(self.store, self.runtime, conv))

        self.push_screen(ConversationsScreen(self.store), opened)

    def action_pick_model(self) -> None:
        from seachat.app.library.catalog import list_models

        models, broken = list_models(self.extra_paths, self.models_dir)
        if self.model_path is not None and all(
            m.path.resolve() != self.model_path.resolve() for m in models
        ):
            extra, _ = list_models([self.model_path], self.models_dir)
            models = [m for m in extra if m.path.resolve() == self.model_path.resolve()] + models

        def chosen(path: Path | None) -> None:
            if path is None:
                return
            if self.chat is not None and self.chat.generating:
                self.notify("Stop the answer first (Esc).", severity="warning")
                return
            if self.chat is None:
                chat = self._new_chat_screen()
                self.push_screen(chat)
                self.call_after_refresh(chat.load_session, None)
            self.load_model(path)

        self.push_screen(
            ModelPickerScreen(
                models, [(b.path, b.reason) for b in broken], self.models_dir, self.options.n_ctx
            ),
            chosen,
        )

    def action_settings(self) -> None:
        if self.chat is None:
            return
        chat = self.chat

        def saved(settings) -> None:
            if settings is None:
                return
            if chat.session is not None:
                chat.session.save_settings(settings)
            chat.pending_settings = settings
            self.notify("Settings saved for this conversation.", timeout=2)

        current = chat.session.settings if chat.session is not None else chat.pending_settings
        self.push_screen(SettingsScreen(current), saved)

    def _open_session(self, conversation_id: int) -> ChatSession | None:
        """The chat screen's session if it shows that conversation."""
        session = self.chat.session if self.chat is not None else None
        return (
            session if session is not None and session.conversation.id == conversation_id else None
        )

    def on_conversations_screen_renamed(self, event: ConversationsScreen.Renamed) -> None:
        session = self._open_session(event.conversation_id)
        if session is not None:
            session.conversation.title = event.title
            self.refresh_title()

    async def on_conversations_screen_deleted(self, event: ConversationsScreen.Deleted) -> None:
        if self.chat is not None and self._open_session(event.conversation_id) is not None:
            await self.chat.load_session(None)

    def on_conversations_screen_export_requested(
        self, event: ConversationsScreen.ExportRequested
    ) -> None:
        from seachat.app.chat.export import export

        conv = self.store.get_conversation(event.conversation_id)
        if conv is None:
            return
        messages = self.store.messages(event.conversation_id)
        try:
            path = export(conv, messages, self.export_dir, event.fmt)
        except OSError as exc:
            self.notify(
                f"{self.export_dir}: cannot write the export ({exc.strerror})", severity="error"
            )
            return
        self.notify(f"Exported to {path}", timeout=6)

    async def action_quit(self) -> None:
        if self.chat is not None and self.chat.session is not None:
            self.chat.session.stop()
        # llama.cpp must not be freed under a running decode: let the worker see the stop.
        for worker in list(self.workers):
            if worker.group == "generate":
                await worker.wait()
        self.exit()

    def on_unmount(self) -> None:
        if self.runtime is not None:
            self.runtime.close()
