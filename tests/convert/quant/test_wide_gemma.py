"""The k-quant-regime test model: Gemma 3 270M widened to 768 computes what Gemma 3 270M
computes, every quantizable row is a multiple of 256, and the shipped profiles use the
measurements made on such rows to spend the whole budget there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seachat.convert.gguf_file.reader import read_gguf_header
from seachat.convert.quant.plan import llama_quantizes
from seachat.convert.quant.profiles import load_profile
from seachat.convert.quant.quantize import plan_for_header
from seachat.convert.quant.tune.groups import PLAN_LADDERS, make_groups
from seachat.convert.quant.tune.per_model import transfer_measurements

pytestmark = pytest.mark.slow


def test_the_widened_model_computes_what_gemma_computes(
    gemma_wide_f16: Path, gemma_f16: Path, sea_texts: dict[str, str]
):
    from seachat.convert.quant.evaluate import evaluate_models

    header = read_gguf_header(gemma_wide_f16)
    rows = {t.shape[0] for t in header.tensors if llama_quantizes(t.name, t.shape)}
    assert rows and all(row % 256 == 0 for row in rows), rows
    assert header.arch_key("embedding_length") == 768
    # both de-gridded copies are the same function up to bf16 rounding (KLD ~5e-4 measured)
    (report,) = evaluate_models(gemma_f16, [gemma_wide_f16], sea_texts, max_tokens=192, threads=2)
    for lang, result in report.languages.items():
        assert result.kld_mean < 2e-3, (lang, result.kld_mean)
        assert result.top1 > 0.95, (lang, result.top1)


def test_the_profiles_use_measurements_of_256_wide_rows_and_fill_the_budget(
    gemma_wide_f16: Path,
):
    header = read_gguf_header(gemma_wide_f16)
    prof = load_profile("sea-q4")
    files = [json.loads(p.read_text(encoding="utf-8")) for p in prof.allocate.measurements]
    wide = next(f for f in files if "768" in f["settings"]["model"])
    groups, _ = make_groups(header, n_ranges=3, by_row=PLAN_LADDERS)
    delta, _, _ = transfer_measurements(groups, files)
    for key in ("attn_q@0-1/3|q3_k", "ffn_up@2/3-1|q2_k", "output|q5_k"):
        assert delta[key] == wide["delta"][key]  # measured on these rows, not interpolated
    for sea, stock in (("sea-q3", "q3_k_m"), ("sea-q4", "q4_k_m"), ("sea-q5", "q5_k_m")):
        ours = plan_for_header(load_profile(sea), header)
        theirs = plan_for_header(load_profile(stock), header).n_bytes
        assert 0.98 * theirs <= ours.n_bytes <= theirs, (sea, ours.n_bytes / theirs)
        assert any(t.final in ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k") for t in ours.tensors)
