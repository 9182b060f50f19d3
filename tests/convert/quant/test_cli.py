"""The quantization commands as a person runs them: `seachat profiles`, `quantize`, `eval`,
`imatrix` — output, JSON, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from seachat.app.cli import main

REPO = Path(__file__).parents[3]
EVAL_DIR = REPO / "convert" / "data" / "eval"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seachat.app", *args], capture_output=True, text=True, timeout=600
    )


def test_profiles_lists_every_profile_with_bpw(capsys):
    main(["profiles"])
    out = capsys.readouterr().out
    for name in (
        "sea-q3",
        "sea-q4*",
        "sea-q5",
        "sea-q6",
        "sea-q8",
        "q3_k_m",
        "q4_k_m",
        "q5_k_m",
        "q6_k",
    ):
        assert name in out
    assert "bpw" in out


def test_profiles_json_with_a_model(tiny_llama: Path, capsys):
    main(["profiles", "--json", "--model", str(tiny_llama)])
    rows = json.loads(capsys.readouterr().out)
    by = {r["name"]: r for r in rows}
    assert by["q4_k_m"]["stock"] == "Q4_K_M" and by["sea-q4"]["imatrix"] is True
    assert by["q6_k"]["bpw"] > by["q4_k_m"]["bpw"] > by["q3_k_m"]["bpw"]
    assert by["q4_k_m"]["fallbacks"] == 4  # the tiny model's 640-wide ffn_down rows


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_llama: Path, tmp_path: Path, capsys):
    main(
        [
            "quantize",
            str(tiny_llama),
            "--profile",
            "q4_k_m",
            "-o",
            str(tmp_path / "x.gguf"),
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert "blk.0.ffn_down.weight" in out and "row 640 is not a multiple of 256" in out
    assert "bits per weight" in out
    assert not list(tmp_path.iterdir())


def test_invalid_profile_is_one_line_exit_2_and_nothing_written(tiny_llama: Path, tmp_path: Path):
    bad = tmp_path / "oops.toml"
    bad.write_text(
        'name = "oops"\nsummary = "x"\ntarget_bpw = 4.5\ndefault_type = "q4_k"\n\n[[rules]]\nkind = "attn_v"\nlayers = "2-9"\ntype = "q6_k"\n',
        encoding="utf-8",
    )
    out = tmp_path / "out.gguf"
    res = run_cli("quantize", str(tiny_llama), "--profile", str(bad), "-o", str(out))
    assert res.returncode == 2
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("seachat: error: ") and "oops.toml" in lines[0]
    assert "ends past the model's last block (3)" in lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["oops.toml"]


def test_unknown_type_in_a_profile_via_cli(tiny_llama: Path, tmp_path: Path):
    bad = tmp_path / "typo.toml"
    bad.write_text(
        'name = "typo"\nsummary = "x"\ntarget_bpw = 4.5\ndefault_type = "q4_km"\n', encoding="utf-8"
    )
    res = run_cli(
        "quantize", str(tiny_llama), "--profile", str(bad), "-o", str(tmp_path / "o.gguf")
    )
    assert res.returncode == 2 and "unknown ggml type 'q4_km'" in res.stderr


def test_eval_json_to_stdout(tiny_llama: Path, tmp_path: Path, capsys):
    from seachat.convert.llama.quantizer import run_llama_quantize

    q = tmp_path / "q.gguf"
    run_llama_quantize(tiny_llama, q, ftype=15, threads=2)
    main(
        [
            "eval",
            str(q),
            "--ref",
            str(tiny_llama),
            "--text",
            str(EVAL_DIR),
            "--languages",
            "khm_Khmr,lao_Laoo",
            "--max-tokens",
            "64",
            "--json",
            "-",
            "-t",
            "2",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert set(data["languages"]) == {"khm_Khmr", "lao_Laoo"}
    assert data["languages"]["khm_Khmr"]["kld_mean"] > 0


def test_imatrix_command_writes_a_gguf_imatrix(tiny_llama: Path, tmp_path: Path):
    from seachat.convert.quant.imatrix_file import read_imatrix

    out = tmp_path / "im.gguf"
    main(
        [
            "imatrix",
            str(tiny_llama),
            "-o",
            str(out),
            "--calibration",
            str(Path(__file__).parent / "data" / "imatrix-text.tha_Thai.txt"),
            "--plain",
            "--chunk",
            "256",
            "-t",
            "2",
        ]
    )
    im = read_imatrix(out)
    # sea-q4 (the default profile) also weighs the output projection's columns
    assert im.chunk_count == 26 and len(im.entries) == 29 and "output.weight" in im.entries


@pytest.mark.parametrize(
    "args",
    [["eval", "nope.gguf", "--ref", "nope.gguf"], ["quantize", "missing.gguf", "-o", "x.gguf"]],
)
def test_missing_files_are_clear_errors(args, tmp_path: Path):
    res = run_cli(*args)
    assert res.returncode == 2
    assert "nope.gguf" in res.stderr or "missing.gguf" in res.stderr
