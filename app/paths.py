"""Where seachat keeps user data.

Everything lives under one data directory (platform default, or SEACHAT_HOME) so that a user
can back it up or move it in one piece; the models directory can be pointed elsewhere on its
own (SEACHAT_MODELS_DIR or --models-dir) because models are large and often live on another disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "seachat"


def data_dir() -> Path:
    override = os.environ.get("SEACHAT_HOME")
    path = (
        Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir(override: str | os.PathLike[str] | None = None) -> Path:
    chosen = override or os.environ.get("SEACHAT_MODELS_DIR")
    path = Path(chosen).expanduser() if chosen else data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def conversations_db() -> Path:
    return data_dir() / "conversations.sqlite3"
