"""The model library: GGUF files in the models directory, plus any paths the user names.

A listing never fails because of one bad file: unreadable files are reported beside the good
ones, so a half-downloaded or corrupt model cannot hide the rest of the library.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from seachat.app.model_info import GGUFFormatError, ModelInfo, read_model_info
from seachat.app.paths import models_dir

# Partial downloads and temp files written next to finished models are never listed.
_SKIP_SUFFIXES = (".part", ".tmp", ".incomplete")


@dataclass(frozen=True)
class BrokenModel:
    path: Path
    reason: str


def find_gguf_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    found: list[Path] = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if name.endswith(".gguf") and not name.startswith("."):
                found.append(Path(root) / name)
    return sorted(found, key=lambda p: (p.name.lower(), str(p)))


def list_models(
    extra_paths: Iterable[str | os.PathLike[str]] = (),
    directory: str | os.PathLike[str] | None = None,
) -> tuple[list[ModelInfo], list[BrokenModel]]:
    """Models in the library directory and in `extra_paths` (files or folders)."""
    candidates: list[Path] = find_gguf_files(models_dir(directory))
    for extra in extra_paths:
        p = Path(extra).expanduser()
        candidates.extend(find_gguf_files(p) if p.is_dir() else [p])
    seen: set[Path] = set()
    good: list[ModelInfo] = []
    broken: list[BrokenModel] = []
    for path in candidates:
        key = path.resolve()
        if key in seen or path.name.endswith(_SKIP_SUFFIXES):
            continue
        seen.add(key)
        try:
            good.append(read_model_info(path))
        except GGUFFormatError as exc:
            broken.append(BrokenModel(path, str(exc)))
    return good, broken


def resolve_model(
    name_or_path: str, directory: str | os.PathLike[str] | None = None
) -> Path | None:
    """A path as given, or a library model matched by file name, file stem or general.name."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    models, _ = list_models(directory=directory)
    wanted = name_or_path.casefold()
    for info in models:
        if wanted in (info.path.name.casefold(), info.path.stem.casefold(), info.name.casefold()):
            return info.path
    return None
