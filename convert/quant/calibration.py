"""Calibration text for the importance matrix, balanced by tokens, not bytes.

A byte-balanced mix is an English-heavy mix in disguise for some scripts and a rare-script
heavy one for others: the same sentence is 0.2 tokens per character in English and 0.5 in
Khmer or Lao (Gemma 3's tokenizer). What the importance matrix weighs is activation rows, one
per token, so each language is tokenized with the model's own tokenizer and trimmed until it
holds its share of the tokens. A profile's [calibration.mix] gives the shares.

Text sources: a directory of `<language>.txt` files (one per language; the stem is the
language name the mix uses) or one file. `chat.txt` is special: conversations (blank-line
separated, lines `user: ...` / `assistant: ...`) rendered with the model's own chat template
when the GGUF has one, so the chat-format control tokens get activations too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from seachat.convert.errors import UserError
from seachat.convert.llama.core import Model

CHAT_STEM = "chat"


def shipped_calibration_dir() -> Path:
    return Path(str(resources.files("seachat.convert") / "data" / "calibration"))


def shipped_eval_dir() -> Path:
    return Path(str(resources.files("seachat.convert") / "data" / "eval"))


def read_text_sources(path: str | Path | None) -> dict[str, str]:
    """language -> text, from a directory of .txt files or one file (None: shipped text)."""
    path = Path(path) if path is not None else shipped_calibration_dir()
    if path.is_dir():
        files = sorted(p for p in path.glob("*.txt") if p.is_file())
        if not files:
            raise UserError(f"{path}: no .txt files; put one <language>.txt per language there")
    elif path.is_file():
        files = [path]
    else:
        raise UserError(f"{path}: no such calibration file or directory")
    out = read_language_files(files)
    if not out:
        raise UserError(f"{path}: the calibration text is empty")
    return out


def read_language_files(files: Sequence[Path]) -> dict[str, str]:
    """language (file stem) -> text, for the files that hold any; one-line error on bad UTF-8."""
    out: dict[str, str] = {}
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{f}: not UTF-8 text; save it as UTF-8") from None
        if text.strip():
            out[f.stem] = text
    return out


def parse_chat(text: str) -> list[list[dict[str, str]]]:
    """Blank-line separated conversations of `role: content` lines (continuation lines are
    appended to the previous turn)."""
    conversations: list[list[dict[str, str]]] = []
    current: list[dict[str, str]] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            if current:
                conversations.append(current)
                current = []
            continue
        role, sep, content = line.partition(":")
        if sep and role.strip().lower() in ("user", "assistant", "system"):
            current.append({"role": role.strip().lower(), "content": content.strip()})
        elif current:
            current[-1]["content"] += "\n" + line.strip()
    if current:
        conversations.append(current)
    return conversations


def render_chat(
    conversations: list[list[dict[str, str]]], template: str | None, bos: str, eos: str
) -> str:
    """Render with the model's Jinja chat template; plain `User:`/`Assistant:` text when the
    model has none or the template fails (calibration must not depend on a template quirk)."""
    if template:
        try:
            import jinja2
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(message: str) -> None:
                raise jinja2.TemplateError(message)

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = raise_exception
            tpl = env.from_string(template)
            parts = []
            for conv in conversations:
                msgs = conv
                if msgs and msgs[0]["role"] == "system" and "system" not in template:
                    msgs = msgs[1:]
                parts.append(
                    tpl.render(
                        messages=msgs, add_generation_prompt=False, bos_token="", eos_token=eos
                    )
                )
            return "\n".join(parts)
        except Exception:  # noqa: BLE001 - any template problem: fall back to plain turns
            pass
    lines = []
    for conv in conversations:
        for turn in conv:
            lines.append(f"{turn['role'].capitalize()}: {turn['content']}")
        lines.append("")
    return "\n".join(lines)


@dataclass
class CalibrationSet:
    chunks: list[list[int]]
    tokens: dict[str, int]  # tokens used per language
    available: dict[str, int]  # tokens each language had
    limited_by: str | None = None  # the language whose length capped the total
    notes: list[str] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return sum(len(c) for c in self.chunks)

    def describe(self) -> str:
        shares = ", ".join(f"{k}={v}" for k, v in sorted(self.tokens.items()))
        return f"seachat token-balanced calibration ({self.n_tokens} tokens: {shares})"


def _split_even(tokens: list[int], piece: int) -> list[list[int]]:
    if not tokens:
        return []
    n = math.ceil(len(tokens) / piece)
    size = math.ceil(len(tokens) / n)
    return [tokens[i : i + size] for i in range(0, len(tokens), size)]


def build_calibration(
    model: Model,
    texts: dict[str, str],
    *,
    mix: dict[str, float] | None,
    total_tokens: int,
    chunk_size: int = 512,
    strict_mix: bool = True,
    min_tokens: int = 64,
) -> CalibrationSet:
    """Tokenize every language, give each its share of `total_tokens` (fewer when a language
    runs out: the total shrinks so the shares hold), cut into chunks of at most chunk_size
    tokens, each starting with BOS (when the model's tokenizer adds one, as llama-imatrix does)."""
    notes: list[str] = []
    weights: dict[str, float] = {}
    if mix:
        missing = [k for k, w in mix.items() if w > 0 and k not in texts]
        if missing and strict_mix:
            raise UserError(
                f"calibration text lacks {', '.join(missing)} named in the profile's mix; available: {', '.join(sorted(texts))}"
            )
        if missing:
            notes.append(f"not in the calibration text, skipped: {', '.join(missing)}")
        for k in texts:
            if k in mix:
                weights[k] = mix[k]
            elif not strict_mix:
                weights[k] = 1.0
                notes.append(f"{k}: not in the profile's mix, weight 1")
    else:
        weights = dict.fromkeys(texts, 1.0)
    weights = {k: w for k, w in weights.items() if w > 0}
    if not weights:
        raise UserError("the calibration mix selects no text")

    streams: dict[str, list[int]] = {}
    template = model.meta("tokenizer.chat_template")
    bos_piece = ""
    eos_piece = ""
    for lang in sorted(weights):
        text = texts[lang]
        if lang == CHAT_STEM:
            text = render_chat(parse_chat(text), template, bos_piece, eos_piece)
            toks = model.tokenize(text, add_special=False, parse_special=True)
        else:
            toks = model.tokenize(text, add_special=False, parse_special=False)
        while toks and toks[0] == model.bos:
            toks = toks[1:]
        if len(toks) < min_tokens:
            raise UserError(
                f"calibration text for {lang} has only {len(toks)} tokens; give at least {min_tokens}"
            )
        streams[lang] = toks

    total_w = sum(weights.values())
    shares = {k: w / total_w for k, w in weights.items()}
    cap = {k: len(streams[k]) / shares[k] for k in streams}
    limited_by = min(cap, key=cap.get)
    total = min(total_tokens, int(cap[limited_by]))
    if total < total_tokens:
        notes.append(
            f"{limited_by} has {len(streams[limited_by])} tokens: total cut to {total} to keep the shares"
        )
    else:
        limited_by = None
    chunks: list[list[int]] = []
    used: dict[str, int] = {}
    for lang in sorted(streams):
        quota = int(shares[lang] * total)
        toks = streams[lang][:quota]
        used[lang] = len(toks)
        lead = [model.bos] if model.add_bos else []
        for piece in _split_even(toks, chunk_size - len(lead)):
            chunks.append([*lead, *piece])
    return CalibrationSet(chunks, used, {k: len(v) for k, v in streams.items()}, limited_by, notes)
