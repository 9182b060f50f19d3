"""The command as a user runs it: --dry-run plans without writing; a real run prints the
per-language parity table and writes the file."""

from __future__ import annotations

from tests.convert.conftest import run_cli


def test_dry_run_prints_plan_and_writes_nothing(tiny_dir, tmp_path) -> None:
    out = tmp_path / "never.gguf"
    r = run_cli("convert", str(tiny_dir("gemma3-fast")), "-o", str(out), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "token_embd.weight" in r.stdout and "trimmed from" in r.stdout
    assert "blk.0.attn_norm.weight (+1)" in r.stdout
    assert "Output size" in r.stdout
    assert list(tmp_path.iterdir()) == []


def test_dry_run_shows_rope_permutation(tiny_dir) -> None:
    r = run_cli("convert", str(tiny_dir("llama-spm")), "--dry-run", "--outtype", "q8_0")
    assert r.returncode == 0, r.stderr
    assert "blk.0.attn_q.weight (rope-permuted)" in r.stdout
    assert "Q8_0" in r.stdout


def test_convert_prints_parity_table(tiny_dir, tmp_path) -> None:
    out = tmp_path / "m.gguf"
    r = run_cli("convert", str(tiny_dir("qwen2-bpe")), "-o", str(out))
    assert r.returncode == 0, r.stderr
    for lang in ("tha_Thai", "khm_Khmr", "lao_Laoo", "mya_Mymr", "arb_Arab", "combining nfd"):
        assert lang in r.stdout
    assert "NFC" in r.stdout  # the normalization note
    assert out.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


def test_bad_outtype_is_a_usage_error(tiny_dir, tmp_path) -> None:
    r = run_cli(
        "convert", str(tiny_dir("llama-spm")), "-o", str(tmp_path / "x.gguf"), "--outtype", "q4_0"
    )
    assert r.returncode == 2
    assert "q4_0" in r.stderr
