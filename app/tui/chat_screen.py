"""The chat view: messages, input, status bar.

Generation runs in a thread worker. The worker never waits for the UI: it appends text to
the streaming message's queue, and a one-shot timer on the UI thread, re-armed after each
update, moves queued text into the Markdown stream (which re-parses only the last block). The
delay before the next update comes from FlushPacer (pacing.py): between 2 and 20 updates a
second, spaced so the UI's own CPU time stays a small share of one core. So a slow terminal
cannot slow the model, and the UI stays responsive while the model runs.

The app owns the store and the model: it hands them to the screen (the store when creating
it, the model through `use_runtime`), and the screen tells the app about changes with
messages (`ConversationChanged`).
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message as TextualMessage
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState

from seachat.app.chat.runtime import Runtime
from seachat.app.chat.session import ChatSession, ChatSettings, TurnResult
from seachat.app.chat.store import Message, Store
from seachat.app.tui.pacing import FlushPacer
from seachat.app.tui.widgets import ChatInput, MessageView, StatusBar
from seachat.convert.errors import UserError


class ChatScreen(Screen):
    AUTO_FOCUS = "ChatInput"  # typing goes to the input, not to the (focusable) message list
    BINDINGS = [
        Binding("escape", "stop", "Stop", show=True),
        Binding("ctrl+r", "regenerate", "Regenerate", priority=True),
        Binding("ctrl+y", "copy_last", "Copy", priority=True),
        Binding("ctrl+n", "app.new_chat", "New", priority=True),
        Binding("f2,ctrl+o", "app.conversations", "Chats", priority=True),
        Binding("f3,ctrl+t", "app.pick_model", "Model", priority=True),
        Binding("f4,ctrl+s", "app.settings", "Settings", priority=True),
        Binding("f1", "app.help", "Help", priority=True),
        Binding("pageup", "scroll_messages(-1)", "Scroll up", show=False, priority=True),
        Binding("pagedown", "scroll_messages(1)", "Scroll down", show=False, priority=True),
    ]

    class ConversationChanged(TextualMessage):
        """Another conversation is shown, or the shown one got its title (the app's title)."""

    class PromptReady(TextualMessage):
        """The prompt is built (n_tokens long, dropped old messages left out); evaluation starts."""

        def __init__(self, n_tokens: int, dropped: int) -> None:
            super().__init__()
            self.n_tokens = n_tokens
            self.dropped = dropped

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.runtime: Runtime | None = None
        self.session: ChatSession | None = None
        self.pending_settings = ChatSettings()
        self.streaming_view: MessageView | None = None
        self.editing: Message | None = None
        self._worker: Worker | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="notice", markup=False)
        yield VerticalScroll(id="messages")
        yield Static("", id="editing-hint", markup=False)
        yield ChatInput(id="input")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#notice").display = False
        self.query_one("#editing-hint").display = False
        self._pacer = FlushPacer()
        self._awaiting_first_text = False
        self._flush_timer: Timer | None = None
        self.query_one(ChatInput).focus()

    # -- helpers ----------------------------------------------------------------------------
    def focus_input(self) -> None:
        self.query_one(ChatInput).focus()

    @property
    def generating(self) -> bool:
        return self._worker is not None and self._worker.state in (
            WorkerState.PENDING,
            WorkerState.RUNNING,
        )

    def show_notice(self, text: str) -> None:
        notice = self.query_one("#notice", Static)
        notice.update(text)
        notice.display = bool(text)

    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    def refresh_status(self) -> None:
        rt = self.runtime
        bar = self.status()
        if rt is None:
            bar.model = "no model"
            bar.backend = bar.context = bar.speed = bar.prompt_speed = ""
            return
        stats = rt.last_stats
        bar.model = rt.model_name
        bar.backend = rt.backend.label
        bar.context = f"ctx {stats.context_used}/{rt.n_ctx}"
        if stats.gen_tokens:
            bar.speed = f"{stats.gen_tps:.1f} tok/s"
            bar.prompt_speed = f"{stats.prompt_tps:.0f} tok/s"

    def template_notice(self) -> str:
        """Why the model's answers may be poor (no usable chat template), or empty."""
        return (self.runtime.template.notice or "") if self.runtime is not None else ""

    def use_runtime(self, runtime: Runtime) -> None:
        """A model finished loading: chat with it from now on."""
        self.runtime = runtime
        if self.session is not None:
            self.session.runtime = runtime
        self.status().state = ""
        self.show_notice(self.template_notice())
        self.refresh_status()

    def model_name(self) -> str:
        rt = self.runtime
        return rt.model_name if rt is not None else ""

    # -- conversations ------------------------------------------------------------------
    async def load_session(self, session: ChatSession | None) -> None:
        """Show `session` (None: an empty new chat)."""
        if self.generating:
            self.action_stop()
        self.session = session
        self.editing = None
        self._set_editing_hint()
        container = self.query_one("#messages", VerticalScroll)
        await container.remove_children()
        if session is not None:
            views = [MessageView(m, session.stats_model(m)) for m in session.messages]
            if views:
                await container.mount_all(views)
            self.pending_settings = session.settings
        else:
            self.pending_settings = ChatSettings()
        # Anchored: stays at the newest message while Markdown lays out and answers stream
        # in, until the user scrolls up (scrolling back down re-anchors).
        container.anchor()
        self.show_notice(self.template_notice())
        self.refresh_status()
        self.post_message(self.ConversationChanged())

    def _ensure_session(self) -> ChatSession:
        if self.session is None:
            conv = self.store.create_conversation(
                model=self.model_name(),
                system_prompt=self.pending_settings.system_prompt,
                settings=self.pending_settings.to_dict(),
            )
            self.session = ChatSession(self.store, self.runtime, conv)
        return self.session

    # -- sending ------------------------------------------------------------------------
    @on(ChatInput.EditLast)
    def on_edit_last(self, event: ChatInput.EditLast) -> None:
        self.action_edit_last()

    @on(ChatInput.Submitted)
    async def on_submit(self, event: ChatInput.Submitted) -> None:
        if self.generating:
            self.notify("Still answering — press Esc to stop first.", severity="warning")
            return
        if self.runtime is None:
            self.notify("No model loaded: press F3 to pick one.", severity="error")
            return
        text = event.text
        session = self._ensure_session()
        session.runtime = self.runtime
        if self.editing is not None:
            await self._remove_views_from(self.editing.position)
            session.truncate_from(self.editing)
            self.editing = None
            self._set_editing_hint()
        self.query_one(ChatInput).clear()
        msg = session.add_user_message(text)
        await self.query_one("#messages").mount(MessageView(msg))
        self.post_message(self.ConversationChanged())  # the first message names the chat
        await self._start_answer()

    async def _start_answer(self) -> None:
        session = self.session
        assert session is not None
        answer = session.begin_answer()
        view = MessageView(answer, self.model_name())
        await self.query_one("#messages").mount(view)
        view.start_stream()
        self.streaming_view = view
        self._awaiting_first_text = True
        self._schedule_flush(self._pacer.start())
        self.query_one("#messages", VerticalScroll).anchor()
        bar = self.status()
        bar.state = "thinking…"
        bar.speed = bar.prompt_speed = ""
        self._worker = self._generate(session, answer, view)

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def _generate(self, session: ChatSession, answer: Message, view: MessageView) -> TurnResult:
        def prompt_ready(n_tokens: int, dropped: int) -> None:
            # post_message is thread-safe and never waits for the UI (call_from_thread would,
            # and could deadlock with a UI thread that is closing the model).
            self.post_message(self.PromptReady(n_tokens, dropped))

        return session.generate(answer, view.push, prompt_ready)

    def on_chat_screen_prompt_ready(self, event: ChatScreen.PromptReady) -> None:
        self.status().state = f"reading {event.n_tokens} tokens…"
        if event.dropped and self.runtime is not None:
            self.show_notice(
                f"The conversation is longer than the model's context ({self.runtime.n_ctx} tokens): "
                f"the {event.dropped} oldest message(s) were left out of what the model sees."
            )

    def _schedule_flush(self, delay: float) -> None:
        self._flush_timer = self.set_timer(delay, self._paced_flush)

    def _cancel_flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None

    async def _paced_flush(self) -> None:
        self._flush_timer = None
        if self.streaming_view is None:
            return
        changed = await self._flush()
        if self.streaming_view is None:
            return
        if not changed and self._awaiting_first_text:
            # Still in prompt evaluation: poll at the fastest rate so the first words appear
            # as soon as they exist, and start measuring the UI's cost from the first update
            # (mounting the new message is not a streaming cost).
            self._schedule_flush(self._pacer.start())
            return
        self._awaiting_first_text = False
        self._schedule_flush(self._pacer.next_interval())

    async def _flush(self) -> bool:
        view = self.streaming_view
        if view is None:
            return False
        if not await view.flush():
            return False
        self.status().state = "answering…"
        rt = self.runtime
        if rt is not None:
            st = rt.last_stats
            self.status().context = f"ctx {st.prompt_tokens + st.gen_tokens}/{rt.n_ctx}"
        return True

    async def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self._worker or event.state not in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            return
        view = self.streaming_view
        self._cancel_flush()
        if view is not None and view.is_attached:
            await view.end_stream()
            # The stored text is the truth (the last held-back cluster arrives at the end).
            if view.is_attached:
                view.set_body(view.message.content)
        self.streaming_view = None
        self.status().state = ""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            text = (
                str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
            )
            self.notify(text, severity="error", timeout=10)
        elif event.state == WorkerState.SUCCESS:
            result: TurnResult = event.worker.result  # type: ignore[assignment]
            if result.stats.stop_reason == "stopped":
                self.notify("Stopped. The partial answer is kept.", timeout=3)
            elif result.stats.stop_reason == "context":
                self.notify(
                    "The context window is full; start a new chat or raise --ctx.",
                    severity="warning",
                )
        self.refresh_status()

    # -- actions ------------------------------------------------------------------------
    def action_scroll_messages(self, direction: int) -> None:
        container = self.query_one("#messages", VerticalScroll)
        if direction < 0:
            container.scroll_page_up(animate=False)
        else:
            container.scroll_page_down(animate=False)

    def action_stop(self) -> None:
        if self.generating and self.session is not None:
            self.session.stop()
            self.status().state = "stopping…"
            return
        if self.editing is not None:
            self.editing = None
            self.query_one(ChatInput).clear()
            self._set_editing_hint()

    async def action_regenerate(self) -> None:
        if self.generating or self.session is None:
            return
        if self.runtime is None:
            self.notify("No model loaded: press F3 to pick one.", severity="error")
            return
        last = self.session.messages[-1] if self.session.messages else None
        if last is not None and last.role == "assistant":
            await self._remove_views_from(last.position)
        if not self.session.prepare_regenerate():
            self.notify("Nothing to regenerate yet.")
            return
        self.session.runtime = self.runtime
        await self._start_answer()

    def action_edit_last(self) -> None:
        if self.session is None:
            return
        msg = self.session.last_user_message()
        if msg is not None:
            self.begin_edit(msg)

    def begin_edit(self, msg: Message) -> None:
        if self.generating:
            self.notify("Stop the answer first (Esc).", severity="warning")
            return
        self.editing = msg
        box = self.query_one(ChatInput)
        box.text = msg.content
        box.move_cursor(box.document.end)
        box.focus()
        self._set_editing_hint()

    def _set_editing_hint(self) -> None:
        hint = self.query_one("#editing-hint", Static)
        if self.editing is None:
            hint.display = False
        else:
            hint.update(
                "Editing an earlier message: Enter resends it and drops the answers after it · Esc cancels"
            )
            hint.display = True

    def action_copy_last(self) -> None:
        if self.session is None:
            return
        msg = next((m for m in reversed(self.session.messages) if m.role == "assistant"), None)
        if msg is not None:
            self.copy_text(msg.content)

    def copy_text(self, text: str) -> None:
        self.app.copy_to_clipboard(text)
        self.notify("Copied to the clipboard.", timeout=2)

    @on(MessageView.Action)
    async def on_message_action(self, event: MessageView.Action) -> None:
        msg = event.view.message
        if event.action == "copy":
            self.copy_text(msg.content)
        elif event.action == "edit":
            if msg.role == "user":
                self.begin_edit(msg)
            else:
                self.notify("Only your own messages can be edited; r regenerates an answer.")
        elif event.action == "regenerate":
            if self.session is None or self.generating:
                return
            if msg.role == "assistant":
                await self._remove_views_from(msg.position)
                self.session.truncate_from(msg)
                self.session.runtime = self.runtime
                if self.session.messages and self.session.messages[-1].role == "user":
                    await self._start_answer()
            else:
                await self._remove_views_from(msg.position + 1)
                self.session.truncate_from_after(msg)
                self.session.runtime = self.runtime
                await self._start_answer()

    async def _remove_views_from(self, position: int) -> None:
        for view in list(self.query(MessageView)):
            if view.message.position >= position:
                await view.remove()
