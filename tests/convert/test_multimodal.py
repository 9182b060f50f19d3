"""A multimodal checkpoint (Gemma 3 4B/12B/27B-it's layout): `seachat convert` writes the
language model, says in one line that the vision tower was left out, and records it in the
GGUF; both prefixes transformers has saved the language model under are read."""

from __future__ import annotations

import shutil
from pathlib import Path

from seachat.convert.gguf_file.keys import DROPPED_KEY
from seachat.convert.gguf_file.reader import read_gguf_header
from tests.convert.conftest import run_cli


def _convert(ckpt: Path, out: Path) -> str:
    r = run_cli("convert", str(ckpt), "-o", str(out), "--outtype", "f32")
    assert r.returncode == 0, r.stderr + r.stdout
    return r.stdout


def _with_new_prefix(src: Path, dst: Path) -> Path:
    """The layout transformers ≥ 4.52 saves: model.language_model.*, model.vision_tower.*."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".seachat-fixture"))
    tensors = load_file(dst / "model.safetensors")
    renamed = {}
    for name, value in tensors.items():
        if name.startswith("language_model.model."):
            name = "model.language_model." + name.removeprefix("language_model.model.")
        elif not name.startswith("lm_head."):
            name = "model." + name
        renamed[name] = value
    save_file(renamed, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_vision_tower_left_out_under_either_prefix(tiny_dir, tmp_path) -> None:
    legacy = tiny_dir("gemma3-multimodal")
    current = _with_new_prefix(legacy, tmp_path / "current")
    headers = []
    for ckpt in (legacy, current):
        out = tmp_path / f"{ckpt.name}.gguf"
        stdout = _convert(ckpt, out)
        assert [line for line in stdout.splitlines() if "vision tower" in line] == [
            "left out: the vision tower (34 tensors); text model only"
        ], stdout
        headers.append(read_gguf_header(out))
    for header in headers:
        assert header.architecture == "gemma3"
        assert header.get(DROPPED_KEY) == "vision tower"
        assert header.get("gemma3.block_count") == 6
        names = {t.name for t in header.tensors}
        assert "blk.5.attn_q_norm.weight" in names
        assert not any(n.startswith(("v.", "mm.")) for n in names), names
    assert [(t.name, t.shape) for t in headers[0].tensors] == [
        (t.name, t.shape) for t in headers[1].tensors
    ]
