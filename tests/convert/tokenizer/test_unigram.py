"""Unigram tokenizers: converted to llama.cpp's Unigram (UGM) vocabulary. llama.cpp's UGM has no
byte fallback, so text outside the vocabulary tokenizes differently: the converter must refuse
by default and say why, and agree wherever the text is inside the vocabulary."""

from __future__ import annotations

import pytest

from seachat.convert import pipeline
from seachat.convert.parity.tokens import byte_fallback_explains


def test_unigram_refused_with_reason(tiny_dir, tmp_path) -> None:
    out = tmp_path / "ugm.gguf"
    with pytest.raises(pipeline.TokenizerMismatch) as err:
        pipeline.convert(str(tiny_dir("gemma2-unigram")), out, "f32")
    assert "byte fallback" in str(err.value)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_unigram_in_vocabulary_text_matches(tiny_dir, tmp_path) -> None:
    out = tmp_path / "ugm.gguf"
    result = pipeline.convert(
        str(tiny_dir("gemma2-unigram")), out, "f32", allow_tokenizer_mismatch=True
    )
    assert result.prepared.vocab.model == "t5"
    report = result.parity
    assert report.n_mismatched > 0
    assert all(byte_fallback_explains(m, result.prepared.vocab) for m in report.mismatches)
    # text made only of characters the tokenizer was trained on matches exactly
    in_vocab = [
        ("tha_Thai", "สวัสดีครับ วันนี้อากาศดีมาก"),
        ("khm_Khmr", "ខ្ញុំចង់ទៅផ្សារថ្ងៃនេះ"),
        ("eng_Latn", "Hello there"),
    ]
    report2 = pipeline.tokenizer_parity(result.prepared, out, in_vocab)
    assert report2.ok, report2.mismatches
