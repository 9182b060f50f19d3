"""Profiles as data: parsing, validation (one-line errors before any work), layer selectors,
rule resolution and fallbacks. No model is run here except where a header is read."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import llama_cpp
import pytest

from seachat.convert.errors import UserError
from seachat.convert.gguf_file.ggml_types import TYPES
from seachat.convert.gguf_file.reader import TensorInfo, read_gguf_header
from seachat.convert.quant.plan import plan_tensors
from seachat.convert.quant.profiles import (
    LayerSelector,
    load_profile,
    load_profile_file,
    profile_from_dict,
    shipped_profile_paths,
    shipped_profiles,
)
from seachat.convert.quant.quantize import plan_for_header
from tests.convert.quant.conftest import CALIBRATION_LANGUAGES

BASE = {"name": "t", "summary": "test", "target_bpw": 5.0, "default_type": "q4_k"}


def _t(name: str, shape: tuple[int, ...], ggml_type: int = 1) -> TensorInfo:
    return TensorInfo(name, shape, ggml_type, 0)


def _model(
    n_layer: int = 8, width: int = 640, ff: int = 2048, tied: bool = True
) -> list[TensorInfo]:
    ts = [_t("token_embd.weight", (width, 1000)), _t("output_norm.weight", (width,), 0)]
    if not tied:
        ts.append(_t("output.weight", (width, 1000)))
    for i in range(n_layer):
        ts += [
            _t(f"blk.{i}.attn_norm.weight", (width,), 0),
            _t(f"blk.{i}.attn_q.weight", (width, 1024)),
            _t(f"blk.{i}.attn_k.weight", (width, 256)),
            _t(f"blk.{i}.attn_v.weight", (width, 256)),
            _t(f"blk.{i}.attn_output.weight", (1024, width)),
            _t(f"blk.{i}.ffn_gate.weight", (width, ff)),
            _t(f"blk.{i}.ffn_up.weight", (width, ff)),
            _t(f"blk.{i}.ffn_down.weight", (ff, width)),
        ]
    return ts


def _profile(**extra) -> object:
    return profile_from_dict({**BASE, **extra}, "p.toml")


# ---------------------------------------------------------------------------- shipped


def test_every_shipped_profile_loads_and_is_named_after_its_file():
    paths = shipped_profile_paths()
    for required in (
        "sea-q3",
        "sea-q4",
        "sea-q5",
        "sea-q6",
        "sea-q8",
        "q3_k_m",
        "q4_k_m",
        "q5_k_m",
        "q6_k",
    ):
        assert required in paths, f"{required}.toml is not shipped"
    for prof in shipped_profiles():
        assert prof.source is not None and prof.source.stem == prof.name
        assert prof.summary and "\n" not in prof.summary


def test_sea_profiles_are_tuned_multilingual_imatrix_profiles():
    for prof in shipped_profiles():
        if not prof.name.startswith("sea-"):
            assert prof.stock is not None and not prof.imatrix
            continue
        assert prof.imatrix and prof.calibration is not None
        mix = prof.calibration.mix
        for lang in CALIBRATION_LANGUAGES:
            assert mix.get(lang, 0) > 0, f"{prof.name}: calibration mix lacks {lang}"
        for key in ("model", "text", "date", "budget", "measurements"):
            assert prof.tuned.get(key), f"{prof.name}: [tuned] lacks {key}"


def test_target_bpw_is_what_the_planner_computes_on_gemma3(gemma3_gguf: Path):
    header = read_gguf_header(gemma3_gguf)
    for prof in shipped_profiles():
        plan = plan_for_header(prof, header)
        assert plan.bits_per_weight == pytest.approx(prof.target_bpw, abs=0.002), prof.name


SEA_BUDGETS = {
    "sea-q3": "q3_k_m",
    "sea-q4": "q4_k_m",
    "sea-q5": "q5_k_m",
    "sea-q6": "q6_k",
    "sea-q8": "q8_0",
}


def test_sea_profiles_are_never_larger_than_their_stock_budget(
    gemma3_gguf: Path, tiny_llama: Path, smollm2_gguf: Path
):
    """On the tied, 640-wide Gemma they were tuned on, on an untied 256-wide Llama and on
    SmolLM2 (576 wide): [allocate] re-solves the types so the size bound holds on any shape,
    and spends the budget (at least 98 % of it)."""
    for path in (gemma3_gguf, tiny_llama, smollm2_gguf):
        header = read_gguf_header(path)
        for sea, stock in SEA_BUDGETS.items():
            ours = plan_for_header(load_profile(sea), header).n_bytes
            theirs = plan_for_header(load_profile(stock), header).n_bytes
            assert 0.98 * theirs <= ours <= theirs, (path.name, sea, ours / theirs)


def test_allocation_on_the_tuning_model_reproduces_the_written_rules(gemma3_gguf: Path):
    import dataclasses

    header = read_gguf_header(gemma3_gguf)
    for sea in SEA_BUDGETS:
        prof = load_profile(sea)
        solved = plan_for_header(prof, header)
        written = plan_for_header(dataclasses.replace(prof, allocate=None), header)
        assert [t.final for t in solved.tensors] == [t.final for t in written.tensors], sea
        assert any(t.decided_by.endswith("[allocated]") for t in solved.tensors)


def test_allocation_adapts_to_another_shape(tiny_llama: Path):
    """On a 256-wide model the k-quants are on the table and the embedding is untied."""
    plan = plan_for_header(load_profile("sea-q4"), read_gguf_header(tiny_llama))
    finals = {t.final for t in plan.tensors if t.quantize}
    assert finals & {"q4_k", "q5_k", "q6_k"}
    by = {t.name: t for t in plan.tensors}
    assert "allocated" in by["output.weight"].decided_by or by[
        "output.weight"
    ].decided_by.startswith("output_type")


@pytest.mark.parametrize(
    ("allocate", "message"),
    [
        ({"budget": "q4_x", "measurements": "m.json"}, "not a shipped profile"),
        ({"budget": "sea-q4", "measurements": "m.json"}, "itself allocated"),
        ({"budget": 40, "measurements": "m.json"}, "out of range"),
        ({"budget": "q4_k_m", "measurements": "missing.json"}, "not found"),
        ({"budget": "q4_k_m", "measurements": ["m.json", "missing.json"]}, "not found"),
        ({"budget": "q4_k_m", "measurements": []}, "or a list of them"),
        ({"budget": "q4_k_m", "measurements": ["m.json", 3]}, "or a list of them"),
        (
            {"budget": "q4_k_m", "measurements": "m.json", "fixed": ["outputs"]},
            "fixed must be a list of kinds",
        ),
        ({"budget": "q4_k_m", "measurements": "m.json", "colour": 1}, "unknown key(s) colour"),
    ],
)
def test_invalid_allocate_sections(allocate, message, tmp_path: Path):
    (tmp_path / "m.json").write_text(
        '{"settings": {}, "delta": {"output|q8_0": {"eng_Latn": 0.1}}}', encoding="utf-8"
    )
    with pytest.raises(UserError, match=re.escape(message)):
        profile_from_dict({**BASE, "allocate": allocate}, str(tmp_path / "p.toml"))


def test_ggml_type_ids_match_llama_cpp():
    for t in TYPES.values():
        if t.name == "bf16":
            assert t.id == 30
            continue
        assert getattr(llama_cpp, f"GGML_TYPE_{t.name.upper()}") == t.id, t.name


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"default_type": "q4_z"}, "unknown ggml type 'q4_z'"),
        ({"default_type": "f16"}, "not a quantized type"),
        ({"output_type": 7}, "output_type must be a type name"),
        ({"rules": [{"pattern": "attn_(q", "type": "q5_0"}]}, "not a valid regular expression"),
        ({"rules": [{"kind": "attn_v", "layers": "7-3", "type": "q6_k"}]}, "backwards"),
        (
            {"rules": [{"kind": "attn_v", "layers": "2/3-1/3", "type": "q6_k"}]},
            "0 <= start < end <= 1",
        ),
        ({"rules": [{"kind": "attn_v", "layers": "middle", "type": "q6_k"}]}, "not understood"),
        ({"rules": [{"kind": "attn_vv", "type": "q6_k"}]}, "unknown kind 'attn_vv'"),
        ({"rules": [{"kind": "attn_v"}]}, "missing 'type'"),
        ({"rules": [{"type": "q6_k"}]}, "at least one of kind, pattern or layers"),
        ({"rules": [{"kind": "attn_v", "type": "q6_k", "colour": "red"}]}, "unknown key(s) colour"),
        ({"fallbacks": {"q4_k": "q5_k"}}, "smaller block"),
        ({"rules": [{"kind": "ffn_up", "type": "iq2_xs"}]}, "need an importance matrix"),
        ({"target_bpw": 0}, "target_bpw"),
        ({"file_type": "F16"}, "quantized llama.cpp file type"),
        ({"file_type": "Q9_Z"}, "not a llama.cpp file type"),
        (
            {"imatrix": False, "calibration": {"mix": {"tha_Thai": 1}}},
            "only used with imatrix = true",
        ),
        ({"imatrix": True, "calibration": {"mix": {}}}, "non-empty [calibration.mix]"),
        ({"imatrix": True, "calibration": {"mix": {"tha_Thai": 1}, "chunk_size": 8}}, "chunk_size"),
        ({"colour": "red"}, "unknown key(s) colour"),
        ({"output_without_imatrix": "q6_k"}, "must be a list of type names"),
        ({"output_without_imatrix": ["q6_q"]}, "unknown ggml type 'q6_q'"),
    ],
)
def test_invalid_profiles_are_rejected_with_one_line(extra, message):
    with pytest.raises(UserError) as info:
        profile_from_dict({**BASE, **extra}, "bad.toml")
    text = str(info.value)
    assert message in text
    assert "\n" not in text and text.startswith("bad.toml")


def test_missing_required_key_and_bad_toml_name_the_file(tmp_path: Path):
    with pytest.raises(UserError, match="missing required key 'default_type'"):
        profile_from_dict({k: v for k, v in BASE.items() if k != "default_type"}, "x.toml")
    bad = tmp_path / "broken.toml"
    bad.write_text('name = "x"\nsummary = \n', encoding="utf-8")
    with pytest.raises(UserError, match=r"broken\.toml: not valid TOML"):
        load_profile_file(bad)


def test_unknown_profile_name_lists_the_shipped_ones():
    with pytest.raises(UserError) as info:
        load_profile("sea-q7")
    assert "sea-q4" in str(info.value) and "q4_k_m" in str(info.value)


def test_layer_range_past_the_model_is_rejected_at_plan_time():
    prof = _profile(rules=[{"kind": "attn_v", "layers": "6-9", "type": "q6_k"}])
    with pytest.raises(UserError, match="ends past the model's last block"):
        plan_tensors(prof, _model(n_layer=8), n_layer=8)
    prof = _profile(rules=[{"kind": "attn_v", "layers": "12-", "type": "q6_k"}])
    with pytest.raises(UserError, match="starts past"):
        plan_tensors(prof, _model(n_layer=8), n_layer=8)


# ---------------------------------------------------------------------------- selectors


def _sel(text: str, n: int) -> list[int]:
    s = LayerSelector.parse(text)
    return [i for i in range(n) if s.matches(i, n)]


def test_layer_selectors():
    assert _sel("more_bits", 18) == [
        0,
        1,
        4,
        7,
        10,
        13,
        15,
        16,
        17,
    ]  # what llama.cpp's Q4_K_M gave Gemma's attn_v
    assert _sel("first/16", 18) == [0]
    assert _sel("first/8,last/8", 32) == [0, 1, 2, 3, 28, 29, 30, 31]
    assert _sel("first:2", 18) == [0, 1]
    assert _sel("first:2", 1) == [0]
    assert _sel("last:3", 10) == [7, 8, 9]
    assert _sel("2-4, 9", 10) == [2, 3, 4, 9]
    assert _sel("8-", 10) == [8, 9]
    assert _sel("0-1/3", 18) == [0, 1, 2, 3, 4, 5]
    assert _sel("1/3-2/3", 18) == [6, 7, 8, 9, 10, 11]
    assert _sel("2/3-1", 18) == [12, 13, 14, 15, 16, 17]
    assert _sel("50%-100%", 4) == [2, 3]
    assert _sel("all", 3) == [0, 1, 2]


# ---------------------------------------------------------------------------- resolution


def test_first_matching_rule_wins_and_output_type_covers_a_tied_embedding():
    prof = _profile(
        output_type="q8_0",
        rules=[
            {"kind": "attn_v", "layers": "0-1", "type": "q8_0"},
            {"kind": ["attn_v", "attn_k"], "type": "q5_1"},
            {"pattern": r"ffn_down", "layers": "7", "type": "q6_k"},
            {"pattern": r"blk\.7\.", "type": "q4_0"},
        ],
    )
    plan = plan_tensors(prof, _model(), n_layer=8)
    by = {t.name: t for t in plan.tensors}
    assert by["blk.0.attn_v.weight"].final == "q8_0" and by[
        "blk.0.attn_v.weight"
    ].decided_by.startswith("rule 1")
    assert by["blk.5.attn_v.weight"].final == "q5_1" and by[
        "blk.5.attn_v.weight"
    ].decided_by.startswith("rule 2")
    assert by["blk.5.attn_k.weight"].final == "q5_1"
    assert by["blk.7.ffn_down.weight"].final == "q6_k"  # rule 3 before rule 4
    assert by["blk.7.attn_q.weight"].final == "q4_0"
    assert (
        by["blk.6.ffn_down.weight"].final == "q4_k"
        and by["blk.6.ffn_down.weight"].decided_by == "default_type"
    )
    emb = by["token_embd.weight"]
    assert plan.tied_embeddings and emb.final == "q8_0" and "tied" in emb.decided_by
    assert not by["output_norm.weight"].quantize and by["output_norm.weight"].final == "f32"


def test_untied_model_uses_token_embd_type_and_output_type_separately():
    prof = _profile(output_type="q6_k", token_embd_type="q4_0")
    plan = plan_tensors(prof, _model(width=1024, tied=False), n_layer=8)
    by = {t.name: t for t in plan.tensors}
    assert not plan.tied_embeddings
    assert by["output.weight"].final == "q6_k"
    assert by["token_embd.weight"].final == "q4_0"


def test_fallbacks_are_chosen_by_the_profile_and_reported():
    # 640-wide rows cannot hold 256-element k-quant blocks
    plan = plan_tensors(_profile(), _model(), n_layer=8)
    q = next(t for t in plan.tensors if t.name == "blk.0.attn_q.weight")
    assert (q.requested, q.final) == ("q4_k", "q5_0")  # llama.cpp's own fallback by default
    assert "row 640 is not a multiple of 256" in q.fallback
    down = next(
        t for t in plan.tensors if t.name == "blk.0.ffn_down.weight"
    )  # 2048-wide: no fallback
    assert down.final == "q4_k" and down.fallback is None
    assert (
        len(plan.fallbacks) == 8 * 5 + 1
    )  # q, k, v, gate, up per block (640 rows), and the embedding
    # a profile's own fallback table wins
    plan = plan_tensors(_profile(fallbacks={"q4_k": "iq4_nl"}), _model(), n_layer=8)
    q = next(t for t in plan.tensors if t.name == "blk.0.attn_q.weight")
    assert q.final == "iq4_nl" and "q4_k -> iq4_nl" in q.fallback
    # rows that fit no quantized block at all become f16, as in llama.cpp
    odd = [_t("blk.0.attn_q.weight", (100, 64))]
    plan = plan_tensors(_profile(), odd, n_layer=1)
    assert plan.tensors[0].final == "f16" and "q4_k -> q5_0 -> f16" in plan.tensors[0].fallback


def test_plan_sizes_and_overrides_cover_every_quantized_tensor():
    plan = plan_tensors(_profile(default_type="q8_0"), _model(n_layer=2), n_layer=2)
    q8 = TYPES["q8_0"]
    embd = next(t for t in plan.tensors if t.name == "token_embd.weight")
    assert embd.n_bytes == 1000 * q8.row_bytes(640)
    overrides = dict(plan.overrides())
    for t in plan.tensors:
        key = f"^{re.escape(t.name)}$"
        assert (key in overrides) == t.quantize
    assert plan.bits_per_weight == pytest.approx(8.0 * plan.n_bytes / plan.n_params)


def test_unused_rules_are_reported():
    prof = _profile(rules=[{"kind": "attn_qkv", "type": "q6_k"}])
    plan = plan_tensors(prof, _model(n_layer=2), n_layer=2)
    assert plan.unused_rules and "attn_qkv" in plan.unused_rules[0]


def test_profile_file_round_trip(tmp_path: Path):
    path = tmp_path / "mine.toml"
    path.write_text(
        textwrap.dedent(
            """
            name = "mine"
            summary = "A test profile."
            target_bpw = 5.5
            default_type = "q5_k"
            output_type = "q8_0"
            imatrix = true

            [calibration]
            tokens = 4096
            chunk_size = 256
            [calibration.mix]
            tha_Thai = 2
            eng_Latn = 1

            [fallbacks]
            q5_k = "q5_0"

            [[rules]]
            kind = "attn_v"
            layers = "first/8,last/8"
            type = "q8_0"
            """
        ),
        encoding="utf-8",
    )
    prof = load_profile(str(path))
    assert prof.name == "mine" and prof.file_type == "MOSTLY_Q5_K_M"
    assert (
        prof.calibration.mix == {"tha_Thai": 2.0, "eng_Latn": 1.0}
        and prof.calibration.chunk_size == 256
    )
    assert prof.fallbacks["q5_k"] == "q5_0" and prof.fallbacks["q6_k"] == "q8_0"
    assert prof.rules[0].layers.text == "first/8,last/8"
