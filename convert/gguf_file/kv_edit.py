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
from typing import BinaryIO

from gguf import GGUFValueType

from seachat.convert.errors import UserError
from seachat.convert.files import temp_beside
from seachat.convert.gguf_file.reader import (
    FIXED_HEADER,
    MAGIC,
    SCALAR_FORMATS,
    GGUFFormatError,
    GGUFHeader,
    read_gguf_header,
)

Value = str | int | float | bool


def _encode(key: str, value: Value) -> bytes:
    k = key.encode("utf-8")
    out = struct.pack("<Q", len(k)) + k
    if isinstance(value, bool):
        vtype = GGUFValueType.BOOL
    elif isinstance(value, int):
        vtype = GGUFValueType.INT64
    elif isinstance(value, float):
        vtype = GGUFValueType.FLOAT32
    else:
        v = str(value).encode("utf-8")
        return out + struct.pack("<IQ", GGUFValueType.STRING, len(v)) + v
    return out + struct.pack("<I", vtype) + struct.pack(SCALAR_FORMATS[vtype], value)


def set_metadata(src: str | Path, dst: str | Path, values: Mapping[str, Value]) -> None:
    """Copy src to dst with `values` added (replacing keys that exist). dst is written to a
    temporary file beside it and renamed; src may equal dst."""
    src, dst = Path(src), Path(dst)
    try:
        header = read_gguf_header(src, keep_arrays_up_to=0)
    except GGUFFormatError as exc:
        raise UserError(str(exc)) from None
    with open(src, "rb") as f:
        new_header = _rewritten_header(f, header, values)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(dst, "kv")
        try:
            with open(tmp, "wb") as out:
                out.write(new_header)
                f.seek(header.data_offset)
                shutil.copyfileobj(f, out, 16 * 1024 * 1024)
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _rewritten_header(f: BinaryIO, header: GGUFHeader, values: Mapping[str, Value]) -> bytes:
    """The key/value pairs not in `values` copied byte for byte, then the new ones, then the
    tensor infos unchanged, padded to the alignment: tensor offsets are relative to the data
    section, so they stay valid wherever it now starts."""

    def raw(span: tuple[int, int]) -> bytes:
        f.seek(span[0])
        return f.read(span[1] - span[0])

    kept = [raw(span) for key, span in header.kv_spans.items() if key not in values]
    added = [_encode(k, v) for k, v in values.items()]
    out = FIXED_HEADER.pack(MAGIC, header.version, len(header.tensors), len(kept) + len(added))
    out += b"".join(kept) + b"".join(added) + raw(header.tensor_infos_span)
    return out + b"\0" * ((-len(out)) % header.alignment)
