"""quantize_with_profile end to end on real (small) GGUFs: plan -> imatrix -> llama.cpp ->
evaluation -> metadata, and the guarantees around it: the plan is what gets written, stock
profiles reproduce llama.cpp's own recipes byte for byte, nothing half-written on failure."""

from __future__ import annotations

import hashlib
import json
import mmap
import textwrap
from pathlib import Path

import numpy as np
import pytest

from seachat.convert.errors import UserError
from seachat.convert.gguf_file.ggml_types import file_type_id
from seachat.convert.gguf_file.keys import CALIBRATION_KEY, PROFILE_KEY, QUALITY_KEY
from seachat.convert.gguf_file.reader import read_gguf_header
from seachat.convert.llama.quantizer import run_llama_quantize
from seachat.convert.quant.imatrix import compute_imatrix
from seachat.convert.quant.imatrix_file import read_imatrix, write_imatrix
from seachat.convert.quant.profiles import load_profile
from seachat.convert.quant.quantize import plan_for_header, quantize_with_profile

STOCK = ("q3_k_m", "q4_k_m", "q5_k_m", "q6_k", "q8_0")


def tensor_digests(path: Path) -> dict[str, tuple[str, str]]:
    h = read_gguf_header(path)
    out = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        for t in h.tensors:
            start = h.data_offset + t.offset
            out[t.name] = (t.type_name, hashlib.sha256(m[start : start + t.n_bytes]).hexdigest())
    return out


@pytest.fixture(scope="module")
def small_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A profile exercising every mechanism: imatrix on a token-balanced mix, rules by kind and
    depth, an output type, a fallback override (ffn_down rows are 640 wide here)."""
    path = tmp_path_factory.mktemp("profiles") / "small-sea.toml"
    path.write_text(
        textwrap.dedent(
            """
            name = "small-sea"
            summary = "Test profile for the tiny model."
            target_bpw = 6.0
            default_type = "q4_k"
            output_type = "q6_k"
            token_embd_type = "q5_k"
            imatrix = true

            [calibration]
            tokens = 2048
            chunk_size = 256
            [calibration.mix]
            tha_Thai = 1
            khm_Khmr = 1
            mya_Mymr = 1
            eng_Latn = 1

            [fallbacks]
            q4_k = "iq4_nl"

            [[rules]]
            kind = "attn_v"
            layers = "0-1/2"
            type = "q8_0"

            [[rules]]
            kind = "ffn_down"
            type = "q4_k"
            """
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def quantized(tiny_llama: Path, small_profile: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("q") / "tiny-small-sea.gguf"
    stages: list[str] = []
    report = quantize_with_profile(
        tiny_llama,
        out,
        small_profile,
        threads=2,
        eval_max_tokens=160,
        progress=lambda stage, done, total: stages.append(stage),
        save_imatrix=out.with_suffix(".imatrix.gguf"),
    )
    return report, stages


def test_writes_the_planned_types_metadata_and_report(quantized, tiny_llama: Path):
    report, stages = quantized
    out = report.output
    header = read_gguf_header(out)
    written = {t.name: t.type_name.lower() for t in header.tensors}
    for t in report.plan.tensors:
        assert written[t.name] == t.final
    assert written["blk.0.attn_v.weight"] == "q8_0" and written["blk.3.attn_v.weight"] == "q4_k"
    assert written["blk.0.ffn_down.weight"] == "iq4_nl"  # 640-wide rows: the profile's fallback
    assert written["output.weight"] == "q6_k" and written["token_embd.weight"] == "q5_k"
    assert header.get(PROFILE_KEY) == "small-sea"
    summary = header.get(QUALITY_KEY)
    assert summary.startswith("small-sea: KLD vs F16: worst ") and "top-1" in summary
    assert header.get("general.file_type") == file_type_id("Q4_K_M")
    assert header.get("quantize.imatrix.entries_count") == 28
    # the tokenizer and the rest of the metadata came across
    src = read_gguf_header(tiny_llama)
    assert header.get("tokenizer.ggml.model") == src.get("tokenizer.ggml.model")
    assert {"imatrix", "quantize", "evaluate", "write"} <= set(stages)


def test_every_metadata_string_reads_back_whole(quantized):
    """llama.cpp's key/value override buffer holds 127 bytes: the long calibration record
    goes in after quantizing, and each key reads back exactly as meant."""
    report, _ = quantized
    header = read_gguf_header(report.output)
    info = report.imatrix
    meant = {
        PROFILE_KEY: "small-sea",
        QUALITY_KEY: report.quality_summary,
        "quantize.imatrix.file": "seachat (computed)",
        "quantize.imatrix.dataset": f"seachat token-balanced, {len(info.per_language)} languages",
        CALIBRATION_KEY: json.dumps(info.record(), ensure_ascii=False),
    }
    for key, value in meant.items():
        assert header.get(key) == value, key
    record = json.loads(header.get(CALIBRATION_KEY))
    assert len(header.get(CALIBRATION_KEY).encode()) > 127  # would have been cut before
    assert "khm_Khmr" in record["languages"] and "mya_Mymr" in record["languages"]
    assert record["method"] == "seachat token-balanced" and record["chunk_size"] > 0
    assert record["languages"] == info.per_language and len(record["languages"]) == 4
    assert record["tokens"] == info.tokens >= sum(record["languages"].values())  # + a BOS a chunk


def test_a_string_too_long_for_the_override_buffer_is_refused(tiny_llama: Path, tmp_path: Path):
    out = tmp_path / "cut.gguf"
    with pytest.raises(ValueError, match="override buffer"):
        run_llama_quantize(
            tiny_llama, out, ftype=file_type_id("Q8_0"), kv={"general.description": "ข้อความ" * 20}
        )
    assert not out.exists()


def test_eval_json_beside_the_gguf(quantized):
    report, _ = quantized
    path = report.output.with_name(report.output.name + ".eval.json")
    assert report.eval_json == path
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["profile"] == "small-sea"
    langs = data["languages"]
    for lang in (
        "tha_Thai",
        "khm_Khmr",
        "lao_Laoo",
        "mya_Mymr",
        "arb_Arab",
        "eng_Latn",
        "zho_Hans",
    ):
        r = langs[lang]
        assert r["kld_mean"] > 0 and r["kld_p99"] > 0 and 0 < r["top1"] <= 1
        assert r["ppl_ref"] > 1 and r["ppl"] > 1 and r["tokens_per_char"] > 0
    assert data["imatrix"]["per_language_tokens"] == {
        "eng_Latn": 512,
        "khm_Khmr": 512,
        "mya_Mymr": 512,
        "tha_Thai": 512,
    }
    assert data["fallbacks"]["blk.0.ffn_down.weight"].startswith("row 640")


def test_saved_imatrix_is_what_was_used(
    quantized, tiny_llama: Path, small_profile: Path, tmp_path: Path
):
    """Requantizing with the saved imatrix file gives byte-identical tensors."""
    report, _ = quantized
    im_path = report.output.with_suffix(".imatrix.gguf")
    assert read_imatrix(im_path).datasets[0].startswith("seachat token-balanced calibration")
    again = tmp_path / "again.gguf"
    quantize_with_profile(
        tiny_llama, again, small_profile, imatrix=im_path, evaluate=False, threads=2
    )
    assert tensor_digests(again) == tensor_digests(report.output)


@pytest.mark.parametrize("name", STOCK)
def test_stock_profiles_reproduce_llama_cpp_recipes_on_the_tiny_model(
    name: str, tiny_llama: Path, tmp_path: Path
):
    """Same types as llama.cpp's own ftype recipe, and byte-identical tensors."""
    prof = load_profile(name)
    ours = quantize_with_profile(
        tiny_llama, tmp_path / "ours.gguf", name, evaluate=False, threads=2
    )
    theirs = tmp_path / "theirs.gguf"
    run_llama_quantize(tiny_llama, theirs, ftype=file_type_id(prof.stock), threads=2)
    assert tensor_digests(ours.output) == tensor_digests(theirs)


@pytest.mark.slow
def test_stock_profiles_reproduce_llama_cpp_on_gemma3_with_an_imatrix(
    gemma3_f16: Path, tmp_path: Path, sea_texts
):
    """Gemma 3's 640-wide rows exercise every fallback; fed the same imatrix, the profile path
    and llama.cpp's ftype path write identical bytes."""
    from seachat.convert.llama.core import Model
    from seachat.convert.quant.calibration import build_calibration

    with Model(gemma3_f16, vocab_only=True) as m:
        cset = build_calibration(m, sea_texts, mix=None, total_tokens=1536, chunk_size=256)
    im = compute_imatrix(gemma3_f16, cset.chunks, n_ctx=256, threads=2)
    im_path = write_imatrix(im, tmp_path / "im.gguf")
    header = read_gguf_header(gemma3_f16)
    for name in STOCK:
        prof = load_profile(name)
        plan = plan_for_header(prof, header)
        theirs = tmp_path / f"{name}-llama.gguf"
        run_llama_quantize(
            gemma3_f16, theirs, ftype=file_type_id(prof.stock), imatrix=im.means(), threads=2
        )
        written = {t.name: t.type_name.lower() for t in read_gguf_header(theirs).tensors}
        assert {t.name: t.final for t in plan.tensors} == written, name
        if name == "q4_k_m":
            ours = quantize_with_profile(
                gemma3_f16, tmp_path / "ours.gguf", name, imatrix=im_path, evaluate=False, threads=2
            )
            assert tensor_digests(ours.output) == tensor_digests(theirs)
        theirs.unlink()


def test_requantizing_a_quantized_file_needs_consent(gemma3_gguf: Path, tmp_path: Path):
    with pytest.raises(UserError, match="already-quantized tensors"):
        quantize_with_profile(gemma3_gguf, tmp_path / "x.gguf", "q4_k_m", evaluate=False)
    assert not list(tmp_path.iterdir())


def test_refuses_to_overwrite_and_rejects_bad_profiles_before_work(
    tiny_llama: Path, tmp_path: Path
):
    out = tmp_path / "exists.gguf"
    out.write_bytes(b"user data")
    with pytest.raises(UserError, match="already exists"):
        quantize_with_profile(tiny_llama, out, "q4_k_m", evaluate=False)
    assert out.read_bytes() == b"user data"
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "bad"\nsummary = "x"\ntarget_bpw = 4.0\ndefault_type = "q4_q"\n', encoding="utf-8"
    )
    with pytest.raises(UserError, match=r"bad\.toml: default_type: unknown ggml type 'q4_q'"):
        quantize_with_profile(tiny_llama, tmp_path / "new.gguf", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "exists.gguf"]


def test_interrupted_run_leaves_nothing_behind(tiny_llama: Path, tmp_path: Path):
    """Ctrl-C during the evaluation: no output, no temporary file."""

    def interrupt(stage: str, done: int, total: int) -> None:
        if stage == "evaluate":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quantize_with_profile(
            tiny_llama,
            tmp_path / "out.gguf",
            "q4_k_m",
            threads=2,
            progress=interrupt,
            eval_max_tokens=64,
        )
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder_is_a_clear_error(tiny_llama: Path, tmp_path: Path):
    with pytest.raises(UserError, match="output folder does not exist"):
        quantize_with_profile(tiny_llama, tmp_path / "no" / "out.gguf", "q4_k_m", evaluate=False)


def test_metadata_edit_keeps_tensors_and_replaces_keys(tiny_llama: Path, tmp_path: Path):
    from seachat.convert.gguf_file.kv_edit import set_metadata
    from seachat.convert.llama.core import Model

    first = tmp_path / "a.gguf"
    set_metadata(tiny_llama, first, {PROFILE_KEY: "x", QUALITY_KEY: "first ทดสอบ"})
    set_metadata(first, first, {QUALITY_KEY: "second ຂໍ້ຄວາມ"})  # in place, replacing
    src, out = read_gguf_header(tiny_llama), read_gguf_header(first)
    assert out.get(QUALITY_KEY) == "second ຂໍ້ຄວາມ" and out.get(PROFILE_KEY) == "x"
    assert len(out.metadata) == len(src.metadata) + 2
    assert tensor_digests(first) == tensor_digests(tiny_llama)
    with Model(first) as m:  # llama.cpp reads it
        assert m.meta(QUALITY_KEY) == "second ຂໍ້ຄວາມ"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gguf"]  # no temporary left


def test_an_imatrix_for_another_model_is_rejected(tiny_llama: Path, tmp_path: Path):
    from seachat.convert.quant.imatrix import Imatrix, ImatrixEntry

    wrong = Imatrix(
        {"blk.0.attn_q.weight": ImatrixEntry(np.ones((1, 640)), np.array([10]))}, ["x"], 1, 512
    )
    path = write_imatrix(wrong, tmp_path / "other.gguf")
    with pytest.raises(
        UserError, match=r"other\.gguf: blk\.0\.attn_q\.weight has 640 values .* 256 columns"
    ):
        quantize_with_profile(
            tiny_llama, tmp_path / "out.gguf", "q4_k_m", imatrix=path, evaluate=False
        )
    assert not (tmp_path / "out.gguf").exists()


def test_output_is_quantized_without_its_imatrix_entry_where_the_profile_says(
    tiny_llama: Path, tmp_path: Path, sea_texts
):
    """output_without_imatrix = ["q6_k"]: llama.cpp gets the matrix minus output.weight's
    entry (byte-identical to quantizing with it removed, unlike with it), and the calibration
    record says so."""
    from seachat.convert.llama.core import Model
    from seachat.convert.quant.calibration import build_calibration

    with Model(tiny_llama, vocab_only=True) as m:
        cset = build_calibration(m, sea_texts, mix=None, total_tokens=1024, chunk_size=128)
    im = compute_imatrix(tiny_llama, cset.chunks, n_ctx=128, threads=2, process_output=True)
    assert "output.weight" in im.entries
    im_path = write_imatrix(im, tmp_path / "im.gguf")
    prof = tmp_path / "out-q6.toml"
    prof.write_text(
        'name = "out-q6"\nsummary = "x"\ntarget_bpw = 8.5\ndefault_type = "q8_0"\n'
        'file_type = "Q8_0"\noutput_type = "q6_k"\noutput_without_imatrix = ["q6_k"]\n'
        "imatrix = true\n",
        encoding="utf-8",
    )
    ours = quantize_with_profile(
        tiny_llama, tmp_path / "ours.gguf", prof, imatrix=im_path, evaluate=False, threads=2
    )
    overrides = [("^output\\.weight$", 14)]  # GGML_TYPE_Q6_K
    means = im.means()
    digests = {}
    for label, given in (
        ("without", {k: v for k, v in means.items() if k != "output.weight"}),
        ("with", means),
    ):
        path = tmp_path / f"{label}.gguf"
        run_llama_quantize(tiny_llama, path, ftype=7, overrides=overrides, imatrix=given, threads=2)
        digests[label] = tensor_digests(path)["output.weight"]
    mine = tensor_digests(ours.output)["output.weight"]
    assert mine == digests["without"] != digests["with"]
    record = json.loads(read_gguf_header(ours.output).get(CALIBRATION_KEY))
    assert any("output.weight quantized to q6_k without" in n for n in record["notes"])
