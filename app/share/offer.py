"""What a library offers to others: its complete models, each file with its size and sha256.

Only files found by the library listing are offered, each under its path relative to the
models folder; a request names one of them or gets nothing, so no path is ever built from a
request. A symlink whose target lies outside the models folder is not offered: sharing a
library must not share the rest of the disk.

Hashing a multi-GB model takes seconds, so digests are cached by (path, size, mtime) in the
seachat data folder, never in the library itself.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from seachat.app.library.catalog import list_models, model_files, resolve_model
from seachat.app.paths import data_dir
from seachat.convert.errors import UserError
from seachat.convert.files import write_text_atomic

HASH_BLOCK = 4 * 1024 * 1024


@dataclass(frozen=True)
class OfferedFile:
    name: str  # posix path relative to the models folder: what peers ask for
    path: Path
    size: int
    sha256: str
    model: str  # general.name of the model the file belongs to


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class DigestCache:
    """sha256 of files, remembered by path, size and modification time."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or data_dir() / "cache" / "sha256.json"
        try:
            self.entries: dict[str, list] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.entries = {}

    def digest(self, path: Path) -> str:
        st = path.stat()
        key = str(path.resolve())
        known = self.entries.get(key)
        if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            return known[2]
        value = sha256_file(path)
        self.entries[key] = [st.st_size, st.st_mtime_ns, value]
        write_text_atomic(self.path, json.dumps(self.entries, indent=0))
        return value


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def library_files(models: Path, wanted: Iterable[str] = ()) -> list[tuple[Path, str]]:
    """(file, model name) for every file of the complete models in `models`, or of the ones named.

    Names are resolved like `seachat chat MODEL` does (file name, stem or general.name); a
    name that is not in the library is an error, so a typo does not share nothing silently.
    """
    infos, _broken = list_models(directory=models)
    by_path = {info.path: info for info in infos}
    chosen = list(by_path.values())
    if wanted := list(wanted):
        chosen = []
        for name in wanted:
            path = resolve_model(name, directory=models)
            if path is None or path not in by_path:
                raise UserError(
                    f"{name}: no such model in {models}; `seachat models` lists what is there."
                )
            chosen.append(by_path[path])
    files: list[tuple[Path, str]] = []
    for info in chosen:
        parts = model_files(info.path)
        if all(p.is_file() and _inside(p, models) for p in parts):
            files.extend((p, info.name) for p in parts)
    return files


def build_offer(
    models: Path,
    wanted: Iterable[str] = (),
    cache: DigestCache | None = None,
    note: Callable[[str], None] = lambda _msg: None,
) -> dict[str, OfferedFile]:
    """name → OfferedFile for everything `seachat share` will serve."""
    cache = cache or DigestCache()
    offer: dict[str, OfferedFile] = {}
    for path, model in library_files(models, wanted):
        name = PurePosixPath(*path.relative_to(models).parts).as_posix()
        note(f"checking {name}")
        size = os.stat(path).st_size
        offer[name] = OfferedFile(name, path, size, cache.digest(path), model)
    return offer
