"""Fixtures for the app tests: real models loaded once, user data in a temp folder, a loopback
Hub, small real GGUF files, and a way to run the `seachat` command in a subprocess pointed at
both.

The library CLI runs in a subprocess because huggingface-hub reads HF_ENDPOINT and
HF_HUB_OFFLINE when it is imported; a subprocess also lets the tests send a real Ctrl-C.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from seachat.app.chat.runtime import Runtime
from tests.app.fakehub import FakeHub
from tests.app.libtest import CliResult, write_gguf

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


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    hub = FakeHub()
    yield hub
    hub.close()


@pytest.fixture
def gguf_factory(tmp_path: Path) -> Callable[..., Path]:
    def make(filename: str, **kwargs: object) -> Path:
        return write_gguf(tmp_path / "src" / filename, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def library_env(tmp_path: Path, fake_hub: FakeHub) -> dict[str, str]:
    """Environment for a `seachat` subprocess: its own data dirs and the loopback Hub."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGING", "SEACHAT_"))
        and k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    }
    env.update(
        SEACHAT_HOME=str(tmp_path / "home"),
        SEACHAT_MODELS_DIR=str(tmp_path / "models"),
        HF_ENDPOINT=fake_hub.endpoint,
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_DISABLE_XET="1",  # the loopback Hub speaks LFS "basic" transfer, not Xet
        NO_PROXY="127.0.0.1,localhost",
        PYTHONIOENCODING="utf-8",
    )
    return env


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def seachat(library_env: dict[str, str]) -> Callable[..., CliResult]:
    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 120, stdin: str = ""
    ) -> CliResult:
        full_env = {**library_env, **(env or {})}
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "seachat.app", *args],
            env=full_env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
            input=stdin,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)

    return run
