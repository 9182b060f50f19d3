"""`seachat chat` on the command line: model choice and one-line errors, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from seachat.app.chat.store import Store
from seachat.app.cli import chat as cmd_chat


def run_chat(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "SEACHAT_HOME": str(home),
        "SEACHAT_MODELS_DIR": str(home / "models"),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "-m", "seachat.app", "chat", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_bad_gguf_is_a_one_line_error(seachat_home: Path, tmp_path: Path):
    bad = tmp_path / "ไฟล์เสีย.gguf"
    bad.write_bytes(b"this is not a model")
    result = run_chat(str(bad), home=seachat_home)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seachat: error:") and str(bad) in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_model_name_is_a_one_line_error(seachat_home: Path):
    result = run_chat("no-such-model", home=seachat_home)
    assert result.returncode == 2 and "seachat models" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_model_choice_order(seachat_home: Path, smollm2_gguf: Path, monkeypatch):
    store = Store(seachat_home / "c.db")
    # Demo extra installed (the test extras include it): its model is the default.
    assert cmd_chat.choose_model(None, None, store)[0] == smollm2_gguf
    # Without the demo and with an empty library there is nothing: the welcome screen.
    monkeypatch.setattr(cmd_chat, "demo_model", lambda: None)
    assert cmd_chat.choose_model(None, None, store)[0] is None
    # A model in the library is found; the last model used wins over it.
    models = seachat_home / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "small.gguf").symlink_to(smollm2_gguf)
    assert cmd_chat.choose_model(None, models, store)[0] == models / "small.gguf"
    store.set_preference("last_model", str(smollm2_gguf))
    assert cmd_chat.choose_model(None, models, store)[0] == smollm2_gguf
    # By name, as `seachat models` shows it.
    assert cmd_chat.choose_model("small", models, store)[0] == models / "small.gguf"
