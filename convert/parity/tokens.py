"""Proof that the GGUF tokenizes exactly like the original tokenizer.

The reference is what `transformers` would use: the fast tokenizer (`tokenizers`, from
tokenizer.json) when the checkpoint ships one, otherwise SentencePiece on tokenizer.model with
Hugging Face's handling of added tokens. Both modes are compared like with like:
- "text": special-token text is just text (HF with encode_special_tokens, llama.cpp special=False)
- "special": special-token text becomes control tokens (HF default, llama.cpp special=True).
Both add BOS/EOS as the tokenizer's own post-processor / the GGUF's flags say.

The reference side needs no llama.cpp and no GGUF, so the converter runs it in a separate
process while the tensors are written (`reference_ids` is picklable for that reason).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from seachat.convert.tokenizer.vocab import AddedToken, Vocab

MODES = ("text", "special")

# Token texts that llama.cpp 0.3.36's loader always turns into control (end-of-generation)
# tokens, whatever the GGUF says (src/llama-vocab.cpp). Where the original treats one of them
# as ordinary added text, no GGUF can reproduce that: in "text" mode llama.cpp will not parse
# it. We compare against a reference that knows this, and report the tokens by name.
LLAMA_FORCED_CONTROL = frozenset(
    {
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<|return|>",
        "<|call|>",
        "<|flush|>",
        "<|calls|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "</s>",
        "<|eom_id|>",
        "<EOT>",
        "_<EOT>",
        "[EOT]",
        "[EOS]",
        "<|end_of_text|>",
        "<end_of_utterance>",
        "<eos>",
        "<turn|>",
        "<|tool_response>",
        "<\uff5cend\u2581of\u2581sentence\uff5c>",
        "[e~[",
    }
)


@dataclass(frozen=True)
class ReferenceSpec:
    """Everything the reference tokenizer needs, small and picklable."""

    model_dir: Path
    added: tuple[AddedToken, ...]
    bos: int | None
    eos: int | None
    add_bos: bool
    add_eos: bool
    forced_control: tuple[AddedToken, ...]
    # transformers parses its declared special tokens (bos/eos/unk/pad…) in special mode even
    # when they are SentencePiece control pieces rather than added tokens
    declared_special: tuple[AddedToken, ...] = ()

    @classmethod
    def from_vocab(cls, model_dir: Path, vocab: Vocab) -> ReferenceSpec:
        special = vocab.special
        ids = special.ids if special else {}
        forced = tuple(
            a for a in vocab.added if not a.special and a.content in LLAMA_FORCED_CONTROL
        )
        added_ids = {a.token_id for a in vocab.added}
        declared = tuple(
            AddedToken(vocab.tokens[i].decode("utf-8"), i, True)
            for i in sorted(set(ids.values()))
            if i not in added_ids and i < len(vocab.tokens)
        )
        return cls(
            model_dir=model_dir,
            added=tuple(vocab.added),
            bos=ids.get("bos"),
            eos=ids.get("eos"),
            add_bos=bool(special and special.add_bos),
            add_eos=bool(special and special.add_eos),
            forced_control=forced,
            declared_special=declared,
        )

    @property
    def name(self) -> str:
        if (self.model_dir / "tokenizer.json").is_file():
            return "tokenizers (tokenizer.json)"
        return "sentencepiece (tokenizer.model)"


class ReferenceTokenizer:
    """The original checkpoint's tokenizer, as transformers would run it."""

    def __init__(self, spec: ReferenceSpec) -> None:
        self.spec = spec
        self._fast = None
        self._sp = None
        tj = spec.model_dir / "tokenizer.json"
        if tj.is_file():
            from tokenizers import AddedToken as HFAddedToken
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_file(str(tj))
            if spec.forced_control:
                # re-registering an added token updates its flags in place (same id)
                self._fast.add_special_tokens(
                    [
                        HFAddedToken(a.content, special=True, normalized=False)
                        for a in spec.forced_control
                    ]
                )
        else:
            from sentencepiece import SentencePieceProcessor

            self._sp = SentencePieceProcessor(model_file=str(spec.model_dir / "tokenizer.model"))
            forced = {a.token_id for a in spec.forced_control}
            self._added = sorted(
                [
                    AddedToken(a.content, a.token_id, True) if a.token_id in forced else a
                    for a in spec.added
                ]
                + list(spec.declared_special),
                key=lambda a: -len(a.content),
            )
            cfg_path = spec.model_dir / "tokenizer_config.json"
            cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
            # transformers' LlamaTokenizer with legacy=True (its default) re-adds SentencePiece's
            # dummy prefix after every special token, as llama.cpp does.
            self._legacy = cfg.get("legacy", True) is not False

    def encode(self, text: str, parse_special: bool) -> list[int]:
        if self._fast is not None:
            self._fast.encode_special_tokens = not parse_special
            return list(self._fast.encode(text, add_special_tokens=True).ids)
        return self._encode_sp(text, parse_special)

    def _encode_sp(self, text: str, parse_special: bool) -> list[int]:
        assert self._sp is not None
        spec = self.spec
        splitters = [a for a in self._added if parse_special or not a.special]
        ids: list[int] = [spec.bos] if spec.add_bos and spec.bos is not None else []
        by_text = {a.content: a.token_id for a in splitters}
        if splitters:
            pattern = re.compile("(" + "|".join(re.escape(a.content) for a in splitters) + ")")
            parts = pattern.split(text)
        else:
            parts = [text]
        at_start = True
        for part in parts:
            if part in by_text:
                ids.append(by_text[part])
            elif part:
                if at_start or self._legacy:
                    ids.extend(self._sp.encode(part))
                else:
                    # legacy=False: no dummy prefix after a special token (transformers encodes
                    # "<unk>" + text and drops the "<unk>" pieces)
                    unk = self._sp.IdToPiece(self._sp.unk_id())
                    skip = len(self._sp.encode(unk))
                    ids.extend(self._sp.encode(unk + part)[skip:])
            else:
                continue
            at_start = False
        if spec.add_eos and spec.eos is not None:
            ids.append(spec.eos)
        return ids


def reference_ids(spec: ReferenceSpec, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
    """(text-mode ids, special-mode ids) for every text."""
    ref = ReferenceTokenizer(spec)
    return [(ref.encode(t, parse_special=False), ref.encode(t, parse_special=True)) for t in texts]


@dataclass
class Mismatch:
    label: str
    mode: str
    text: str
    reference: list[int]
    llama: list[int]


@dataclass
class LanguageRow:
    label: str
    texts: int = 0
    tokens: int = 0
    chars: int = 0
    matched: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODES, 0))


@dataclass
class ParityReport:
    reference: str
    rows: dict[str, LanguageRow]
    mismatches: list[Mismatch]
    n_mismatched: int = 0
    normalizer: str | None = None
    forced_control: list[tuple[str, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.n_mismatched == 0

    def table(self) -> list[tuple[str, str, str, str, str]]:
        """(language, texts, tokens/char, text-mode match, special-mode match)."""
        out = []
        for r in self.rows.values():
            tpc = f"{r.tokens / r.chars:.2f}" if r.chars else "-"
            out.append(
                (
                    r.label,
                    str(r.texts),
                    tpc,
                    f"{r.matched['text']}/{r.texts}",
                    f"{r.matched['special']}/{r.texts}",
                )
            )
        return out


class LlamaTokenizerLike(Protocol):
    def tokenize(
        self, text: str, add_special: bool = True, parse_special: bool = False
    ) -> list[int]: ...


def byte_fallback_explains(m: Mismatch, vocab: Vocab) -> bool:
    """True when the two sides differ only where one emits byte tokens and the other <unk>
    (llama.cpp's Unigram tokenizer has no byte fallback)."""
    from gguf import TokenType

    unk = vocab.special.ids.get("unk") if vocab.special else None

    def collapse(ids: Sequence[int]) -> list[int | None]:
        out: list[int | None] = []
        for i in ids:
            is_gap = i == unk or (0 <= i < len(vocab.types) and vocab.types[i] == TokenType.BYTE)
            if is_gap and out and out[-1] is None:
                continue
            out.append(None if is_gap else i)
        return out

    return collapse(m.reference) == collapse(m.llama)


def compare(
    spec: ReferenceSpec,
    reference: Sequence[tuple[list[int], list[int]]],
    llama: LlamaTokenizerLike,
    labelled_texts: Iterable[tuple[str, str]],
    normalizer: str | None = None,
    keep_mismatches: int = 20,
) -> ParityReport:
    """Compare reference ids with llama.cpp's for every text in both modes. `normalizer`
    (e.g. "NFC") is applied to the text given to llama.cpp when the original normalizes inside
    its tokenizer and llama.cpp cannot: seachat applies the same normalization to user input."""
    rows: dict[str, LanguageRow] = {}
    mismatches: list[Mismatch] = []
    n_bad = 0
    for (label, text), ref_pair in zip(labelled_texts, reference, strict=True):
        row = rows.setdefault(label, LanguageRow(label))
        row.texts += 1
        row.chars += len(text)
        row.tokens += len(ref_pair[0])
        llama_text = unicodedata.normalize(normalizer, text) if normalizer else text
        for mode, ref in zip(MODES, ref_pair, strict=True):
            got = llama.tokenize(llama_text, add_special=True, parse_special=mode == "special")
            if ref == got:
                row.matched[mode] += 1
            else:
                n_bad += 1
                if len(mismatches) < keep_mismatches:
                    mismatches.append(Mismatch(label, mode, text, list(ref), got))
    forced = [(a.content, a.token_id) for a in spec.forced_control]
    return ParityReport(spec.name, rows, mismatches, n_bad, normalizer, forced)
