"""The checkpoint reader: exact bf16 widening, shard indexes, row blocks, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from seachat.convert.checkpoint.safetensors import SafetensorsCheckpoint, read_header
from seachat.convert.errors import UserError


def test_bf16_widening_is_exact(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(37, 91, generator=g) * 3).to(torch.bfloat16)
    save_file({"w": w, "h": w.to(torch.float16), "f": w.float()}, tmp_path / "model.safetensors")
    ckpt = SafetensorsCheckpoint(tmp_path)
    expected = w.float().numpy()
    for name in ("w", "h", "f"):
        entry = ckpt.tensors[name]
        got = np.concatenate([ckpt.read_f32(entry, a, min(a + 10, 37)) for a in range(0, 37, 10)])
        np.testing.assert_array_equal(got, expected)
    ckpt.close()


def test_header_offsets_are_validated(tmp_path) -> None:
    save_file({"w": torch.zeros(4, 4)}, tmp_path / "model.safetensors")
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-4])
    with pytest.raises(UserError, match="truncated"):
        read_header(path)
    path.write_bytes(b"\x05\x00")
    with pytest.raises(UserError, match="not a safetensors file"):
        read_header(path)


def test_no_weights_at_all(tmp_path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80")
    with pytest.raises(UserError, match="convert .bin/.pth weights to safetensors"):
        SafetensorsCheckpoint(tmp_path)


def test_same_tensor_in_two_shards_is_refused(tmp_path) -> None:
    import json

    save_file({"w": torch.zeros(2)}, tmp_path / "a.safetensors")
    save_file({"w": torch.ones(2)}, tmp_path / "b.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "a.safetensors", "w2": "b.safetensors"}})
    )
    with pytest.raises(UserError, match="different checkpoints"):
        SafetensorsCheckpoint(tmp_path)


def test_bf16_to_f16_matches_torch_rounding() -> None:
    """The fast bf16 → f16 path rounds exactly as a plain float cast does, including values
    that overflow f16, subnormals, infinities and NaN, across chunk boundaries."""
    from seachat.convert.gguf_file.writer import _CHUNK, _bf16_to_f16

    g = torch.Generator().manual_seed(1)
    values = torch.randn(3 * _CHUNK + 17, generator=g) * torch.logspace(-9, 6, 3 * _CHUNK + 17)
    values[:6] = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), 70000.0, 1e-7])
    bf = values.to(torch.bfloat16)
    raw = bf.view(torch.int16).numpy().view(np.uint16).reshape(-1, 1)
    ours = _bf16_to_f16(raw).reshape(-1)
    expected = bf.float().numpy().astype(np.float16)
    np.testing.assert_array_equal(ours.view(np.uint16), expected.view(np.uint16))
    nan = (
        torch.tensor([float("nan")], dtype=torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    )
    assert np.isnan(_bf16_to_f16(nan.reshape(1, 1))).all()
