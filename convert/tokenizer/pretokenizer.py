"""Which llama.cpp pre-tokenizer reproduces a byte-level BPE tokenizer.json's word splitting.

llama.cpp's own converter recognises pre-tokenizers by hashing the token IDs of one test string,
so any model it has not seen (most SEA fine-tunes with extended vocabularies) gets rejected or
mislabelled. We recognise the pre-tokenizer by what it *is*: first by its regular expressions,
then, when the regex is written differently, by behaviour — split a multilingual probe text with
the tokenizer's own pre-tokenizer and with each llama.cpp candidate (same regexes, evaluated
with the `regex` module), and take the candidate that splits identically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import regex

_CONTRACTIONS_ADAPTED = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_CONTRACTIONS_HF = "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"


@dataclass(frozen=True)
class PreTokenizer:
    """A llama.cpp pre-tokenizer (src/llama-vocab.cpp): its name and its split regexes."""

    name: str
    regexes: tuple[str, ...]


# Regexes as llama.cpp 0.3.36 applies them, in order.
CANDIDATES: tuple[PreTokenizer, ...] = (
    PreTokenizer(
        "llama-bpe",
        (
            _CONTRACTIONS_ADAPTED
            + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
    ),
    PreTokenizer(
        "qwen2",
        (
            _CONTRACTIONS_ADAPTED
            + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
    ),
    PreTokenizer(
        "qwen35",
        (
            _CONTRACTIONS_ADAPTED
            + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
    ),
    PreTokenizer("gpt-2", (_GPT2,)),
    PreTokenizer("smollm", (r"\p{N}", _GPT2)),
    PreTokenizer(
        "gpt-4o",
        (
            r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:"
            + _CONTRACTIONS_ADAPTED[3:]
            + r"?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:"
            + _CONTRACTIONS_ADAPTED[3:]
            + r"?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
    ),
    PreTokenizer(
        "tekken",
        (
            r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
            r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
            r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
    ),
)


def _canonical(pattern: str) -> str:
    return pattern.replace(_CONTRACTIONS_HF, _CONTRACTIONS_ADAPTED)


def split_with(regexes: Sequence[str], text: str) -> list[str]:
    """llama.cpp's unicode_regex_split: each regex splits every piece further, keeping the
    text between matches as pieces of their own."""
    pieces = [text]
    for pattern in regexes:
        compiled = regex.compile(pattern)
        out: list[str] = []
        for piece in pieces:
            pos = 0
            for m in compiled.finditer(piece):
                if m.start() > pos:
                    out.append(piece[pos : m.start()])
                if m.end() > m.start():
                    out.append(m.group())
                pos = m.end()
            if pos < len(piece):
                out.append(piece[pos:])
        pieces = out
    return pieces


def declared_regexes(pre_tokenizer: dict[str, Any] | None) -> list[str]:
    """The split regexes a tokenizer.json declares, in order (GPT-2's own last, when ByteLevel
    applies it)."""
    if not pre_tokenizer:
        return []
    steps = (
        pre_tokenizer.get("pretokenizers")
        if pre_tokenizer.get("type") == "Sequence"
        else [pre_tokenizer]
    )
    regexes: list[str] = []
    byte_level_regex = False
    for step in steps or []:
        kind = step.get("type")
        if kind == "Split":
            pattern = step.get("pattern", {})
            if "Regex" in pattern:
                regexes.append(_canonical(pattern["Regex"]))
            elif "String" in pattern:
                regexes.append(regex.escape(pattern["String"]))
        elif kind == "Digits":
            regexes.append(r"\p{N}" if step.get("individual_digits") else r"\p{N}+")
        elif kind == "ByteLevel" and step.get("use_regex", True):
            byte_level_regex = True
    if byte_level_regex:
        regexes.append(_GPT2)
    return regexes


def hf_split(tokenizer_json: dict[str, Any], texts: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Pre-tokenize with the tokenizer's own (Rust) normalizer and pre-tokenizer; returns each
    normalized text with its pieces as text (offsets undo the byte-level character mapping)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(json.dumps(tokenizer_json))
    out: list[tuple[str, list[str]]] = []
    for text in texts:
        normalized = tok.normalizer.normalize_str(text) if tok.normalizer else text
        pieces = [normalized[a:b] for _, (a, b) in tok.pre_tokenizer.pre_tokenize_str(normalized)]
        out.append((normalized, pieces))
    return out


def detect(tokenizer_json: dict[str, Any], probes: Sequence[str]) -> tuple[str | None, str]:
    """(llama.cpp pre-tokenizer name or None, how it was recognised)."""
    declared = declared_regexes(tokenizer_json.get("pre_tokenizer"))
    for cand in CANDIDATES:
        if tuple(declared) == cand.regexes:
            return cand.name, "regex"
    if tokenizer_json.get("pre_tokenizer") is None:
        return None, "no pre-tokenizer"
    expected = hf_split(tokenizer_json, probes)
    for cand in CANDIDATES:
        if all(split_with(cand.regexes, text) == pieces for text, pieces in expected):
            return cand.name, "behaviour"
    return None, "unrecognised"
