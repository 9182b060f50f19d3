"""Per-language evaluation: KL divergence is exactly 0 for a model against itself and positive
for a quantized one, over the full vocabulary, in Thai, Khmer, Lao, Burmese, Arabic and
English."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from seachat.convert.errors import UserError
from seachat.convert.llama.quantizer import run_llama_quantize
from seachat.convert.quant.evaluate import (
    _kl_rows,
    _log_softmax_into,
    evaluate_models,
    read_eval_texts,
)


@pytest.fixture(scope="module")
def tiny_q4(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "tiny-q4_k_m.gguf"
    run_llama_quantize(tiny_llama, out, ftype=15, threads=2)  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    return out


@pytest.fixture(scope="module")
def reports(tiny_llama: Path, tiny_q4: Path, sea_texts: dict[str, str]):
    return evaluate_models(
        tiny_llama,
        [tiny_llama, tiny_q4],
        sea_texts,
        max_tokens=300,
        n_ctx=128,
        n_batch=48,
        threads=2,
    )


def test_kld_is_exactly_zero_against_itself(reports):
    same = reports[0]
    assert set(same.languages) == {
        "tha_Thai",
        "khm_Khmr",
        "lao_Laoo",
        "mya_Mymr",
        "arb_Arab",
        "eng_Latn",
    }
    for lang, r in same.languages.items():
        assert r.kld_mean == 0.0 and r.kld_p99 == 0.0, lang
        assert r.top1 == 1.0 and r.ppl == r.ppl_ref
        assert r.n_scored > 200  # several chunks, batches crossing chunk boundaries


def test_kld_is_positive_for_a_quantized_model(reports):
    quant = reports[1]
    for lang, r in quant.languages.items():
        assert r.kld_mean > 0 and r.kld_p99 >= r.kld_median > 0, lang
        assert 0 < r.top1 < 1
        assert r.ppl != r.ppl_ref
    assert reports[0].languages["tha_Thai"].ppl_ref == quant.languages["tha_Thai"].ppl_ref


def test_tokens_per_character_reflects_the_script(reports):
    r = reports[0].languages
    # SmolLM2's English BPE spends several tokens per Thai or Burmese character
    assert r["tha_Thai"].tokens_per_char > 3 * r["eng_Latn"].tokens_per_char
    assert r["mya_Mymr"].tokens_per_char > 3 * r["eng_Latn"].tokens_per_char


def test_chunked_kl_equals_the_direct_formula():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(20, 5000)).astype(np.float32) * 3
    cand = ref + rng.normal(size=ref.shape).astype(np.float32) * 0.3
    lp = _log_softmax_into(ref, np.empty_like(ref))
    lq = _log_softmax_into(cand, np.empty_like(cand))
    p = np.exp(lp)
    direct = []
    for a, b in zip(ref.astype(np.float64), cand.astype(np.float64), strict=True):
        pa = np.exp(a - a.max()) / np.exp(a - a.max()).sum()
        pb = np.exp(b - b.max()) / np.exp(b - b.max()).sum()
        direct.append(float(np.sum(pa * (np.log(pa) - np.log(pb)))))
    np.testing.assert_allclose(_kl_rows(lp, p, lq.copy()), direct, rtol=1e-4, atol=1e-7)


def test_report_json_has_the_shape_the_model_card_reads(reports, tmp_path: Path):
    data = reports[1].to_json()
    text = json.dumps(data, ensure_ascii=False)
    back = json.loads(text)
    for lang, r in back["languages"].items():
        for key in ("kld_mean", "kld_p99", "top1", "ppl_ref", "ppl", "tokens_per_char"):
            assert isinstance(r[key], float) and math.isfinite(r[key]), (lang, key)
    assert back["worst_language"] in back["languages"]
    assert "worst" in reports[1].summary_line() and len(reports[1].summary_line()) < 200
    assert "mya_Mymr" in reports[1].table()


def test_memory_stays_bounded_by_the_batch(tiny_llama: Path, sea_texts: dict[str, str]):
    """More text does not mean more memory: peak allocation is set by n_batch x n_vocab."""
    import tracemalloc

    texts = {"tha_Thai": sea_texts["tha_Thai"]}
    peaks = []
    for max_tokens in (100, 600):
        tracemalloc.start()
        evaluate_models(
            tiny_llama, [tiny_llama], texts, max_tokens=max_tokens, n_ctx=128, n_batch=32, threads=2
        )
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    n_vocab = 49152
    assert peaks[1] < 1.5 * peaks[0] + 4 * 32 * n_vocab  # not proportional to 6x the tokens
    assert peaks[1] < 10 * 32 * n_vocab * 4


def test_bad_inputs_name_the_file(tmp_path: Path, tiny_llama: Path, gemma3_gguf: Path):
    with pytest.raises(UserError, match="no such evaluation text directory"):
        read_eval_texts(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no non-empty .txt"):
        read_eval_texts(tmp_path / "empty")
    with pytest.raises(UserError, match="vocabulary"):
        evaluate_models(tiny_llama, [gemma3_gguf], {"eng_Latn": "hello there " * 20}, max_tokens=32)
