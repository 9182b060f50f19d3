"""`seachat export NAME DIR` / `seachat import DIR`: a model on a USB stick, with a manifest.

An export is one folder per model: its files, its evaluation report when it has one, and
`seachat-manifest.json` (file names, sizes, sha256, profile, languages), written last, so a
folder without a manifest is an export that has not finished. Both directions copy into a
`.part` file and resume from its length after an interruption; the bytes already there are
hashed again, not trusted. Import copies every file into the library as a part file, checks
every byte against the manifest, and only when all of them match renames them into place:
a damaged stick never leaves a model (or half of a split one) in the library.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from seachat.app.library.catalog import model_files, resolve_model
from seachat.app.library.model_info import read_model_info
from seachat.app.share.offer import HASH_BLOCK, DigestCache
from seachat.convert.errors import UserError
from seachat.convert.files import write_text_atomic
from seachat.convert.quant.report import report_path

MANIFEST = "seachat-manifest.json"
FORMAT = "seachat-export/1"
PART = ".part"
IMPORT_PART = ".import.part"


@dataclass(frozen=True)
class ManifestFile:
    name: str
    size: int
    sha256: str


@dataclass
class Manifest:
    model: str
    profile: str | None
    quantization: str
    languages: list[str]
    files: list[ManifestFile] = field(default_factory=list)
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            files = [ManifestFile(**f) for f in data.pop("files")]
            return cls(**data, files=files)
        except FileNotFoundError:
            raise UserError(
                f"{path}: no manifest; this is not a finished export (run `seachat export` "
                "again to complete it)."
            ) from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise UserError(
                f"{path}: not a seachat export manifest ({exc}); export again."
            ) from exc


def copy_resumable(src: Path, part: Path) -> str:
    """Copy src to part, continuing after what part already holds; the sha256 of the result.

    The kept prefix is re-read from part (what is really on the stick), so a prefix damaged
    by a yanked stick shows up as a wrong digest rather than hiding in a "complete" file."""
    digest = hashlib.sha256()
    size = src.stat().st_size
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    with part.open("ab" if have else "wb") as out, src.open("rb") as source:
        if have:
            with part.open("rb") as kept:
                while block := kept.read(HASH_BLOCK):
                    digest.update(block)
        source.seek(have)
        while block := source.read(HASH_BLOCK):
            out.write(block)
            digest.update(block)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _copy_verified(src: Path, dst_part: Path, sha256: str, note: Callable[[str], None]) -> None:
    """copy_resumable, starting over once if the resumed bytes turn out damaged."""
    for attempt in (1, 2):
        if copy_resumable(src, dst_part) == sha256:
            return
        dst_part.unlink(missing_ok=True)
        if attempt == 1:
            note(f"{src.name}: the copy did not match; copying it again from the start")
    raise UserError(
        f"{src}: its bytes do not match sha256 {sha256[:12]}…; the source changed or the disk is failing."
    )


def export_model(name: str, out_dir: Path, models: Path, note: Callable[[str], None]) -> Path:
    """Copy a library model into out_dir/<model>/ with a manifest; resumable."""
    path = resolve_model(name, directory=models)
    if path is None:
        raise UserError(f"{name}: no such model in {models}; `seachat models` lists what is there.")
    info = read_model_info(path)
    sources = list(model_files(path))
    if report_path(path).is_file():
        sources.append(report_path(path))
    folder = out_dir / path.stem
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # unfinished until the new one is written
    cache = DigestCache()
    manifest = Manifest(info.name, info.profile, info.quantization, list(info.languages))
    for src in sources:
        sha = cache.digest(src)
        final = folder / src.name
        if not (
            final.is_file()
            and final.stat().st_size == src.stat().st_size
            and cache.digest(final) == sha
        ):
            note(f"copying {src.name}")
            _copy_verified(src, final.with_name(final.name + PART), sha, note)
            os.replace(final.with_name(final.name + PART), final)
        manifest.files.append(ManifestFile(src.name, src.stat().st_size, sha))
    write_text_atomic(folder / MANIFEST, manifest.to_json())
    return folder


def export_folders(path: Path) -> list[Path]:
    """The export folders under `path`: itself when it holds a manifest, else its children."""
    if (path / MANIFEST).exists():
        return [path]
    found = sorted(p.parent for p in path.glob(f"*/{MANIFEST}"))
    if not found:
        raise UserError(
            f"{path}: no {MANIFEST} here or one folder below; is this a seachat export?"
        )
    return found


def _plain_name(name: str, manifest_path: Path) -> str:
    if not name or name != Path(name).name or name.startswith(".") or "\\" in name:
        raise UserError(
            f"{manifest_path}: file name {name!r} is not a plain file name; export again."
        )
    return name


def _import_plan(folder: Path, manifest: Manifest, models: Path) -> list[tuple[ManifestFile, Path]]:
    """(entry, destination) of every file still to bring in; refuses what cannot work."""
    todo = []
    for entry in manifest.files:
        src = folder / _plain_name(entry.name, folder / MANIFEST)
        if not src.is_file() or src.stat().st_size != entry.size:
            raise UserError(
                f"{src}: missing or not {entry.size} bytes as the manifest says; export again."
            )
        dst = models / entry.name
        if dst.exists():
            if DigestCache().digest(dst) == entry.sha256:
                continue
            raise UserError(
                f"{dst}: a different file of this name is already in the library; remove it "
                f"first (seachat rm {entry.name})."
            )
        todo.append((entry, dst))
    return todo


def import_model(folder: Path, models: Path, note: Callable[[str], None]) -> Manifest:
    """Bring one export folder into the library, all files or none."""
    manifest = Manifest.read(folder)
    todo = _import_plan(folder, manifest, models)
    parts = []
    for entry, dst in todo:
        part = dst.with_name(dst.name + IMPORT_PART)
        note(f"copying {entry.name}")
        if copy_resumable(folder / entry.name, part) != entry.sha256:
            part.unlink(missing_ok=True)
            raise UserError(
                f"{folder / entry.name}: its bytes do not match the manifest's sha256; the copy "
                "on this drive is damaged. Nothing was imported; export the model again."
            )
        parts.append((part, dst))
    # The model's first file last: a split model is listed only once all of it is there.
    for part, dst in reversed(parts):
        os.replace(part, dst)
    return manifest
