"""Special-token ids, add-BOS/EOS flags and the chat template of a checkpoint.

gguf-py's SpecialVocab does this by parsing tokenizer.json a second time (a second of work and
~250 MB on Gemma's 262k vocabulary) and only looks special tokens up among added tokens. We
read from the tokenizer data already parsed, look tokens up in the whole vocabulary, and follow
transformers' precedence: tokenizer_config.json first, config.json ids as the fallback, the
fast tokenizer's post-processor for whether BOS/EOS are added.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

TOKEN_KINDS = ("bos", "eos", "unk", "sep", "pad", "cls", "mask")
_WRITER_METHOD = {
    "bos": "add_bos_token_id",
    "eos": "add_eos_token_id",
    "unk": "add_unk_token_id",
    "sep": "add_sep_token_id",
    "pad": "add_pad_token_id",
    "cls": "add_cls_token_id",
    "mask": "add_mask_token_id",
}


@dataclass
class SpecialTokens:
    ids: dict[str, int] = field(default_factory=dict)
    add_bos: bool | None = None
    add_eos: bool | None = None
    chat_template: str | list[dict[str, str]] | None = None

    def add_to_writer(self, writer: gguf.GGUFWriter) -> None:
        for kind, token_id in self.ids.items():
            getattr(writer, _WRITER_METHOD[kind])(token_id)
        if self.add_bos is not None:
            writer.add_add_bos_token(self.add_bos)
        if self.add_eos is not None:
            writer.add_add_eos_token(self.add_eos)
        if self.chat_template:
            writer.add_chat_template(self.chat_template)


def _token_text(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Mapping) and isinstance(entry.get("content"), str):
        return entry["content"]
    return None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _template_flags(
    post_processor: Mapping[str, Any] | None, bos: str | None, eos: str | None
) -> tuple[bool | None, bool | None]:
    """BOS/EOS flags from a TemplateProcessing post-processor's single-sequence template."""
    if not post_processor:
        return None, None
    steps = (
        post_processor.get("processors")
        if post_processor.get("type") == "Sequence"
        else [post_processor]
    )
    for step in steps or []:
        if step.get("type") == "TemplateProcessing":
            single = step.get("single") or []
            first = single[0].get("SpecialToken", {}).get("id") if single else None
            last = single[-1].get("SpecialToken", {}).get("id") if single else None
            return (first is not None and first == bos), (
                last is not None and last == eos and len(single) > 1
            )
        if step.get("type") in ("RobertaProcessing", "BertProcessing"):
            return True, True
    return None, None


def read_special_tokens(
    model_dir: Path,
    token_id: Callable[[str], int | None],
    post_processor: Mapping[str, Any] | None,
    n_vocab: int,
    default_add_bos: bool | None,
) -> SpecialTokens:
    """`token_id` finds a token's id by its text over the whole vocabulary (added tokens
    included), or None."""
    tok_cfg = _read_json(model_dir / "tokenizer_config.json")
    model_cfg = _read_json(model_dir / "config.json")
    result = SpecialTokens()
    texts: dict[str, str] = {}
    for kind in TOKEN_KINDS:
        text = _token_text(tok_cfg.get(f"{kind}_token"))
        found = token_id(text) if text is not None else None
        if text is not None and found is not None:
            texts[kind] = text
            result.ids[kind] = found
            continue
        fallback = model_cfg.get(f"{kind}_token_id")
        if fallback is None and isinstance(model_cfg.get("text_config"), dict):
            fallback = model_cfg["text_config"].get(f"{kind}_token_id")
        if isinstance(fallback, list):
            fallback = fallback[0] if fallback else None
        if isinstance(fallback, int) and 0 <= fallback < n_vocab:
            result.ids[kind] = fallback

    add_bos, add_eos = _template_flags(post_processor, texts.get("bos"), texts.get("eos"))
    if isinstance(tok_cfg.get("add_bos_token"), bool):
        add_bos = tok_cfg["add_bos_token"]
    if isinstance(tok_cfg.get("add_eos_token"), bool):
        add_eos = tok_cfg["add_eos_token"]
    result.add_bos = add_bos if add_bos is not None else default_add_bos
    result.add_eos = (
        add_eos if add_eos is not None else (False if result.add_bos is not None else None)
    )

    template = tok_cfg.get("chat_template")
    if template is None:
        jinja = model_dir / "chat_template.jinja"
        if jinja.is_file():
            template = jinja.read_text(encoding="utf-8")
        else:
            template = _read_json(model_dir / "chat_template.json").get("chat_template")
    if isinstance(template, (str, list)) and template:
        result.chat_template = template
    return result
