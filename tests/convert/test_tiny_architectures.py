"""Every supported architecture: tiny checkpoint → seachat convert → llama.cpp loads it,
tokenizes like the original and computes the same logits as transformers."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from seachat.convert import pipeline
from seachat.convert.gguf_file.reader import read_gguf_header
from seachat.convert.parity.logits import compare_logits
from tests.convert.conftest import EXACT_TINY

EXPECTED = {
    # fixture: (gguf architecture, tokenizer model, pre-tokenizer)
    "llama-spm": ("llama", "llama", "default"),
    "llama3-bpe": ("llama", "gpt2", "llama-bpe"),
    "mistral-spm-fast": ("llama", "llama", "default"),
    "qwen2-bpe": ("qwen2", "gpt2", "qwen2"),
    "gemma2-spm": ("gemma2", "llama", "default"),
    "gemma3-fast": ("gemma3", "llama", "default"),
    "gemma-spm": ("gemma", "llama", "default"),
    "qwen3-bpe": ("qwen3", "gpt2", "qwen2"),
    "gemma3-multimodal": ("gemma3", "llama", "default"),
    "apertus-bpe": ("apertus", "gpt2", "llama-bpe"),
}


@pytest.fixture(scope="module")
def converted(tiny_dir, tmp_path_factory) -> dict[str, tuple[Path, Path, pipeline.ConvertResult]]:
    out_dir = tmp_path_factory.mktemp("tiny-f32")
    results = {}
    for name in EXACT_TINY:
        src = tiny_dir(name)
        out = out_dir / f"{name}.gguf"
        results[name] = (src, out, pipeline.convert(str(src), out, "f32"))
    return results


@pytest.mark.parametrize("name", EXACT_TINY)
def test_tokenizer_parity_on_probe_set(converted, name: str) -> None:
    _, out, result = converted[name]
    report = result.parity
    assert report is not None and report.ok, report.mismatches[:3]
    for lang in ("tha_Thai", "khm_Khmr", "lao_Laoo", "mya_Mymr", "arb_Arab"):
        row = report.rows[lang]
        assert row.matched == {"text": row.texts, "special": row.texts}
    assert out.is_file()


@pytest.mark.parametrize("name", EXPECTED)
def test_gguf_metadata(converted, name: str) -> None:
    _, out, _ = converted[name]
    header = read_gguf_header(out)
    arch, tok_model, pre = EXPECTED[name]
    assert header.architecture == arch
    assert header.get("tokenizer.ggml.model") == tok_model
    assert header.get("tokenizer.ggml.pre") == pre
    assert header.get("general.file_type") == gguf.LlamaFileType.ALL_F32
    assert header.get("tokenizer.chat_template"), "chat template from tokenizer_config.json"
    assert header.get("tokenizer.ggml.eos_token_id") is not None
    # every 1-D tensor (norms, biases) stays F32
    for t in header.tensors:
        if len(t.shape) == 1:
            assert t.type_name == "F32", t.name


@pytest.mark.parametrize("name", EXACT_TINY)
def test_logit_parity_with_transformers(converted, name: str) -> None:
    src, out, _ = converted[name]
    report = compare_logits(src, out)
    assert report.positions > 500
    assert report.top1 >= 0.99, report.summary()
    assert report.max_abs_diff < 0.05, report.summary()


def test_quirks_are_applied(converted) -> None:
    """The tensors llama.cpp needs changed are changed: Gemma 3's padded embedding is trimmed
    to the tokenizer, Llama 3.1 RoPE scaling becomes a rope_freqs tensor, Qwen2 keeps biases,
    the extended Llama vocabulary keeps its added tokens and padding rows."""
    gemma3 = read_gguf_header(converted["gemma3-fast"][1])
    emb = next(t for t in gemma3.tensors if t.name == "token_embd.weight")
    n_tokens = gemma3.array_lengths["tokenizer.ggml.tokens"]
    assert emb.shape == (64, n_tokens)
    assert "output.weight" not in {t.name for t in gemma3.tensors}

    llama3 = read_gguf_header(converted["llama3-bpe"][1])
    assert "rope_freqs.weight" in {t.name for t in llama3.tensors}

    qwen2 = read_gguf_header(converted["qwen2-bpe"][1])
    assert {"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"} <= {
        t.name for t in qwen2.tensors
    }
    assert qwen2.get("seachat.tokenizer.normalizer") == "NFC"

    llama = read_gguf_header(
        converted["llama-spm"][1], arrays=("tokenizer.ggml.tokens", "tokenizer.ggml.token_type")
    )
    tokens = llama.get("tokenizer.ggml.tokens")
    types = llama.get("tokenizer.ggml.token_type")
    assert (
        "<|im_start|>" in tokens and types[tokens.index("<|im_start|>")] == gguf.TokenType.CONTROL
    )
    assert types[tokens.index("ศักดิ์สิทธิ์")] == gguf.TokenType.USER_DEFINED
    assert len(tokens) % 16 == 0 and tokens[-1].startswith("[PAD")
