"""Byte-level BPE pre-tokenizers are recognised by structure, not by a hash of known models."""

from __future__ import annotations

import json

import pytest

from seachat.convert.parity.probe_text import probe_texts
from seachat.convert.tokenizer import pretokenizer
from tests.fixtures.tiny_checkpoints import LLAMA3_REGEX, QWEN2_REGEX


def _tokenizer_json(steps: list[dict]) -> dict:
    """A minimal byte-level BPE tokenizer.json around the given pre-tokenizer steps."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": steps},
        "post_processor": None,
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": False,
            "use_regex": False,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {"a": 0},
            "merges": [],
        },
    }


def _split(regex: str) -> dict:
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


BYTE_LEVEL = {
    "type": "ByteLevel",
    "add_prefix_space": False,
    "trim_offsets": False,
    "use_regex": False,
}


@pytest.mark.parametrize(
    ("steps", "name"),
    [
        ([_split(LLAMA3_REGEX), BYTE_LEVEL], "llama-bpe"),
        ([_split(QWEN2_REGEX), BYTE_LEVEL], "qwen2"),
        ([{**BYTE_LEVEL, "use_regex": True}], "gpt-2"),
        (
            [{"type": "Digits", "individual_digits": True}, {**BYTE_LEVEL, "use_regex": True}],
            "smollm",
        ),
    ],
)
def test_recognised_by_regex(steps, name) -> None:
    assert pretokenizer.detect(_tokenizer_json(steps), probe_texts()) == (name, "regex")


def test_recognised_by_behaviour_when_written_differently() -> None:
    """Same splitting, different spelling (\\p{Letter} for \\p{L}, \\d-free digit class):
    no hash table would know it; splitting the probe text shows it is Llama 3's."""
    respelled = LLAMA3_REGEX.replace(r"\p{L}", r"\p{Letter}")
    assert respelled != LLAMA3_REGEX
    assert pretokenizer.detect(_tokenizer_json([_split(respelled), BYTE_LEVEL]), probe_texts()) == (
        "llama-bpe",
        "behaviour",
    )


def test_unknown_pre_tokenizer_is_not_guessed() -> None:
    odd = r"\p{L}{1,2}|\p{N}|\s+|[^\s\p{L}\p{N}]+"
    assert pretokenizer.detect(_tokenizer_json([_split(odd), BYTE_LEVEL]), probe_texts()) == (
        None,
        "unrecognised",
    )


def test_split_with_keeps_every_character() -> None:
    for text in probe_texts():
        for cand in pretokenizer.CANDIDATES:
            assert "".join(pretokenizer.split_with(cand.regexes, text)) == text


def test_unknown_pre_tokenizer_refused_by_converter(tiny_dir, tmp_path) -> None:
    import shutil

    from seachat.convert import pipeline
    from seachat.convert.errors import UserError

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_dir("qwen2-bpe"), ckpt)
    tj = json.loads((ckpt / "tokenizer.json").read_text(encoding="utf-8"))
    tj["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = (
        r"\p{L}{1,2}|\p{N}|\s+|[^\s\p{L}\p{N}]+"
    )
    (ckpt / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    with pytest.raises(UserError, match="pre-tokenizer is not one llama.cpp implements"):
        pipeline.prepare(str(ckpt), "f16")
