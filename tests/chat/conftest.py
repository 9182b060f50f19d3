"""Fixtures for the chat tests: real models loaded once, user data in a temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from seachat.app.runtime import Runtime

THREADS = 2  # the CI machine has two cores


@pytest.fixture(autouse=True)
def seachat_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never touch the real user data dir."""
    home = tmp_path / "seachat-home"
    monkeypatch.setenv("SEACHAT_HOME", str(home))
    monkeypatch.setenv("SEACHAT_MODELS_DIR", str(home / "models"))
    return home


@pytest.fixture(scope="session")
def smollm(smollm2_gguf: Path) -> Runtime:
    rt = Runtime(smollm2_gguf, n_ctx=2048, n_threads=THREADS)
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def gemma(gemma3_gguf: Path) -> Runtime:
    rt = Runtime(gemma3_gguf, n_ctx=2048, n_threads=THREADS)
    yield rt
    rt.close()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (Textual pilots) run on asyncio through anyio's pytest plugin."""
    return "asyncio"
