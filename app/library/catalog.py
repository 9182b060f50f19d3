"""The model library: GGUF files in the models directory, plus any paths the user names.

A listing never fails because of one bad file: unreadable files are reported beside the good
ones, so a half-downloaded or corrupt model cannot hide the rest of the library.

Models fetched with `seachat pull` carry a small source record (`.sources/<file>.json` beside
them: repository, commit, sha256) so that an offline `pull` can find them again and an online
one can tell "up to date" from "the Hub has a newer file". Interrupted downloads
(`<file>.part` + `<file>.part.json`) are listed separately with what it takes to resume them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from seachat.app.library.model_info import GGUFFormatError, ModelInfo, read_model_info
from seachat.app.paths import models_dir
from seachat.convert.files import write_text_atomic

# Partial downloads and temp files written next to finished models are never listed.
_SKIP_SUFFIXES = (".part", ".tmp", ".incomplete")

# llama.cpp's split GGUFs (gguf-split, or the Hub's >50 GB files): the model is its first part.
_SPLIT_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


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
        split = _SPLIT_NAME.match(path.name)
        if split and int(split["no"]) > 1:
            first = model_files(path)[0]
            if not first.exists():
                broken.append(
                    BrokenModel(
                        path,
                        f"{path}: part of a split GGUF whose first part {first.name} is missing",
                    )
                )
            continue  # listed with its first part
        try:
            info = read_model_info(path)
            if split:
                info = _merge_split(info)
            good.append(info)
        except GGUFFormatError as exc:
            broken.append(BrokenModel(path, str(exc)))
    return good, broken


def model_files(path: Path) -> list[Path]:
    """Every file that makes up the model at `path`: all parts of a split GGUF, else [path]."""
    m = _SPLIT_NAME.match(path.name)
    if not m:
        return [path]
    count = int(m["count"])
    return [
        path.with_name(f"{m['prefix']}-{i:05d}-of-{m['count']}.gguf") for i in range(1, count + 1)
    ]


def _merge_split(first: ModelInfo) -> ModelInfo:
    """Size and parameters of all parts (llama.cpp loads them all from the first)."""
    from seachat.convert.gguf_file.reader import read_gguf_header

    parts = model_files(first.path)
    missing = [p.name for p in parts if not p.exists()]
    if missing:
        raise GGUFFormatError(
            f"{first.path}: split GGUF with {len(missing)} of {len(parts)} parts missing "
            f"({', '.join(missing[:3])}); pull it again to fetch them."
        )
    headers = [read_gguf_header(p) for p in parts[1:]]
    return dataclasses.replace(
        first,
        file_size=first.file_size + sum(h.file_size for h in headers),
        n_params=first.n_params + sum(h.n_params for h in headers),
    )


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


# --------------------------------------------------------------------------- where models came from

SOURCES_DIRNAME = ".sources"


@dataclass(frozen=True)
class ModelSource:
    """Where a library file was downloaded from, recorded after its sha256 was verified."""

    repo_id: str
    filename: str  # path inside the repository
    revision: str
    commit: str | None
    sha256: str | None
    size: int
    downloaded: str  # ISO 8601, UTC
    endpoint: str


def source_path(model: Path) -> Path:
    return model.parent / SOURCES_DIRNAME / (model.name + ".json")


def read_source(model: Path) -> ModelSource | None:
    try:
        data = json.loads(source_path(model).read_text(encoding="utf-8"))
        return ModelSource(**data)
    except (OSError, ValueError, TypeError):
        return None


def write_source(model: Path, source: ModelSource) -> None:
    write_text_atomic(source_path(model), json.dumps(asdict(source), indent=1, ensure_ascii=False))


def remove_source(model: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        source_path(model).unlink()


# --------------------------------------------------------------------------- interrupted downloads


@dataclass(frozen=True)
class PartialDownload:
    part: Path  # <models>/<file>.gguf.part
    final: Path  # where the finished model will go
    have: int  # bytes verified at the last checkpoint
    total: int | None
    repo_id: str | None  # None when the sidecar is missing or unreadable
    filename: str | None
    revision: str | None

    @property
    def percent(self) -> float | None:
        return 100.0 * self.have / self.total if self.total else None

    @property
    def resume_command(self) -> str | None:
        if not self.repo_id or not self.filename:
            return None
        rev = f" --revision {self.revision}" if self.revision not in (None, "main") else ""
        return f"seachat pull {self.repo_id}:{self.filename}{rev}"


def list_partials(directory: str | os.PathLike[str] | None = None) -> list[PartialDownload]:
    """Interrupted downloads in the library, oldest name first."""
    from seachat.app.hub.download import PART_SUFFIX, read_state

    root = models_dir(directory)
    found: list[PartialDownload] = []
    for part in sorted(root.glob("*" + PART_SUFFIX)):
        final = part.with_name(part.name[: -len(PART_SUFFIX)])
        state = read_state(final)
        if state is None:
            found.append(PartialDownload(part, final, 0, None, None, None, None))
        else:
            found.append(
                PartialDownload(
                    part,
                    final,
                    state.checkpoint.size,
                    state.size,
                    state.repo_id,
                    state.filename,
                    state.revision,
                )
            )
    return found
