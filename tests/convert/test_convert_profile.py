"""`seachat convert SRC --profile NAME`: checkpoint → verified F16 → quantized GGUF in one
command, with the per-language report beside it and nothing else left in the folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gguf import GGMLQuantizationType, GGUFReader

from seachat.convert.gguf_file.keys import PROFILE_KEY, QUALITY_KEY
from tests.convert.conftest import run_cli

REPO = Path(__file__).parents[2]
SCRIPTS = ["tha_Thai", "khm_Khmr", "lao_Laoo", "mya_Mymr", "arb_Arab", "eng_Latn"]


def _eval_subset(tmp_path: Path) -> Path:
    folder = tmp_path / "eval"
    folder.mkdir()
    for lang in SCRIPTS:
        shutil.copy(REPO / "convert" / "data" / "eval" / f"{lang}.txt", folder)
    return folder


def test_convert_with_a_profile_writes_the_quantized_file_and_its_report(tiny_dir, tmp_path):
    src = tiny_dir("llama-spm")
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "tiny-sea-q4.gguf"
    r = run_cli(
        "convert", str(src), "-o", str(out), "--profile", "sea-q4",
        "--eval-text", str(_eval_subset(tmp_path)), "--threads", "2",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    # The conversion was verified (parity table) before quantizing, then evaluated per script.
    assert "Tokenizer parity" in r.stdout
    for lang in SCRIPTS:
        assert lang in r.stdout
    # Only the result and its report: the verified intermediate and temp files are gone.
    assert sorted(p.name for p in outdir.iterdir()) == [out.name, out.name + ".eval.json"]
    reader = GGUFReader(out)
    profile = reader.fields[PROFILE_KEY]
    assert bytes(profile.parts[profile.data[0]]).decode() == "sea-q4"
    assert QUALITY_KEY in reader.fields
    types = {t.tensor_type for t in reader.tensors}
    assert types - {GGMLQuantizationType.F32, GGMLQuantizationType.F16}, types
    report = json.loads((outdir / (out.name + ".eval.json")).read_text(encoding="utf-8"))
    assert "tha_Thai" in json.dumps(report, ensure_ascii=False)
    # The report names the checkpoint, not the deleted intermediate.
    assert report["source"] == report["reference"] == f"{src} (converted by seachat, F16)"


def test_convert_rejects_a_bad_profile_before_any_work(tiny_dir, tmp_path):
    src = tiny_dir("llama-spm")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nsummary = "x"\ndefault_type = "q9_z"\n', encoding="utf-8")
    out = tmp_path / "out.gguf"
    for profile in (str(bad), "sea-q99"):
        r = run_cli("convert", str(src), "-o", str(out), "--profile", profile)
        assert r.returncode != 0
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, r.stderr
        assert "Tokenizer parity" not in r.stdout  # stopped before converting
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_quantization_options_need_a_profile(tiny_dir, tmp_path):
    r = run_cli("convert", str(tiny_dir("llama-spm")), "-o", str(tmp_path / "o.gguf"), "--no-eval")
    assert r.returncode != 0 and "need --profile" in r.stderr
