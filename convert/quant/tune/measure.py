"""Measuring `seachat tune`'s ΔKLD: each group quantized alone to each rung of its ladder,
evaluated against the source on every language; cached in a JSON file and resumed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np

from seachat.convert.files import write_text_atomic
from seachat.convert.gguf_file.ggml_types import TYPES
from seachat.convert.gguf_file.reader import read_gguf_header
from seachat.convert.quant.plan import llama_quantizes
from seachat.convert.quant.tune.groups import Group

MEASUREMENTS_VERSION = 1

Progress = Callable[[str, int, int], None]


def _hash_file_meta(path: Path) -> str:
    st = path.stat()
    return f"{path.name}:{st.st_size}:{int(st.st_mtime)}"


def _texts_digest(texts: dict[str, str]) -> str:
    h = hashlib.sha256()
    for k in sorted(texts):
        h.update(k.encode())
        h.update(texts[k].encode())
    return h.hexdigest()[:16]


def measure(
    model: Path,
    groups: list[Group],
    texts: dict[str, str],
    *,
    imatrix_means: dict[str, np.ndarray] | None,
    imatrix_id: str,
    cache: Path,
    tokens: int = 192,
    batch: int = 4,
    threads: int | None = None,
    progress: Progress | None = None,
    work_dir: Path | None = None,
    n_gpu_layers: int = 0,
    output_without_imatrix: Collection[str] = (),
) -> dict:
    """ΔKLD per (group, type, language), cached in `cache` (JSON) and resumed from it. The
    output projection is probed without its importance data at `output_without_imatrix`
    types, as the profile will quantize it."""
    from seachat.convert.quant.evaluate import evaluate_models

    settings = {
        "version": MEASUREMENTS_VERSION,
        "model": _hash_file_meta(model),
        "texts": _texts_digest(texts),
        "languages": sorted(texts),
        "tokens_per_language": tokens,
        "imatrix": imatrix_id,
        "output_without_imatrix": sorted(output_without_imatrix),
    }
    data = _cached(cache, settings)
    header = read_gguf_header(model)
    src_types = {t.name: t.ggml_type for t in header.tensors if llama_quantizes(t.name, t.shape)}
    todo = [(g, ty) for g in groups for ty in g.ladder[:-1] if f"{g.key}|{ty}" not in data["delta"]]
    total = sum(len(g.ladder) - 1 for g in groups)
    done = total - len(todo)
    if progress:
        progress("measure", done, total)
    work = Path(work_dir or tempfile.mkdtemp(prefix="seachat-tune-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for start in range(0, len(todo), batch):
            part = todo[start : start + batch]
            probes = [
                probe(
                    model,
                    work / f"probe-{i}.gguf",
                    g,
                    ty,
                    src_types,
                    _without(imatrix_means, g.tensors)
                    if g.kind == "output" and ty in output_without_imatrix
                    else imatrix_means,
                    threads,
                )
                for i, (g, ty) in enumerate(part)
            ]
            reports = evaluate_models(
                model, probes, texts, max_tokens=tokens, threads=threads, n_gpu_layers=n_gpu_layers
            )
            for (g, ty), rep in zip(part, reports, strict=True):
                data["delta"][f"{g.key}|{ty}"] = {
                    lang: r.kld_mean for lang, r in rep.languages.items()
                }
            for p in probes:
                p.unlink(missing_ok=True)
            write_measurements(cache, data)
            done += len(part)
            if progress:
                progress("measure", done, total)
    finally:
        for p in work.glob("probe-*.gguf"):
            p.unlink(missing_ok=True)
        if work_dir is None:
            with contextlib.suppress(OSError):
                work.rmdir()
    return data


def _without(means: dict[str, np.ndarray] | None, names: list[str]) -> dict | None:
    return None if means is None else {k: v for k, v in means.items() if k not in names}


def _cached(cache: Path, settings: dict) -> dict:
    """What an earlier run with the same settings stored (its measurements and allocations),
    else a fresh table: a changed model, text or imatrix invalidates every measurement."""
    if cache.exists():
        try:
            old = json.loads(cache.read_text(encoding="utf-8"))
            if old.get("settings") == settings:
                old.setdefault("delta", {})
                return old
        except (OSError, json.JSONDecodeError):
            pass
    return {"settings": settings, "delta": {}}


def probe(
    model: Path,
    path: Path,
    group: Group,
    ty: str,
    src_types: dict[str, int],
    imatrix_means: dict[str, np.ndarray] | None,
    threads: int | None,
) -> Path:
    """The model with only `group` quantized to `ty` (with `imatrix_means`, as given): every
    other quantizable tensor is pinned to its source type by exact name."""
    from seachat.convert.llama.quantizer import run_llama_quantize

    chosen = set(group.tensors)
    overrides = [
        (f"^{re.escape(name)}$", TYPES[ty].id if name in chosen else tid)
        for name, tid in src_types.items()
    ]
    run_llama_quantize(
        model, path, ftype=7, overrides=overrides, imatrix=imatrix_means, threads=threads
    )
    return path


def write_measurements(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
