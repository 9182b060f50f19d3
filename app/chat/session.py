"""One conversation between the UI and the runtime.

The UI never talks to llama.cpp or SQLite directly: it asks the session to send, stop,
regenerate or edit, and gets text back through a callback. The session decides what the
model sees (system prompt + as many recent turns as fit the context window) and makes sure
the store holds every message the moment it is complete.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from seachat.app.chat.runtime import GenerationStats, Runtime, SamplingParams
from seachat.app.chat.store import COMPLETE, ERROR, STOPPED, STREAMING, Conversation, Message, Store
from seachat.convert.errors import UserError

DRAFT_SAVE_SECONDS = 1.0  # how often a streaming answer is written to disk


@dataclass
class ChatSettings(SamplingParams):
    """Per-conversation generation settings (stored with the conversation): the sampling
    parameters, with the runtime's defaults, and a system prompt."""

    system_prompt: str = ""

    def sampling(self) -> SamplingParams:
        return SamplingParams(**{f.name: getattr(self, f.name) for f in fields(SamplingParams)})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("system_prompt")
        return d

    @classmethod
    def from_conversation(cls, conv: Conversation) -> ChatSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in conv.settings.items() if k in known and k != "system_prompt"}
        return cls(system_prompt=conv.system_prompt, **values)


@dataclass(frozen=True)
class Preset:
    name: str
    system_prompt: str


# Presets are instructions in the target language and in English: small models follow
# the English part more reliably, larger ones the native one.
PRESETS: tuple[Preset, ...] = (
    Preset("Default", ""),
    Preset("Answer in Thai", "ตอบเป็นภาษาไทยเสมอ Always answer in Thai."),
    Preset("Answer in Khmer", "សូមឆ្លើយជាភាសាខ្មែរជានិច្ច។ Always answer in Khmer."),
    Preset("Answer in Lao", "ຕອບເປັນພາສາລາວສະເໝີ. Always answer in Lao."),
    Preset("Answer in Burmese", "မြန်မာဘာသာဖြင့်သာ ဖြေပါ။ Always answer in Burmese."),
    Preset("Answer in Vietnamese", "Luôn trả lời bằng tiếng Việt. Always answer in Vietnamese."),
    Preset(
        "Answer in Indonesian", "Selalu jawab dalam bahasa Indonesia. Always answer in Indonesian."
    ),
    Preset("Answer in Arabic", "أجب دائمًا باللغة العربية. Always answer in Arabic."),
    Preset(
        "Translator",
        "Translate the user's message into English, then into Thai. Output only the translations.",
    ),
)


@dataclass
class TurnResult:
    message: Message
    stats: GenerationStats
    dropped_messages: int  # older messages left out of the prompt to fit the context


class ContextTooSmall(UserError):
    pass


class ChatSession:
    def __init__(self, store: Store, runtime: Runtime | None, conversation: Conversation) -> None:
        self.store = store
        self.runtime = runtime
        self.conversation = conversation
        self.settings = ChatSettings.from_conversation(conversation)
        self.messages: list[Message] = store.messages(conversation.id)
        self.stop_event = threading.Event()
        self.dropped_messages = 0
        self.generating = False

    # -- what the model sees --------------------------------------------------------------
    def history(self) -> list[dict[str, str]]:
        """Messages for the template; empty stopped answers are skipped."""
        out: list[dict[str, str]] = []
        if self.settings.system_prompt.strip():
            out.append({"role": "system", "content": self.settings.system_prompt})
        for m in self.messages:
            if m.role == "assistant" and not m.content.strip():
                continue
            out.append({"role": m.role, "content": m.content})
        return out

    def prompt_tokens(self) -> tuple[list[int], int]:
        """Tokens for the next answer and how many old messages were dropped to fit them."""
        rt = self._need_runtime()
        msgs = self.history()
        system = msgs[:1] if msgs and msgs[0]["role"] == "system" else []
        turns = msgs[len(system) :]
        reserve = max(16, min(self.settings.max_tokens or rt.n_ctx // 4, rt.n_ctx // 4))
        budget = rt.n_ctx - reserve
        dropped = 0
        while True:
            tokens = rt.tokenize_chat(system + turns)
            if len(tokens) <= budget:
                return tokens, dropped
            if len(turns) <= 1:
                raise ContextTooSmall(
                    f"the message needs {len(tokens)} tokens but the context holds {rt.n_ctx} "
                    f"with {reserve} kept for the answer; restart with a larger --ctx"
                )
            # Drop the oldest whole turn: a user message and the answers after it.
            cut = 1
            while cut < len(turns) - 1 and turns[cut]["role"] != "user":
                cut += 1
            dropped += cut
            turns = turns[cut:]

    def _need_runtime(self) -> Runtime:
        if self.runtime is None:
            raise UserError("no model is loaded; pick one with F3 (or ctrl+t)")
        return self.runtime

    # -- actions (called from the UI thread) ----------------------------------------------
    def add_user_message(self, text: str) -> Message:
        msg = self.store.add_message(self.conversation.id, "user", text)
        self.messages.append(msg)
        if len(self.messages) == 1 and self.conversation.title in ("New chat", ""):
            self.conversation.title = title_from(text)
            self.store.rename(self.conversation.id, self.conversation.title)
        return msg

    def begin_answer(self) -> Message:
        """The empty assistant message the answer streams into (committed at once)."""
        msg = self.store.add_message(self.conversation.id, "assistant", "", STREAMING)
        self.messages.append(msg)
        return msg

    def truncate_from(self, message: Message) -> None:
        """Forget `message` and everything after it (regenerate, edit-and-resend)."""
        self.store.delete_messages_from(self.conversation.id, message.position)
        self.messages = [m for m in self.messages if m.position < message.position]

    def truncate_from_after(self, message: Message) -> None:
        """Forget everything after `message` (regenerate the answer to a user message)."""
        self.store.delete_messages_from(self.conversation.id, message.position + 1)
        self.messages = [m for m in self.messages if m.position <= message.position]

    @staticmethod
    def stats_model(message: Message) -> str:
        """The model that wrote an answer, as recorded with it."""
        return str(message.stats.get("model", "")) if message.role == "assistant" else ""

    def last_user_message(self) -> Message | None:
        return next((m for m in reversed(self.messages) if m.role == "user"), None)

    def prepare_regenerate(self) -> bool:
        """Drop the last answer so it can be generated again; False if there is none."""
        if self.generating or not self.messages:
            return False
        last = self.messages[-1]
        if last.role == "assistant":
            self.truncate_from(last)
        return bool(self.messages) and self.messages[-1].role == "user"

    def stop(self) -> None:
        self.stop_event.set()

    def save_settings(self, settings: ChatSettings) -> None:
        self.settings = settings
        self.conversation.system_prompt = settings.system_prompt
        self.conversation.settings = settings.to_dict()
        self.store.update_conversation(
            self.conversation.id, system_prompt=settings.system_prompt, settings=settings.to_dict()
        )

    # -- generation (called from a worker thread) -----------------------------------------
    def generate(
        self,
        answer: Message,
        on_text: Callable[[str], None],
        on_prompt_ready: Callable[[int, int], None] | None = None,
    ) -> TurnResult:
        """Stream the answer into `answer`, calling `on_text` with each safe piece of text.

        Blocks; returns when the model finishes, the user stops it or an error occurs. The
        message in the store is final (complete / stopped / error) when this returns.
        """
        rt = self._need_runtime()
        self.stop_event.clear()
        self.generating = True
        parts: list[str] = []
        stats = GenerationStats()
        status = ERROR
        last_save = time.monotonic()
        try:
            history_backup = self.messages
            self.messages = [m for m in self.messages if m.id != answer.id]
            try:
                tokens, dropped = self.prompt_tokens()
            finally:
                self.messages = history_backup
            self.dropped_messages = dropped
            if on_prompt_ready is not None:
                on_prompt_ready(len(tokens), dropped)
            for piece in rt.stream(tokens, self.settings.sampling(), self.stop_event):
                parts.append(piece)
                on_text(piece)
                now = time.monotonic()
                if now - last_save >= DRAFT_SAVE_SECONDS:
                    self.store.update_message(answer.id, "".join(parts), STREAMING)
                    last_save = now
            stats = rt.last_stats
            status = STOPPED if stats.stop_reason == "stopped" else COMPLETE
        finally:
            answer.content = "".join(parts)
            answer.status = status
            answer.stats = {
                "prompt_tokens": stats.prompt_tokens,
                "gen_tokens": stats.gen_tokens,
                "gen_tps": round(stats.gen_tps, 2),
                "prompt_tps": round(stats.prompt_tps, 2),
                "stop_reason": stats.stop_reason,
                "model": rt.model_name,
            }
            self.store.update_message(answer.id, answer.content, status, answer.stats)
            self.generating = False
        return TurnResult(answer, stats, self.dropped_messages)


def title_from(text: str, limit: int = 48) -> str:
    """A conversation title from its first message: first line, cut at a cluster boundary."""
    from seachat.app.text.segment import graphemes

    line = " ".join(text.strip().splitlines()[0].split()) if text.strip() else ""
    clusters = graphemes(line)
    if len(clusters) <= limit:
        return line or "New chat"
    return "".join(clusters[:limit]).rstrip() + "…"
