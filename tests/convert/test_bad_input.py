"""Bad input: one-line error naming the file and the fix, non-zero exit, nothing half-written."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.convert.conftest import run_cli


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".seachat-fixture"))
    return dst


def _assert_clean_failure(
    result: subprocess.CompletedProcess[str], out_dir: Path, must_name: str, must_say: str
) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("seachat: error: ")
    assert must_name in lines[0], lines[0]
    assert must_say in lines[0].lower(), lines[0]
    assert "Traceback" not in result.stderr
    leftovers = [p.name for p in out_dir.iterdir()]
    assert leftovers == [], leftovers


@pytest.fixture
def ckpt(tiny_dir, tmp_path) -> Path:
    return _copy(tiny_dir("llama-spm"), tmp_path / "ckpt")


@pytest.fixture
def out_dir(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_missing_config(ckpt, out_dir) -> None:
    (ckpt / "config.json").unlink()
    r = run_cli("convert", str(ckpt), "-o", str(out_dir / "m.gguf"))
    _assert_clean_failure(r, out_dir, "config.json", "missing")


def test_missing_tokenizer(ckpt, out_dir) -> None:
    (ckpt / "tokenizer.model").unlink()
    r = run_cli("convert", str(ckpt), "-o", str(out_dir / "m.gguf"))
    _assert_clean_failure(r, out_dir, str(ckpt), "tokenizer")


def test_corrupt_safetensors_header(ckpt, out_dir) -> None:
    st = ckpt / "model.safetensors"
    data = bytearray(st.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 : 8 + 20] = b"#" * 20  # clobber the start of the JSON header
    st.write_bytes(bytes(data))
    r = run_cli("convert", str(ckpt), "-o", str(out_dir / "m.gguf"))
    _assert_clean_failure(r, out_dir, "model.safetensors", "corrupt safetensors header")


def test_truncated_shard(tiny_dir, tmp_path, out_dir) -> None:
    ckpt = _copy(tiny_dir("llama3-bpe"), tmp_path / "sharded")
    shard = sorted(ckpt.glob("model-*.safetensors"))[-1]
    shard.write_bytes(shard.read_bytes()[:-1000])
    r = run_cli("convert", str(ckpt), "-o", str(out_dir / "m.gguf"))
    _assert_clean_failure(r, out_dir, shard.name, "truncated")


def test_missing_shard(tiny_dir, tmp_path, out_dir) -> None:
    ckpt = _copy(tiny_dir("llama3-bpe"), tmp_path / "sharded")
    shard = sorted(ckpt.glob("model-*.safetensors"))[0]
    shard.unlink()
    r = run_cli("convert", str(ckpt), "-o", str(out_dir / "m.gguf"))
    _assert_clean_failure(r, out_dir, shard.name, "missing")


def test_shape_mismatch(ckpt, out_dir) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["intermediate_size"] = cfg["intermediate_size"] * 2
    (ckpt / "config.json").write_text(json.dumps(cfg))
    r = run_cli("convert", str(ckpt), "-o", str(out_dir / "m.gguf"))
    _assert_clean_failure(r, out_dir, "model.safetensors", "shape mismatch")


def test_unknown_dtype(ckpt, out_dir) -> None:
    """A float64 tensor (as some research checkpoints ship): refused, naming file and dtype."""
    from safetensors.numpy import load_file, save_file

    st = ckpt / "model.safetensors"
    tensors = load_file(st)
    tensors["model.norm.weight"] = tensors["model.norm.weight"].astype("float64")
    save_file(tensors, st)
    r = run_cli("convert", str(ckpt), "-o", str(out_dir / "m.gguf"))
    _assert_clean_failure(r, out_dir, "model.safetensors", "dtype f64")


def test_unsupported_architecture(ckpt, out_dir) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["architectures"] = ["BloomForCausalLM"]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    r = run_cli("convert", str(ckpt), "-o", str(out_dir / "m.gguf"))
    _assert_clean_failure(r, out_dir, "config.json", "gemma3forcausallm")


def test_output_exists(ckpt, out_dir) -> None:
    target = out_dir / "m.gguf"
    target.write_bytes(b"keep me")
    r = run_cli("convert", str(ckpt), "-o", str(target))
    assert r.returncode != 0
    assert "already exists" in r.stderr and "--force" in r.stderr
    assert target.read_bytes() == b"keep me"
    assert [p.name for p in out_dir.iterdir()] == ["m.gguf"]


def test_disk_full(ckpt, tmp_path) -> None:
    """A real full filesystem (a 64 KiB tmpfs): ENOSPC mid-write leaves nothing behind."""
    mnt = tmp_path / "tiny-fs"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs to simulate a full disk: {mounted.stderr!r}")
    try:
        r = run_cli("convert", str(ckpt), "-o", str(mnt / "m.gguf"))
        _assert_clean_failure(r, mnt, "m.gguf", "not enough space")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_interrupted_write_leaves_nothing(ckpt, out_dir, monkeypatch) -> None:
    """Ctrl-C while writing tensors: the temporary file is removed, OUT never appears."""
    from seachat.convert import pipeline
    from seachat.convert.gguf_file import writer as gguf_output

    calls = {"n": 0}
    original = gguf_output._encode

    def interrupt_after_a_few(block, out_type):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return original(block, out_type)

    monkeypatch.setattr(gguf_output, "_encode", interrupt_after_a_few)
    with pytest.raises(KeyboardInterrupt):
        pipeline.convert(str(ckpt), out_dir / "m.gguf", "f32")
    assert list(out_dir.iterdir()) == []


def _set_config(ckpt: Path, key: str, value: object, under: str | None = None) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    (cfg[under] if under else cfg)[key] = value
    (ckpt / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    ("fixture", "key", "value", "under"),
    [
        ("gemma3-fast", "query_pre_attn_scalar", 24, None),
        ("gemma3-multimodal", "query_pre_attn_scalar", 64, "text_config"),
        ("qwen3-bpe", "attention_bias", True, None),
        ("qwen3-bpe", "use_sliding_window", True, None),
        ("gemma-spm", "hidden_act", "relu", None),
        ("apertus-bpe", "tie_word_embeddings", True, None),
    ],
)
def test_config_llama_cpp_cannot_represent(tiny_dir, tmp_path, out_dir, fixture, key, value, under):
    """A config value llama.cpp's graph would silently compute differently: refused, naming
    the key, before anything is written."""
    ckpt = _copy(tiny_dir(fixture), tmp_path / "ckpt")
    _set_config(ckpt, key, value, under)
    r = run_cli("convert", str(ckpt), "-o", str(out_dir / "m.gguf"))
    _assert_clean_failure(r, out_dir, "config.json", key)
