"""`seachat publish`: the generated card checked field by field (YAML parsed, tables read
back), and a real upload through huggingface-hub's create_commit to the loopback Hub, pulled
back with the tag the card advertises."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

from seachat.app.library.model_info import PLANNING_CONTEXT, read_model_info
from seachat.convert.gguf_file.reader import read_gguf_header
from seachat.convert.units import human_bytes
from tests.app.fakehub import FakeHub
from tests.app.libtest import THAI_NAME, write_gguf

REPO = "sea-pub/Tiny-Thai-seachat-GGUF"
SOURCE = "https://huggingface.co/sea-org/Tiny-Thai-Chat"

REPORT = {
    "reference": "Tiny-Thai-F16.gguf",
    "text": "flores200-dev",
    "languages": {
        "tha_Thai": {"kld_mean": 0.0213, "kld_p99": 0.31, "top1": 0.962},
        "khm_Khmr": {"kld_mean": 0.0342, "kld_p99": 0.52, "top1": 0.941},
        "lao_Laoo": {"kld_mean": 0.0298, "top1": 0.950},
        "mya_Mymr": {"kld_mean": 0.0415, "top1": 93.1},  # a percentage is read as one
        "arb_Arab": {"kld_mean": 0.0187, "top1": 0.968},
        "eng_Latn": {"kld_mean": 0.0121, "top1": 0.977},
    },
}


@pytest.fixture
def release(tmp_path: Path) -> Path:
    out = tmp_path / "release"
    common = {
        "name": THAI_NAME,
        "license": "apache-2.0",
        "source_url": SOURCE,
        "base_model": ("Qwen", "Qwen2.5-0.5B"),  # the checkpoint's own base: not what we quantize
    }
    write_gguf(
        out / "Tiny-Thai-sea-q4.gguf",
        profile="sea-q4",
        languages=["tha_Thai", "khm_Khmr", "lao_Laoo", "mya_Mymr", "arb_Arab", "en"],
        imatrix_dataset="seachat-calibration-v1.txt",
        extra={"seachat.quant.quality_summary": "worst KLD 0.0415 (mya_Mymr)"},
        n_bytes=300 << 10,
        seed=1,
        **common,
    )
    write_gguf(
        out / "Tiny-Thai-Q4_K_M.gguf", languages=["th", "en"], n_bytes=280 << 10, seed=2, **common
    )
    (out / "Tiny-Thai-sea-q4.gguf.eval.json").write_text(json.dumps(REPORT), encoding="utf-8")
    (out / "notes.txt").write_text("not uploaded")
    return out


def split_card(text: str) -> tuple[dict, str]:
    m = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
    assert m, "card starts with YAML front matter"
    return yaml.safe_load(m.group(1)), m.group(2)


def table_rows(body: str, first_header: str) -> list[list[str]]:
    lines = body.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first_header} |"))
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split(" | ")])
    return rows  # header, rule, rows...


def test_dry_run_card_field_by_field(seachat, fake_hub: FakeHub, release: Path):
    r = seachat("publish", str(release), "--repo", REPO, "--dry-run")
    assert r.returncode == 0, r.output
    assert fake_hub.requests == [], "a dry run sends nothing"
    assert "Dry run: nothing was uploaded." in r.stdout
    listed = [
        ln.split()[0] for ln in r.stdout.splitlines() if ln.startswith("  ") and ":" not in ln
    ]
    assert listed == [
        "Tiny-Thai-Q4_K_M.gguf",
        "Tiny-Thai-sea-q4.gguf",
        "Tiny-Thai-sea-q4.gguf.eval.json",
        "README.md",
    ]

    meta, body = split_card((release / "README.md").read_text(encoding="utf-8"))
    # Front matter, field by field.
    assert meta["base_model"] == "sea-org/Tiny-Thai-Chat"  # the converted checkpoint (source)
    assert meta["base_model_relation"] == "quantized"
    assert meta["language"] == ["th", "km", "lo", "my", "ar", "en"]  # FLORES codes normalized
    assert meta["license"] == "apache-2.0"
    assert meta["pipeline_tag"] == "text-generation"
    assert meta["library_name"] == "gguf"
    assert {"gguf", "seachat", "quantized", "llama", "imatrix"} <= set(meta["tags"])

    assert body.count(f"# {THAI_NAME} — GGUF") == 1
    # Files table: every number read back from the GGUF itself.
    header, _rule, *rows = table_rows(body, "File")
    assert header[-2:] == ["Mean KLD", "Worst language (KLD)"]
    by_file = {re.match(r"\[(.*?)\]", row[0]).group(1): row for row in rows}
    assert set(by_file) == {"Tiny-Thai-Q4_K_M.gguf", "Tiny-Thai-sea-q4.gguf"}
    for name, row in by_file.items():
        path = release / name
        info, hdr = read_model_info(path), read_gguf_header(path)
        assert row[1] == (info.profile or "–")
        assert row[2] == info.quantization
        assert row[3] == human_bytes(path.stat().st_size)
        assert row[4] == f"{hdr.bits_per_weight:.2f}"
        assert row[5] == human_bytes(info.ram_needed(PLANNING_CONTEXT))
    assert by_file["Tiny-Thai-sea-q4.gguf"][6] == "`sea-q4`"
    assert by_file["Tiny-Thai-Q4_K_M.gguf"][6] == "`Q4_K_M`"
    means = [v["kld_mean"] for v in REPORT["languages"].values()]
    assert by_file["Tiny-Thai-sea-q4.gguf"][7] == f"{sum(means) / len(means):.4f}"
    assert by_file["Tiny-Thai-sea-q4.gguf"][8] == "Burmese (mya_Mymr) 0.0415"
    assert by_file["Tiny-Thai-Q4_K_M.gguf"][7:] == ["–", "–"]  # no report, no numbers
    assert "`Tiny-Thai-sea-q4.gguf`: worst KLD 0.0415 (mya_Mymr)" in body

    # Quality per language, one row per language, from the report.
    header, _rule, *rows = table_rows(body, "Language")
    assert header == ["Language", "sea-q4 KLD", "sea-q4 top-1"]
    quality = {row[0]: row[1:] for row in rows}
    assert quality["Thai (tha_Thai)"] == ["0.0213", "96.2%"]
    assert quality["Khmer (khm_Khmr)"] == ["0.0342", "94.1%"]
    assert quality["Lao (lao_Laoo)"] == ["0.0298", "95.0%"]
    assert quality["Burmese (mya_Mymr)"] == ["0.0415", "93.1%"]
    assert quality["Arabic (arb_Arab)"] == ["0.0187", "96.8%"]
    assert "against `Tiny-Thai-F16.gguf` on `flores200-dev`" in body

    # How to run, calibration, languages in their own scripts, license.
    assert f"seachat pull {REPO}:sea-q4" in body
    assert f"llama-cli -hf {REPO} -hff Tiny-Thai-sea-q4.gguf" in body
    assert (
        "`Tiny-Thai-sea-q4.gguf`: importance matrix computed on `seachat-calibration-v1.txt` (128 chunks)"
        in body
    )
    assert "`Tiny-Thai-Q4_K_M.gguf`: no importance matrix" in body
    for native in ("ไทย", "ខ្មែរ", "ລາວ", "မြန်မာ", "العربية"):
        assert native in body
    assert "`apache-2.0`" in body


def test_missing_reports_leave_the_quality_columns_out(seachat, release: Path):
    (release / "Tiny-Thai-sea-q4.gguf.eval.json").unlink()
    assert seachat("publish", str(release), "--repo", REPO, "--dry-run").returncode == 0
    _, body = split_card((release / "README.md").read_text(encoding="utf-8"))
    header, *_ = table_rows(body, "File")
    assert "Mean KLD" not in header and len(header) == 7
    assert "## Quality per language" not in body


def test_flags_override_metadata(seachat, release: Path):
    r = seachat(
        "publish", str(release), "--repo", REPO, "--dry-run",
        "--base-model", "https://huggingface.co/other/Base-Model",
        "--license", "mit",
        "--language", "th", "--language", "khm_Khmr", "--language", "fil",
        "--calibration", "ข้อความไทยและภาษาเขมร 2 MB",
    )  # fmt: skip
    assert r.returncode == 0, r.output
    meta, body = split_card((release / "README.md").read_text(encoding="utf-8"))
    assert meta["base_model"] == "other/Base-Model"
    assert meta["license"] == "mit"
    assert meta["language"] == ["th", "km", "tl"]
    assert "ข้อความไทยและภาษาเขมร 2 MB" in body
    assert "base_model: from --base-model" in r.stdout


def test_bad_inputs_are_refused_with_the_file_named(seachat, release: Path, tmp_path: Path):
    report = release / "Tiny-Thai-sea-q4.gguf.eval.json"
    report.write_text('{"languages": {"tha_Thai": {"kld_mean": "low"}}}')
    r = seachat("publish", str(release), "--repo", REPO, "--dry-run")
    assert r.returncode == 2 and str(report) in r.stderr and "not a number" in r.stderr

    report.unlink()
    readme = release / "README.md"
    readme.write_text("# My own notes — ของฉันเอง\n", encoding="utf-8")
    r = seachat("publish", str(release), "--repo", REPO, "--dry-run")
    assert r.returncode == 2 and "not written by seachat" in r.stderr
    assert readme.read_text(encoding="utf-8") == "# My own notes — ของฉันเอง\n"

    empty = tmp_path / "empty"
    empty.mkdir()
    r = seachat("publish", str(empty), "--repo", REPO, "--dry-run")
    assert r.returncode == 2 and "no .gguf files" in r.stderr
    r = seachat("publish", str(release), "--repo", "not a repo", "--dry-run")
    assert r.returncode == 2 and "OWNER/NAME" in r.stderr


def test_publish_uploads_one_commit_and_pulls_back(
    seachat, fake_hub: FakeHub, release: Path, models_dir: Path
):
    env = {"HF_TOKEN": "hf_write_token"}
    r = seachat("publish", str(release), "--repo", REPO, env=env)
    assert r.returncode == 0, r.output
    assert "Published:" in r.stdout
    repo = fake_hub.repos[REPO]
    assert len(repo.commits) == 1, "files and card land in one commit"
    assert set(repo.files) == {
        "Tiny-Thai-Q4_K_M.gguf",
        "Tiny-Thai-sea-q4.gguf",
        "Tiny-Thai-sea-q4.gguf.eval.json",
        "README.md",
    }
    for name in ("Tiny-Thai-Q4_K_M.gguf", "Tiny-Thai-sea-q4.gguf"):
        data = (release / name).read_bytes()
        assert repo.files[name] == data
        assert hashlib.sha256(data).hexdigest() in fake_hub.uploaded  # went through LFS
    assert repo.files["README.md"] == (release / "README.md").read_bytes()
    assert fake_hub.validated == [repo.files["README.md"].decode("utf-8")]  # Hub accepted the YAML
    assert all(
        q["auth"] == "Bearer hf_write_token" for q in fake_hub.requests if q["role"] == "hub"
    )

    # The command the card advertises works against what was uploaded.
    _, body = split_card(repo.files["README.md"].decode("utf-8"))
    tag = re.search(rf"seachat pull {re.escape(REPO)}:(\S+)", body).group(1)
    pulled = seachat("pull", f"{REPO}:{tag}")
    assert pulled.returncode == 0, pulled.output
    assert (models_dir / "Tiny-Thai-sea-q4.gguf").read_bytes() == (
        release / "Tiny-Thai-sea-q4.gguf"
    ).read_bytes()


def test_publish_without_a_token_says_how_to_log_in(seachat, release: Path):
    r = seachat("publish", str(release), "--repo", REPO)
    assert r.returncode == 2
    assert "hf auth login" in r.stderr
