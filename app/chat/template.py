"""Chat templates: the model's own (GGUF `tokenizer.chat_template`) or a fallback, rendered
so that what people type can never become a control token.

The template is rendered in Jinja's immutable sandbox (a GGUF is untrusted input) with each
message's content replaced by a unique placeholder. The rendered string is then cut at the
placeholders: template text is tokenized with special tokens recognised, message content as
plain text. A user who types ``<|im_start|>`` or ``<start_of_turn>`` gets those characters,
not a forged turn.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Private-use code points: no tokenizer produces them from a chat template's own text.
_PLACEHOLDER = "\ue000seachat-content-{}\ue001"
_PLACEHOLDER_RE = re.compile("\ue000seachat-content-(\\d+)\ue001")

GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- set ns = namespace(system='') -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{%- set ns.system = m['content'] -%}"
    "{%- else -%}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + '\n' }}"
    "{%- if m['role'] == 'user' and ns.system -%}{{ ns.system + '\n\n' }}{%- set ns.system = '' -%}{%- endif -%}"
    "{{ m['content'] }}{{ '<end_of_turn>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

CHATML_TEMPLATE = (
    "{%- for m in messages -%}"
    "{{ '<|im_start|>' + m['role'] + '\n' }}{{ m['content'] }}{{ '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)

LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for m in messages -%}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' }}{{ m['content'] }}{{ '<|eot_id|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif -%}"
)

# For models with no turn tokens at all: a plain transcript; generation stops at the next
# speaker label.
PLAIN_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{{ m['content'] }}{{ '\n\n' }}"
    "{%- elif m['role'] == 'user' -%}{{ 'User: ' }}{{ m['content'] }}{{ '\n' }}"
    "{%- else -%}{{ 'Assistant: ' }}{{ m['content'] }}{{ '\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}"
)
PLAIN_STOP = ("\nUser:", "\nAssistant:")


class TemplateError(ValueError):
    """The model's chat template could not be rendered."""


@dataclass(frozen=True)
class Piece:
    """A run of prompt text; `special` says whether control tokens may be recognised in it."""

    text: str
    special: bool


@dataclass
class ChatTemplate:
    source: str
    origin: str  # "gguf", or "fallback:<format>"
    bos_token: str = ""
    eos_token: str = ""
    stop_strings: tuple[str, ...] = ()

    @property
    def is_fallback(self) -> bool:
        return self.origin != "gguf"

    @property
    def notice(self) -> str | None:
        """What the UI tells the user when the model brought no template."""
        if not self.is_fallback:
            return None
        fmt = self.origin.split(":", 1)[1]
        return (
            f"This model has no chat template (tokenizer.chat_template); "
            f"using seachat's {fmt} format. Answers may be worse than with the model's own template."
        )

    def render_pieces(
        self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True
    ) -> list[Piece]:
        """The prompt as template pieces (special=True) and content pieces (special=False)."""
        contents = [str(m.get("content", "")) for m in messages]
        shadow = [{**m, "content": _PLACEHOLDER.format(i)} for i, m in enumerate(messages)]
        try:
            rendered = _compile(self.source).render(
                messages=shadow,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except jinja2.TemplateError as exc:
            raise TemplateError(f"chat template failed: {exc}") from exc
        pieces: list[Piece] = []
        pos = 0
        for m in _PLACEHOLDER_RE.finditer(rendered):
            if m.start() > pos:
                pieces.append(Piece(rendered[pos : m.start()], True))
            content = contents[int(m.group(1))]
            if content:
                pieces.append(Piece(content, False))
            pos = m.end()
        if pos < len(rendered):
            pieces.append(Piece(rendered[pos:], True))
        return pieces

    def render_text(
        self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        return "".join(p.text for p in self.render_pieces(messages, add_generation_prompt))


def _raise(message: str) -> None:
    raise TemplateError(message)


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


_env: ImmutableSandboxedEnvironment | None = None
_compiled: dict[str, jinja2.Template] = {}


def _compile(source: str) -> jinja2.Template:
    global _env
    if _env is None:
        # The same settings Hugging Face uses for chat templates.
        _env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        _env.filters["tojson"] = _tojson
        _env.globals["raise_exception"] = _raise
        _env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    tpl = _compiled.get(source)
    if tpl is None:
        try:
            tpl = _env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"chat template has a syntax error: {exc}") from exc
        _compiled[source] = tpl
    return tpl


def choose_template(
    gguf_template: str | None,
    architecture: str,
    bos_token: str,
    eos_token: str,
    is_control_token: Callable[[str], bool],
) -> ChatTemplate:
    """The model's template when it has one that compiles; otherwise the best-fitting fallback."""
    if gguf_template:
        try:
            _compile(gguf_template)
            return ChatTemplate(gguf_template, "gguf", bos_token, eos_token)
        except TemplateError:
            pass
    if architecture.startswith("gemma") or is_control_token("<start_of_turn>"):
        return ChatTemplate(GEMMA_TEMPLATE, "fallback:Gemma", bos_token, eos_token)
    if is_control_token("<|im_start|>"):
        return ChatTemplate(CHATML_TEMPLATE, "fallback:ChatML", bos_token, eos_token)
    if is_control_token("<|start_header_id|>"):
        return ChatTemplate(LLAMA3_TEMPLATE, "fallback:Llama 3", bos_token, eos_token)
    return ChatTemplate(
        PLAIN_TEMPLATE, "fallback:plain transcript", bos_token, eos_token, PLAIN_STOP
    )
