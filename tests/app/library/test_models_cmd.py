"""`seachat models` and `seachat rm` on a library of real GGUF files whose names are in the
scripts seachat is for, plus a broken file and an unfinished download."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.fakehub import FakeHub, Faults
from tests.app.libtest import (
    ARABIC_NAME,
    BURMESE_NAME,
    KHMER_NAME,
    LAO_NAME,
    THAI_NAME,
    write_gguf,
)
from tests.fixtures.terminal_width import glibc_width

NAMES = {
    "thai-sea-q4.gguf": (THAI_NAME, ["th"], "sea-q4"),
    "khmer-Q4_K_M.gguf": (KHMER_NAME, ["km", "en"], None),
    "lao-Q5_K_M.gguf": (LAO_NAME, ["lo"], None),
    "burmese-sea-q6.gguf": (BURMESE_NAME, ["my"], "sea-q6"),
    "arabic-Q8_0.gguf": (ARABIC_NAME, ["ar", "en"], None),
}


@pytest.fixture
def library(models_dir: Path) -> Path:
    for i, (file, (name, langs, profile)) in enumerate(NAMES.items()):
        write_gguf(
            models_dir / file, name=name, languages=langs, profile=profile, seed=i, n_bytes=64 << 10
        )
    # Many languages: the column shows the first ones and a count.
    write_gguf(
        models_dir / "sea-all.gguf",
        name="SEA all",
        languages=["th", "km", "lo", "my", "vi", "id", "ms", "tl", "ta", "ar"],
        seed=9,
        n_bytes=64 << 10,
    )
    # Does not fit in any laptop's RAM: 1000 layers of 64 heads × 128 dims, 1M context.
    write_gguf(
        models_dir / "huge-kv.gguf",
        name="Huge KV",
        block_count=1000,
        embedding_length=8192,
        head_count=64,
        context_length=1 << 20,
        n_bytes=64 << 10,
    )
    (models_dir / "broken.gguf").write_bytes(b"NOTAGGUF" + os.urandom(100))
    good = (models_dir / "khmer-Q4_K_M.gguf").read_bytes()
    (models_dir / "truncated.gguf").write_bytes(good[:200])
    return models_dir


def test_models_lists_every_file_with_its_facts(seachat, library: Path):
    r = seachat("models")
    assert r.returncode == 0, r.output
    out = r.stdout
    rows = {
        line.rsplit("  ", 1)[-1].strip(): line
        for line in out.splitlines()
        if line.rstrip().endswith(".gguf")
    }
    for file, (name, langs, profile) in NAMES.items():
        row = rows[file]
        assert row.lstrip().startswith(name), row
        assert "llama" in row
        assert ", ".join(langs) in row
        if profile:
            assert f"{profile} (Q4_K_M)" in row
        assert " yes " in row
    assert "th, km, lo, my, vi +5" in rows["sea-all.gguf"]
    assert "no, needs" in rows["huge-kv.gguf"]
    # Columns line up on screen whatever the script: FILE starts at one screen column.
    starts = {glibc_width(line[: line.index(file)]) for file, line in rows.items()}
    assert len(starts) == 1, starts
    # Broken files are shown, with why, and never hide the rest.
    assert "broken.gguf  broken: not a GGUF file (bad magic)" in out
    assert "truncated.gguf  broken: truncated" in out


def test_models_json_and_dir_flag(seachat, library: Path, tmp_path: Path):
    data = json.loads(seachat("models", "--json").stdout)
    by_file = {m["file"]: m for m in data["models"]}
    assert by_file["thai-sea-q4.gguf"]["name"] == THAI_NAME
    assert by_file["thai-sea-q4.gguf"]["profile"] == "sea-q4"
    assert by_file["burmese-sea-q6.gguf"]["languages"] == ["my"]
    assert by_file["huge-kv.gguf"]["fits_in_ram"] is False
    assert {Path(b["path"]).name for b in data["broken"]} == {"broken.gguf", "truncated.gguf"}

    other = tmp_path / "elsewhere"
    write_gguf(other / "only.gguf", name=LAO_NAME)
    data = json.loads(seachat("models", "--json", "--models-dir", str(other)).stdout)
    assert [m["file"] for m in data["models"]] == ["only.gguf"]


def test_unfinished_download_is_listed_with_its_resume_command(
    seachat, fake_hub: FakeHub, models_dir: Path, tmp_path: Path
):
    src = write_gguf(tmp_path / "x.gguf", name=THAI_NAME, n_bytes=2 << 20)
    fake_hub.add_repo("org/thai-GGUF", {"thai-Q4_K_M.gguf": src.read_bytes()})
    fake_hub.faults["thai-Q4_K_M.gguf"] = Faults(cut_after=[1 << 20])
    assert seachat("pull", "org/thai-GGUF:Q4_K_M", "--retries", "0").returncode == 2
    out = seachat("models").stdout
    assert "Unfinished downloads:" in out
    assert "thai-Q4_K_M.gguf.part  1.0 MiB of 2.0 MiB (50%)" in out
    assert "resume: seachat pull org/thai-GGUF:thai-Q4_K_M.gguf" in out
    assert "thai-Q4_K_M.gguf  " not in out.split("Unfinished")[0], "a partial is not a model"

    r = seachat("rm", "thai-Q4_K_M.gguf.part", "--yes")
    assert r.returncode == 0, r.output
    assert not list(models_dir.glob("thai-Q4_K_M.gguf.part*"))


def test_rm_asks_first_and_removes_the_source_record(
    seachat, fake_hub: FakeHub, models_dir, tmp_path
):
    src = write_gguf(tmp_path / "x.gguf", name=KHMER_NAME)
    fake_hub.add_repo("org/khmer-GGUF", {"khmer-Q4_K_M.gguf": src.read_bytes()})
    assert seachat("pull", "org/khmer-GGUF").returncode == 0
    model = models_dir / "khmer-Q4_K_M.gguf"
    record = models_dir / ".sources" / "khmer-Q4_K_M.gguf.json"
    assert model.exists() and record.exists()

    r = seachat("rm", "khmer-Q4_K_M")  # no terminal, no --yes: refuse
    assert r.returncode == 2 and "pass --yes" in r.stderr
    assert model.exists()

    r = seachat("rm", KHMER_NAME, "--yes")  # by the model's own (Khmer) name
    assert r.returncode == 0, r.output
    assert not model.exists() and not record.exists()


def _rm_on_a_terminal(env: dict[str, str], name: str, answer: str) -> str:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "seachat.app", "rm", name],
        env=env,
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    os.close(slave)
    os.write(master, answer.encode())
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    return out


def test_rm_confirmation_on_a_terminal(library_env, library: Path):
    target = library / "lao-Q5_K_M.gguf"
    out = _rm_on_a_terminal(library_env, "lao-Q5_K_M.gguf", "n\n")
    assert "Remove" in out and "Kept." in out
    assert target.exists()
    out = _rm_on_a_terminal(library_env, "lao-Q5_K_M.gguf", "y\n")
    assert "Removed" in out
    assert not target.exists()


def test_rm_refuses_unknown_ambiguous_and_outside_files(seachat, library: Path, tmp_path: Path):
    r = seachat("rm", "no-such-model", "--yes")
    assert r.returncode == 2 and "no such model" in r.stderr
    outside = write_gguf(tmp_path / "outside" / "mine.gguf")
    r = seachat("rm", str(outside), "--yes")
    assert r.returncode == 2 and "not in the library" in r.stderr
    assert outside.exists()
    r = seachat("rm", "broken.gguf", "--yes")  # broken files can be removed by name
    assert r.returncode == 0
    assert not (library / "broken.gguf").exists()
