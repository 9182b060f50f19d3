"""Mixture of experts (Qwen3-MoE, llama.cpp's qwen3moe): a tiny sharded checkpoint → seachat
convert → llama.cpp loads it, tokenizes like the original, computes the same distribution as
transformers; configs llama.cpp cannot represent are refused; the sea-q4 profile quantizes it
within its budget; the importance matrix counts what each expert was routed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest

from seachat.convert import pipeline
from seachat.convert.checkpoint.safetensors import SafetensorsCheckpoint
from seachat.convert.errors import UserError
from seachat.convert.gguf_file.ggml_types import file_type_id
from seachat.convert.gguf_file.reader import read_gguf_header
from seachat.convert.llama.core import Context, Model
from seachat.convert.llama.quantizer import run_llama_quantize
from seachat.convert.parity.logits import compare_logits, llama_cpp_logits, reference_logits
from seachat.convert.parity.probe_text import LANGUAGE_PROBES
from seachat.convert.quant.imatrix import compute_imatrix, llama_imatrix_chunks
from seachat.convert.quant.imatrix_file import read_imatrix, write_imatrix
from seachat.convert.quant.profiles import load_profile, profile_from_text
from seachat.convert.quant.quantize import plan_for_header
from seachat.convert.quant.tune.groups import make_groups
from seachat.convert.quant.tune.per_model import budget_bytes_for
from tests.convert.conftest import run_cli
from tests.fixtures.tiny_moe import N_EXPERTS, N_EXPERTS_USED, build_tiny_moe

HIDDEN, FFN_EXP, N_LAYER = 64, 32, 2
EXPERT_TENSORS = ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")


@pytest.fixture(scope="module")
def moe_src(cache_dir: Path) -> Path:
    return build_tiny_moe(cache_dir / "tiny")


@pytest.fixture(scope="module")
def converted(moe_src: Path, tmp_path_factory) -> tuple[Path, pipeline.ConvertResult]:
    out = tmp_path_factory.mktemp("moe") / "qwen3moe-f32.gguf"
    return out, pipeline.convert(str(moe_src), out, "f32")


def test_experts_become_stacked_tensors_with_their_counts(converted, moe_src: Path) -> None:
    out, _ = converted
    assert len(list(moe_src.glob("*.safetensors"))) > 1, "the fixture must be sharded"
    header = read_gguf_header(out)
    assert header.architecture == "qwen3moe"
    assert header.get("qwen3moe.expert_count") == N_EXPERTS
    assert header.get("qwen3moe.expert_used_count") == N_EXPERTS_USED
    assert header.get("qwen3moe.expert_feed_forward_length") == FFN_EXP
    shapes = {t.name: (t.shape, t.type_name) for t in header.tensors}
    for bid in range(N_LAYER):
        # ggml order: (cols, rows, expert)
        assert shapes[f"blk.{bid}.ffn_gate_exps.weight"][0] == (HIDDEN, FFN_EXP, N_EXPERTS)
        assert shapes[f"blk.{bid}.ffn_up_exps.weight"][0] == (HIDDEN, FFN_EXP, N_EXPERTS)
        assert shapes[f"blk.{bid}.ffn_down_exps.weight"][0] == (FFN_EXP, HIDDEN, N_EXPERTS)
        assert shapes[f"blk.{bid}.ffn_gate_inp.weight"] == ((HIDDEN, N_EXPERTS), "F32")
    assert not any(".experts." in name or "ffn_up.weight" in name for name in shapes)


def test_stacks_hold_every_expert_in_order(converted, moe_src: Path) -> None:
    """The stacked tensor is the experts one after another, each streamed from its shard."""
    out, _ = converted
    reader = gguf.GGUFReader(out)
    data = {t.name: np.asarray(t.data) for t in reader.tensors}
    with SafetensorsCheckpoint(moe_src) as ckpt:
        for bid in range(N_LAYER):
            for proj, gguf_name in (("gate", "ffn_gate_exps"), ("down", "ffn_down_exps")):
                stacked = data[f"blk.{bid}.{gguf_name}.weight"]
                for xid in range(N_EXPERTS):
                    entry = ckpt.tensors[f"model.layers.{bid}.mlp.experts.{xid}.{proj}_proj.weight"]
                    expert = ckpt.read_f32(entry, 0, entry.shape[0])
                    np.testing.assert_array_equal(stacked[xid], expert)


def test_tokenizer_parity(converted) -> None:
    _, result = converted
    report = result.parity
    assert report is not None and report.ok, report.mismatches[:3]
    for lang in ("tha_Thai", "khm_Khmr", "lao_Laoo", "mya_Mymr", "arb_Arab", "zho_Hans"):
        row = report.rows[lang]
        assert row.matched == {"text": row.texts, "special": row.texts}


def _kld(reference: np.ndarray, ours: np.ndarray) -> np.ndarray:
    """KL(reference || ours) per position, from logits."""

    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64) - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    p, q = log_softmax(reference), log_softmax(ours)
    return (np.exp(p) * (p - q)).sum(axis=1)


def test_logit_parity_with_transformers(converted, moe_src: Path) -> None:
    out, _ = converted
    report = compare_logits(moe_src, out)
    assert report.positions > 500
    assert report.top1 >= 0.99, report.summary()
    with Model(out, vocab_only=True) as vocab:
        tokens = [vocab.tokenize(text, add_special=True) for _, text in LANGUAGE_PROBES]
    ours, theirs = llama_cpp_logits(out, tokens), reference_logits(moe_src, tokens)
    n_vocab = min(ours[0].shape[1], theirs[0].shape[1])
    kld = np.concatenate(
        [_kld(b[:, :n_vocab], a[:, :n_vocab]) for a, b in zip(ours, theirs, strict=True)]
    )
    print(f"{report.summary()}; mean KLD {kld.mean():.3g}, max {kld.max():.3g}")
    assert kld.mean() < 1e-3, kld.mean()


def _copy_with_config(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".seachat-fixture"))
    config = json.loads((dst / "config.json").read_text(encoding="utf-8"))
    config.update(changes)
    (dst / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return dst


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"norm_topk_prob": False}, "norm_topk_prob"),
        ({"mlp_only_layers": [1]}, "mlp_only_layers"),
        ({"decoder_sparse_step": 2}, "decoder_sparse_step"),
        ({"num_local_experts": N_EXPERTS + 1}, f"experts.{N_EXPERTS}."),
    ],
)
def test_configs_llama_cpp_cannot_represent_are_refused(
    moe_src: Path, tmp_path: Path, changes: dict, key: str
) -> None:
    src = _copy_with_config(moe_src, tmp_path / "ckpt", **changes)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run_cli("convert", str(src), "-o", str(out_dir / "m.gguf"))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert key in lines[0] and "Traceback" not in result.stderr, lines[0]
    assert list(out_dir.iterdir()) == []


def _greedy(path: Path, prompt: str, n: int) -> list[int]:
    with Model(path) as model, Context(model, n_ctx=128, n_batch=64, n_threads=2) as ctx:
        tokens = model.tokenize(prompt, add_special=True)
        logits = ctx.decode(tokens, 0)
        out: list[int] = []
        for _ in range(n):
            assert logits is not None and np.all(np.isfinite(logits[-1]))
            out.append(int(np.argmax(logits[-1])))
            logits = ctx.decode(out[-1:], len(tokens) + len(out) - 1)
    return out


def test_sea_q4_quantizes_within_its_budget_and_generates(
    converted, moe_src: Path, tmp_path: Path
) -> None:
    f32, _ = converted
    out = tmp_path / "qwen3moe-sea-q4.gguf"
    result = run_cli(
        "convert", str(moe_src), "-o", str(out), "--profile", "sea-q4", "--threads", "2"
    )
    assert result.returncode == 0, result.stderr + result.stdout
    header = read_gguf_header(out)
    types = {t.name: t.type_name for t in header.tensors}
    for bid in range(N_LAYER):
        assert types[f"blk.{bid}.ffn_gate_inp.weight"] == "F32"  # the router stays F32
        for name in EXPERT_TENSORS:
            assert types[f"blk.{bid}.{name}.weight"] not in ("F32", "F16"), name
    budget, _ = budget_bytes_for("q4_k_m", read_gguf_header(f32))
    size = sum(t.n_bytes for t in header.tensors)
    print(f"sea-q4 tensor data {size} bytes, budget (q4_k_m on this model) {budget} bytes")
    assert size <= budget
    tokens = _greedy(out, "สวัสดีครับ วันนี้", 8)
    assert len(tokens) == 8


def test_stock_q4_k_m_is_llama_cpp_s_own_recipe(converted, tmp_path: Path) -> None:
    """Expert tensors count as llama.cpp's ffn_up/gate/down categories: the q4_k_m profile
    plans exactly the types llama.cpp's own Q4_K_M recipe writes on this MoE model."""
    f32, _ = converted
    prof = load_profile("q4_k_m")
    plan = plan_for_header(prof, read_gguf_header(f32))
    theirs = tmp_path / "llama-q4_k_m.gguf"
    run_llama_quantize(f32, theirs, ftype=file_type_id(prof.stock), threads=2)
    written = {t.name: t.type_name.lower() for t in read_gguf_header(theirs).tensors}
    assert {t.name: t.final for t in plan.tensors} == written


PROFILE = """
name = "moe-rules"
summary = "Expert rules for the MoE tests."
target_bpw = 6.0
default_type = "q8_0"

[[rules]]
kind = "ffn_down_exps"
layers = "1"
type = "q4_0"

[[rules]]
kind = "ffn_down"
type = "q5_0"
"""


def test_profile_rules_for_expert_kinds(converted) -> None:
    """A rule for ffn_down_exps targets the experts; one for ffn_down covers them as well (as
    llama.cpp's categories do); the router is never quantized, so a rule for it is refused."""
    f32, _ = converted
    plan = plan_for_header(profile_from_text(PROFILE, "moe.toml"), read_gguf_header(f32))
    final = {t.name: t.final for t in plan.tensors}
    assert final["blk.1.ffn_down_exps.weight"] == "q4_0"
    assert final["blk.0.ffn_down_exps.weight"] == "q5_0"
    assert final["blk.0.ffn_up_exps.weight"] == "q8_0"
    assert final["blk.0.ffn_gate_inp.weight"] == "f32"
    with pytest.raises(UserError, match="ffn_gate_inp.*never quantized"):
        profile_from_text(PROFILE.replace('"ffn_down_exps"', '"ffn_gate_inp"'), "moe.toml")


def test_tune_groups_experts_by_kind_and_depth(converted) -> None:
    out, _ = converted
    groups, _ = make_groups(read_gguf_header(out), n_ranges=2)
    by_key = {g.key: g for g in groups}
    for name in EXPERT_TENSORS:
        for bid, depth in ((0, "0-1/2"), (1, "1/2-1")):
            assert by_key[f"{name}@{depth}"].tensors == [f"blk.{bid}.{name}.weight"]
    assert not any(g.kind == "ffn_gate_inp" for g in groups)  # never quantized


def _routed_counts(model_dir: Path, chunks: list[list[int]]) -> np.ndarray:
    """(layer, expert): how many tokens of the chunks transformers' router sends to each."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    counts = np.zeros((N_LAYER, N_EXPERTS), dtype=np.int64)
    with torch.no_grad():
        for chunk in chunks:
            result = model(input_ids=torch.tensor([chunk]), output_router_logits=True)
            for layer, logits in enumerate(result.router_logits):
                top = torch.topk(logits.reshape(-1, N_EXPERTS), N_EXPERTS_USED, dim=-1).indices
                counts[layer] += np.bincount(top.reshape(-1).numpy(), minlength=N_EXPERTS)
    return counts


def test_imatrix_counts_each_expert_s_routed_tokens(
    converted, moe_src: Path, tmp_path: Path
) -> None:
    """llama-imatrix semantics for MUL_MAT_ID: an expert's count is the number of tokens routed
    to it, so over all experts a block counts tokens × experts used; the per-expert counts
    survive llama.cpp's imatrix file format."""
    out, _ = converted
    text = "\n".join(text for _, text in LANGUAGE_PROBES)
    with Model(out, vocab_only=True) as m:
        chunks = llama_imatrix_chunks(m.tokenize(text, add_special=True), 128, m.bos, m.add_bos)
    n_tokens = sum(len(c) for c in chunks)
    im = compute_imatrix(out, chunks, n_ctx=128, threads=2)
    routed = _routed_counts(moe_src, chunks)
    for bid in range(N_LAYER):
        assert im.entries[f"blk.{bid}.attn_q.weight"].counts.tolist() == [n_tokens]
        counts = [im.entries[f"blk.{bid}.{name}.weight"].counts for name in EXPERT_TENSORS]
        for c in counts:
            assert c.shape == (N_EXPERTS,)
            assert int(c.sum()) == n_tokens * N_EXPERTS_USED
            np.testing.assert_array_equal(c, counts[0])  # gate, up and down see the same routing
        # the tokens transformers routes to each expert (one near-tie may flip on another CPU)
        assert np.abs(counts[0] - routed[bid]).sum() <= 2, (counts[0], routed[bid])
        assert im.entries[f"blk.{bid}.ffn_down_exps.weight"].sums.shape == (N_EXPERTS, FFN_EXP)
        assert im.entries[f"blk.{bid}.ffn_up_exps.weight"].sums.shape == (N_EXPERTS, HIDDEN)
    back = read_imatrix(write_imatrix(im, tmp_path / "moe.imatrix.gguf"))
    for name, e in im.entries.items():
        np.testing.assert_array_equal(back.entries[name].counts, e.counts)
