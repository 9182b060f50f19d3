"""Add or replace string/number metadata in a finished GGUF without touching its tensors.

The quality summary can only be written after the quantized file has been evaluated, so it
cannot go through llama.cpp's metadata overrides at quantization time. GGUF tensor offsets
are relative to the (aligned) start of the data section, so new key/value pairs only move
that start: the header is rewritten and the tensor data streamed across unchanged.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Mapping
from pathlib import Path

from gguf import GGUFValueType

from seachat.convert.errors import UserError
from seachat.convert.files import temp_beside

_FIXED = {
    GGUFValueType.UINT8: 1,
    GGUFValueType.INT8: 1,
    GGUFValueType.UINT16: 2,
    GGUFValueType.INT16: 2,
    GGUFValueType.UINT32: 4,
    GGUFValueType.INT32: 4,
    GGUFValueType.FLOAT32: 4,
    GGUFValueType.BOOL: 1,
    GGUFValueType.UINT64: 8,
    GGUFValueType.INT64: 8,
    GGUFValueType.FLOAT64: 8,
}

Value = str | int | float | bool


def _skip_value(f, vtype: int) -> None:
    if vtype == GGUFValueType.STRING:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(n, os.SEEK_CUR)
    elif vtype == GGUFValueType.ARRAY:
        item_type, count = struct.unpack("<IQ", f.read(12))
        if item_type in _FIXED:
            f.seek(_FIXED[item_type] * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip_value(f, item_type)
    elif vtype in _FIXED:
        f.seek(_FIXED[vtype], os.SEEK_CUR)
    else:
        raise UserError(f"unknown GGUF value type {vtype}")


def _encode(key: str, value: Value) -> bytes:
    k = key.encode("utf-8")
    out = struct.pack("<Q", len(k)) + k
    if isinstance(value, bool):
        return out + struct.pack("<IB", GGUFValueType.BOOL, int(value))
    if isinstance(value, int):
        return out + struct.pack("<Iq", GGUFValueType.INT64, value)
    if isinstance(value, float):
        return out + struct.pack("<If", GGUFValueType.FLOAT32, value)
    v = str(value).encode("utf-8")
    return out + struct.pack("<IQ", GGUFValueType.STRING, len(v)) + v


def set_metadata(src: str | Path, dst: str | Path, values: Mapping[str, Value]) -> None:
    """Copy src to dst with `values` added (replacing keys that exist). dst is written to a
    temporary file beside it and renamed; src may equal dst."""
    src, dst = Path(src), Path(dst)
    with open(src, "rb") as f:
        head = f.read(24)
        if len(head) < 24 or head[:4] != b"GGUF":
            raise UserError(f"{src}: not a GGUF file")
        version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:])
        kept: list[bytes] = []
        alignment = 32
        for _ in range(n_kv):
            start = f.tell()
            (n,) = struct.unpack("<Q", f.read(8))
            key = f.read(n).decode("utf-8", errors="replace")
            (vtype,) = struct.unpack("<I", f.read(4))
            if key == "general.alignment" and vtype == GGUFValueType.UINT32:
                (alignment,) = struct.unpack("<I", f.read(4))
            else:
                _skip_value(f, vtype)
            end = f.tell()
            if key not in values:
                f.seek(start)
                kept.append(f.read(end - start))
        tensor_infos_start = f.tell()
        for _ in range(n_tensors):
            (n,) = struct.unpack("<Q", f.read(8))
            f.seek(n, os.SEEK_CUR)
            (n_dims,) = struct.unpack("<I", f.read(4))
            f.seek(8 * n_dims + 4 + 8, os.SEEK_CUR)
        tensor_infos_end = f.tell()
        f.seek(tensor_infos_start)
        tensor_infos = f.read(tensor_infos_end - tensor_infos_start)
        old_data = (tensor_infos_end + alignment - 1) // alignment * alignment

        added = [_encode(k, v) for k, v in values.items()]
        header = struct.pack("<4sIQQ", b"GGUF", version, n_tensors, len(kept) + len(added))
        header += b"".join(kept) + b"".join(added) + tensor_infos
        header += b"\0" * ((-len(header)) % alignment)

        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(dst, "kv")
        try:
            with open(tmp, "wb") as out:
                out.write(header)
                f.seek(old_data)
                shutil.copyfileobj(f, out, 16 * 1024 * 1024)
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
