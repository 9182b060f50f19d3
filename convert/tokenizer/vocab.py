"""Reading a checkpoint's tokenizer into the vocabulary llama.cpp needs.

Three shapes of tokenizer reach us:
- SentencePiece `tokenizer.model` (Llama 2, Mistral, Gemma, SeaLLM, SambaLingo…), extended by
  added_tokens.json / tokenizer_config.json's added_tokens_decoder;
- `tokenizer.json` byte-level BPE (Llama 3, Qwen2, Typhoon 2, Sailor…) whose pre-tokenizer we
  recognise by structure (see pretokenizer.py);
- `tokenizer.json` SentencePiece-style BPE or Unigram with byte fallback (Gemma 3, Llama 2 fast
  tokenizers with no tokenizer.model).
Special-token ids, add-BOS/EOS flags and the chat template come from special_tokens.py.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
from gguf import TokenType

from seachat.convert.errors import UserError
from seachat.convert.parity.probe_text import probe_texts
from seachat.convert.tokenizer import pretokenizer
from seachat.convert.tokenizer.special_tokens import SpecialTokens, read_special_tokens

# gguf-py warns about tokenizer layouts it parses crudely (e.g. Gemma's pair template); our own
# parity check is the judge of the result, so its warnings would only confuse users.
logging.getLogger("gguf").setLevel(logging.ERROR)

_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
SPIECE_UNDERLINE = "\u2581"


@dataclass
class AddedToken:
    content: str
    token_id: int
    special: bool
    lstrip: bool = False
    rstrip: bool = False


@dataclass
class Vocab:
    model: str  # tokenizer.ggml.model: "llama" (SPM), "gpt2" (byte-level BPE), "t5" (Unigram)
    pre: str  # tokenizer.ggml.pre
    tokens: list[bytes]
    types: list[int]
    scores: list[float] | None
    merges: list[str] = field(default_factory=list)
    add_space_prefix: bool | None = None
    remove_extra_whitespaces: bool | None = None
    precompiled_charsmap: bytes | None = None
    special: SpecialTokens | None = None
    post_processor: dict[str, Any] | None = None  # tokenizer.json's, for BOS/EOS flags
    added: list[AddedToken] = field(default_factory=list)
    source: str = ""  # human description, e.g. "tokenizer.model (SentencePiece BPE)"
    normalizer: str | None = None  # Unicode normalization the original applies (e.g. "NFC")

    def __len__(self) -> int:
        return len(self.tokens)

    def add_to_writer(self, writer: gguf.GGUFWriter) -> None:
        writer.add_tokenizer_model(self.model)
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        if self.scores is not None:
            writer.add_token_scores(self.scores)
        writer.add_token_types(self.types)
        if self.merges:
            writer.add_token_merges(self.merges)
        if self.add_space_prefix is not None:
            writer.add_add_space_prefix(self.add_space_prefix)
        if self.remove_extra_whitespaces is not None:
            writer.add_remove_extra_whitespaces(self.remove_extra_whitespaces)
        if self.precompiled_charsmap:
            writer.add_precompiled_charsmap(self.precompiled_charsmap)
        if self.special is not None:
            self.special.add_to_writer(writer)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable JSON ({exc}); re-download the file") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object; re-download the file")
    return data


def _tokenizer_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "tokenizer_config.json"
    return _read_json(path) if path.is_file() else {}


def _added_from_config(model_dir: Path) -> list[AddedToken]:
    """Added tokens from tokenizer_config.json (added_tokens_decoder) and added_tokens.json."""
    added: dict[int, AddedToken] = {}
    legacy = model_dir / "added_tokens.json"
    if legacy.is_file():
        for content, token_id in _read_json(legacy).items():
            added[int(token_id)] = AddedToken(content, int(token_id), special=False)
    decoder = _tokenizer_config(model_dir).get("added_tokens_decoder") or {}
    for token_id, data in decoder.items():
        added[int(token_id)] = AddedToken(
            data["content"],
            int(token_id),
            special=bool(data.get("special")),
            lstrip=bool(data.get("lstrip")),
            rstrip=bool(data.get("rstrip")),
        )
    return sorted(added.values(), key=lambda a: a.token_id)


def _added_from_tokenizer_json(tj: dict[str, Any]) -> list[AddedToken]:
    return [
        AddedToken(
            a["content"],
            int(a["id"]),
            special=bool(a.get("special")),
            lstrip=bool(a.get("lstrip")),
            rstrip=bool(a.get("rstrip")),
        )
        for a in tj.get("added_tokens") or []
    ]


def _apply_added(
    tokens: list[bytes], types: list[int], scores: list[float] | None, added: list[AddedToken]
) -> None:
    """Added tokens overwrite their slots: special ones become CONTROL, the rest USER_DEFINED
    (with SentencePiece's ▁ turned back into a space, as llama.cpp matches raw text)."""
    for a in added:
        if a.token_id >= len(tokens):
            continue
        if a.special:
            types[a.token_id] = TokenType.CONTROL
            tokens[a.token_id] = a.content.encode("utf-8")
        else:
            types[a.token_id] = TokenType.USER_DEFINED
            tokens[a.token_id] = a.content.replace(SPIECE_UNDERLINE, " ").encode("utf-8")
        if scores is not None:
            scores[a.token_id] = -1000.0


def _target_size(vocab_size: int, added: list[AddedToken]) -> int:
    return max(vocab_size, max((a.token_id + 1 for a in added), default=0))


def _pad(tokens: list[bytes], types: list[int], scores: list[float] | None, size: int) -> None:
    """Checkpoints often round the embedding up (e.g. to a multiple of 64): llama.cpp needs one
    token per embedding row, so the gap is filled with unused placeholder tokens."""
    for i in range(len(tokens), size):
        tokens.append(f"[PAD{i}]".encode())
        types.append(TokenType.UNUSED)
        if scores is not None:
            scores.append(-10000.0)


def _parse_sentencepiece(path: Path) -> tuple[Any, Any]:
    """(ModelProto, SentencePieceProcessor) of a tokenizer.model, or a UserError."""
    from sentencepiece import SentencePieceProcessor
    from sentencepiece import sentencepiece_model_pb2 as spm_pb2

    raw = path.read_bytes()
    proto = spm_pb2.ModelProto()
    try:
        proto.ParseFromString(raw)
        sp = SentencePieceProcessor()
        sp.LoadFromSerializedProto(raw)
    except Exception as exc:  # protobuf and sentencepiece raise assorted types
        raise UserError(f"{path}: not a valid SentencePiece model ({exc}); re-download it") from exc
    return proto, sp


def _sentencepiece_pieces(sp: Any) -> tuple[list[bytes], list[int], list[float]]:
    """Every piece with its SentencePiece score and the llama.cpp token type of its kind."""
    tokens: list[bytes] = []
    types: list[int] = []
    scores: list[float] = []
    for i in range(sp.vocab_size()):
        tokens.append(sp.IdToPiece(i).encode("utf-8"))
        scores.append(float(sp.GetScore(i)))
        if sp.IsUnknown(i):
            types.append(TokenType.UNKNOWN)
        elif sp.IsControl(i):
            types.append(TokenType.CONTROL)
        elif sp.IsUnused(i):
            types.append(TokenType.UNUSED)
        elif sp.IsByte(i):
            types.append(TokenType.BYTE)
        else:
            types.append(TokenType.NORMAL)
    return tokens, types, scores


def _sentencepiece_extras(model_dir: Path) -> tuple[list[AddedToken], dict[str, Any] | None]:
    """Added tokens (tokenizer_config.json / added_tokens.json first, then any more a
    tokenizer.json beside the model lists) and that tokenizer.json's post-processor."""
    added = _added_from_config(model_dir)
    tj_path = model_dir / "tokenizer.json"
    if not tj_path.is_file():
        return added, None
    tj = _read_json(tj_path)
    known = {a.token_id for a in added}
    added += [a for a in _added_from_tokenizer_json(tj) if a.token_id not in known]
    return added, tj.get("post_processor")


def load_sentencepiece(model_dir: Path, vocab_size: int, pad: bool = True) -> Vocab:
    from sentencepiece import sentencepiece_model_pb2 as spm_pb2

    path = model_dir / "tokenizer.model"
    proto, sp = _parse_sentencepiece(path)
    n = sp.vocab_size()
    if vocab_size and n > vocab_size:
        raise UserError(
            f"{path}: tokenizer has {n} pieces but config.json vocab_size is {vocab_size}; "
            "tokenizer and checkpoint do not belong together"
        )
    tokens, types, scores = _sentencepiece_pieces(sp)
    added, post_processor = _sentencepiece_extras(model_dir)
    _pad(tokens, types, scores, _target_size(vocab_size if pad else 0, added))
    _apply_added(tokens, types, scores, added)

    model_type = proto.trainer_spec.model_type  # 1 = UNIGRAM, 2 = BPE
    norm = proto.normalizer_spec
    add_prefix = _tokenizer_config(model_dir).get("add_prefix_space")
    add_space_prefix = bool(norm.add_dummy_prefix) if add_prefix is None else bool(add_prefix)
    if model_type == spm_pb2.TrainerSpec.UNIGRAM:
        return Vocab(
            model="t5",
            pre="default",
            tokens=tokens,
            types=types,
            scores=scores,
            add_space_prefix=add_space_prefix,
            remove_extra_whitespaces=bool(norm.remove_extra_whitespaces),
            precompiled_charsmap=bytes(norm.precompiled_charsmap) or None,
            added=added,
            source="tokenizer.model (SentencePiece Unigram)",
            post_processor=post_processor,
        )
    if model_type != spm_pb2.TrainerSpec.BPE:
        raise UserError(
            f"{path}: SentencePiece model type {model_type} is not supported (BPE or Unigram only)"
        )
    return Vocab(
        model="llama",
        pre="default",
        tokens=tokens,
        types=types,
        scores=scores,
        add_space_prefix=add_space_prefix,
        added=added,
        source="tokenizer.model (SentencePiece BPE)",
        post_processor=post_processor,
    )


def _merged_tokens(raw_merges: list[Any]) -> Iterator[str]:
    """The token each merge produces, in rank order (merges are "a b" strings, or [a, b]
    pairs since tokenizers 0.20 so that pieces may contain spaces)."""
    for m in raw_merges:
        yield m.replace(" ", "", 1) if isinstance(m, str) else m[0] + m[1]


def _merges_for_gguf(raw_merges: list[Any]) -> list[str]:
    """GGUF stores merges as "a b"; a space inside a piece is written as U+0120 + 256 offset
    the way llama.cpp's own converter does."""
    if all(isinstance(m, str) for m in raw_merges):
        return list(raw_merges)
    return [
        m
        if isinstance(m, str)
        else " ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in m)
        for m in raw_merges
    ]


def _is_spm_style(tj: dict[str, Any]) -> bool:
    """SentencePiece-style: spaces become ▁ (normalizer or Metaspace), raw UTF-8 with byte
    fallback — as opposed to GPT-2's byte-to-unicode mapping."""
    text = json.dumps([tj.get("normalizer"), tj.get("pre_tokenizer"), tj.get("decoder")])
    return (
        "Metaspace" in text or SPIECE_UNDERLINE in text or tj["model"].get("byte_fallback", False)
    )


def _spm_style_add_prefix(tj: dict[str, Any]) -> bool:
    """Whether the original prepends ▁ to the text (Llama 2) or not (Gemma)."""
    normalizer = json.dumps(tj.get("normalizer"))
    if '"Prepend"' in normalizer:
        return True
    pre = tj.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre else []
    for step in steps:
        if step.get("type") == "Metaspace":
            scheme = step.get(
                "prepend_scheme", "always" if step.get("add_prefix_space", True) else "never"
            )
            return scheme in ("always", "first")
    return False


def _token_types_from_json(
    tokens: list[str], tj: dict[str, Any], byte_fallback_tokens: bool
) -> list[int]:
    unk = tj["model"].get("unk_token")
    types: list[int] = []
    for tok in tokens:
        if (
            byte_fallback_tokens
            and len(tok) == 6
            and tok[:3] == "<0x"
            and _BYTE_TOKEN.fullmatch(tok)
        ):
            types.append(TokenType.BYTE)
        elif unk is not None and tok == unk:
            types.append(TokenType.UNKNOWN)
        else:
            types.append(TokenType.NORMAL)
    return types


def _normalizer_form(tj: dict[str, Any]) -> str | None:
    text = json.dumps(tj.get("normalizer"))
    for form in ("NFKC", "NFKD", "NFC", "NFD"):
        if f'"type": "{form}"' in text:
            return form
    return None


def load_tokenizer_json(model_dir: Path, vocab_size: int, pad: bool = True) -> Vocab:
    path = model_dir / "tokenizer.json"
    tj = _read_json(path)
    kind = (tj.get("model") or {}).get("type")
    added = _added_from_tokenizer_json(tj)
    vocab_size = vocab_size if pad else 0
    if kind == "Unigram":
        return _unigram_vocab(tj, added, vocab_size)
    if kind != "BPE":
        raise UserError(
            f"{path}: tokenizer model {kind!r} is not supported (BPE, Unigram or a "
            "SentencePiece tokenizer.model)"
        )
    by_id = _bpe_tokens_by_id(tj, added, vocab_size)
    if _is_spm_style(tj):
        return _spm_style_bpe_vocab(tj, by_id, added)
    return _byte_level_bpe_vocab(path, tj, by_id, added)


def _unigram_vocab(tj: dict[str, Any], added: list[AddedToken], vocab_size: int) -> Vocab:
    model = tj["model"]
    pieces = model.get("vocab") or []
    tokens_s = [p[0] for p in pieces]
    scores = [float(p[1]) for p in pieces]
    types = _token_types_from_json(
        tokens_s, tj, byte_fallback_tokens=model.get("byte_fallback", False)
    )
    unk_id = model.get("unk_id")
    if unk_id is not None and unk_id < len(types):
        types[unk_id] = TokenType.UNKNOWN
    tokens = [t.encode("utf-8") for t in tokens_s]
    _pad(tokens, types, scores, _target_size(vocab_size, added))
    _apply_added(tokens, types, scores, added)
    return _spm_style_json_vocab(
        tj,
        "t5",
        tokens,
        types,
        scores,
        added,
        "tokenizer.json (Unigram)",
        remove_extra_whitespaces=False,
        precompiled_charsmap=_precompiled_charsmap(tj),
    )


def _spm_style_json_vocab(
    tj: dict[str, Any],
    model: str,
    tokens: list[bytes],
    types: list[int],
    scores: list[float],
    added: list[AddedToken],
    source: str,
    **extra: Any,
) -> Vocab:
    """A SentencePiece-style tokenizer.json (Unigram, or BPE with byte fallback) as a Vocab:
    prefix space, normalizer and post-processor come from the file itself."""
    return Vocab(
        model=model,
        pre="default",
        tokens=tokens,
        types=types,
        scores=scores,
        add_space_prefix=_spm_style_add_prefix(tj),
        added=added,
        source=source,
        normalizer=_normalizer_form(tj),
        post_processor=tj.get("post_processor"),
        **extra,
    )


def _bpe_tokens_by_id(
    tj: dict[str, Any], added: list[AddedToken], vocab_size: int
) -> list[str | None]:
    """A BPE vocabulary's token texts by id, added tokens included; None marks ids no token
    has (padding up to vocab_size, or gaps)."""
    vocab_map: dict[str, int] = tj["model"].get("vocab") or {}
    size = max(_target_size(vocab_size, added), max(vocab_map.values(), default=-1) + 1)
    by_id: list[str | None] = [None] * size
    for tok, idx in vocab_map.items():
        by_id[idx] = tok
    for a in added:
        by_id[a.token_id] = a.content
    return by_id


def _spm_style_bpe_vocab(
    tj: dict[str, Any], by_id: list[str | None], added: list[AddedToken]
) -> Vocab:
    # llama.cpp's SentencePiece tokenizer merges the adjacent pair whose concatenation has
    # the highest score; HF BPE merges the pair with the lowest merge rank. Scoring each
    # token by minus the rank of the merge that first creates it makes the two agree.
    rank_of: dict[str, int] = {}
    for rank, merged in enumerate(_merged_tokens(tj["model"].get("merges") or [])):
        rank_of.setdefault(merged, rank)
    tokens_s = [t if t is not None else f"[PAD{i}]" for i, t in enumerate(by_id)]
    scores = [-float(rank_of[t]) if t in rank_of else -1e9 for t in tokens_s]
    types = _token_types_from_json(tokens_s, tj, byte_fallback_tokens=True)
    for i, t in enumerate(by_id):
        if t is None:
            types[i] = TokenType.UNUSED
    tokens = [t.encode("utf-8") for t in tokens_s]
    _apply_added(tokens, types, scores, added)
    return _spm_style_json_vocab(
        tj,
        "llama",
        tokens,
        types,
        scores,
        added,
        "tokenizer.json (SentencePiece-style BPE, byte fallback)",
    )


def _byte_level_bpe_vocab(
    path: Path, tj: dict[str, Any], by_id: list[str | None], added: list[AddedToken]
) -> Vocab:
    pre, how = pretokenizer.detect(tj, probe_texts())
    if pre is None:
        raise UserError(
            f"{path}: the byte-level pre-tokenizer is not one llama.cpp implements ({how}); "
            "seachat cannot produce a GGUF that tokenizes like the original"
        )
    tokens = [(t if t is not None else f"[PAD{i}]").encode("utf-8") for i, t in enumerate(by_id)]
    types = [TokenType.NORMAL if t is not None else TokenType.UNUSED for t in by_id]
    _apply_added(tokens, types, None, added)
    return Vocab(
        model="gpt2",
        pre=pre,
        tokens=tokens,
        types=types,
        scores=None,
        merges=_merges_for_gguf(tj["model"].get("merges") or []),
        added=added,
        source=f"tokenizer.json (byte-level BPE, pre-tokenizer {pre} recognised by {how})",
        normalizer=_normalizer_form(tj),
        post_processor=tj.get("post_processor"),
    )


def _precompiled_charsmap(tj: dict[str, Any]) -> bytes | None:
    import base64

    normalizer = tj.get("normalizer") or {}
    steps = normalizer.get("normalizers", [normalizer]) if normalizer else []
    for step in steps:
        if step.get("type") == "Precompiled" and step.get("precompiled_charsmap"):
            return base64.b64decode(step["precompiled_charsmap"])
    return None


def load_vocab(model_dir: Path, config: dict[str, Any], pad: bool = True) -> Vocab:
    """The checkpoint's vocabulary, with special tokens and chat template attached. `pad` fills
    the vocabulary up to config.json's vocab_size (one token per embedding row); architectures
    that trim the embedding to the tokenizer instead pass False."""
    vocab_size = int(config.get("vocab_size") or 0)
    if (model_dir / "tokenizer.model").is_file():
        vocab = load_sentencepiece(model_dir, vocab_size, pad)
    elif (model_dir / "tokenizer.json").is_file():
        vocab = load_tokenizer_json(model_dir, vocab_size, pad)
    else:
        raise UserError(
            f"{model_dir}: no tokenizer.model or tokenizer.json; download the tokenizer files "
            "with the checkpoint"
        )
    added_ids = {a.content: a.token_id for a in vocab.added}

    def token_id(text: str) -> int | None:
        if text in added_ids:
            return added_ids[text]
        try:
            i = vocab.tokens.index(text.encode("utf-8"))
        except ValueError:
            return None
        return i if vocab.types[i] != TokenType.UNUSED else None

    # Without tokenizer.json, transformers runs the SentencePiece tokenizer (LlamaTokenizer,
    # GemmaTokenizer), which adds BOS; a fast tokenizer adds only what its post-processor says.
    default_add_bos = not (model_dir / "tokenizer.json").is_file()
    vocab.special = read_special_tokens(
        model_dir, token_id, vocab.post_processor, len(vocab.tokens), default_add_bos
    )
    return vocab
