"""SRC as a Hub repo id: taken from huggingface-hub's cache, honouring HF_HUB_OFFLINE, with a
clear message when the repo is neither reachable nor cached. No real network is used: the
Hub endpoint points at a closed local port."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import gguf

from seachat.convert.gguf_file.reader import read_gguf_header
from tests.convert.conftest import run_cli

COMMIT = "0123456789abcdef0123456789abcdef01234567"
NO_HUB = {
    "HF_ENDPOINT": "http://127.0.0.1:9",
    "HF_HUB_ETAG_TIMEOUT": "2",
    "HF_HUB_DOWNLOAD_TIMEOUT": "2",
}


def _cache_repo(hub_cache: Path, repo_id: str, files_from: Path) -> None:
    """Lay out a repo in huggingface-hub's cache format (refs/main → snapshots/<commit>)."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(files_from, snapshot, ignore=shutil.ignore_patterns(".seachat-fixture"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)


def test_offline_and_not_cached(tmp_path) -> None:
    env = {**NO_HUB, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    start = time.monotonic()
    r = run_cli("convert", "sea-team/ไม่มีโมเดล-model", "-o", str(tmp_path / "x.gguf"), env=env)
    assert time.monotonic() - start < 60
    assert r.returncode != 0
    # a repo id with Thai letters is not a valid Hub id: said plainly
    assert "not a Hub repo id" in r.stderr
    r = run_cli("convert", "sea-team/no-such-model", "-o", str(tmp_path / "x.gguf"), env=env)
    assert r.returncode != 0
    assert "HF_HUB_OFFLINE is set" in r.stderr and "not in the local Hugging Face cache" in r.stderr
    assert not (tmp_path / "x.gguf").exists()


def test_unreachable_hub_and_not_cached(tmp_path) -> None:
    env = {**NO_HUB, "HF_HUB_CACHE": str(tmp_path / "hub")}
    r = run_cli("convert", "sea-team/no-such-model", "-o", str(tmp_path / "x.gguf"), env=env)
    assert r.returncode != 0
    assert "cannot reach the Hugging Face Hub" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_cached_repo_converts_offline(tiny_dir, tmp_path) -> None:
    hub = tmp_path / "hub"
    _cache_repo(hub, "sea-team/tiny-gemma3", tiny_dir("gemma3-fast"))
    out = tmp_path / "tiny.gguf"
    env = {**NO_HUB, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub)}
    r = run_cli("convert", "sea-team/tiny-gemma3", "-o", str(out), env=env)
    assert r.returncode == 0, r.stderr
    header = read_gguf_header(out)
    assert header.get(gguf.Keys.General.SOURCE_REPO_URL) == (
        "https://huggingface.co/sea-team/tiny-gemma3"
    )
