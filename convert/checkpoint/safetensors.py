"""Reading safetensors checkpoints tensor by tensor, row block by row block.

The `safetensors` package cannot hand bf16 to numpy and loads whole tensors; a converter that
must keep peak memory far below the model's size needs neither. The format is simple (an
8-byte header length, a JSON header, raw little-endian data), so we read the header ourselves,
validate every offset against the real file size before any work starts (a truncated shard is
caught up front, not after minutes of writing), and read row blocks with `readinto` into a
reused buffer: nothing is memory-mapped, so resident memory stays at one block, not the file.
"""

from __future__ import annotations

import json
import math
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from seachat.convert.errors import UserError

# safetensors dtype -> (numpy storage dtype, bytes per element)
SUPPORTED_DTYPES: dict[str, tuple[np.dtype, int]] = {
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),  # stored as raw 16-bit words; widened on read
}
KNOWN_BUT_UNSUPPORTED = {"F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2"}
MAX_HEADER_BYTES = 100 * 1024 * 1024
_HAS_PREADV = hasattr(os, "preadv")


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    begin: int  # absolute byte offset in `file`
    end: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def n_bytes(self) -> int:
        return self.end - self.begin

    @property
    def row_length(self) -> int:
        return self.shape[-1] if self.shape else 1


def read_header(path: Path) -> dict[str, TensorEntry]:
    """Parse and validate one safetensors file's header: its tensors by name."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise UserError(
                    f"{path}: not a safetensors file (only {size} bytes); re-download it"
                )
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
                raise UserError(
                    f"{path}: corrupt safetensors header (declares {header_len} header bytes in a "
                    f"{size}-byte file); re-download the file"
                )
            header_bytes = f.read(header_len)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        header = json.loads(header_bytes.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError(
            f"{path}: corrupt safetensors header ({exc}); re-download the file"
        ) from exc

    header.pop("__metadata__", None)
    data_start = 8 + header_len
    tensors: dict[str, TensorEntry] = {}
    for name, info in header.items():
        try:
            dtype = str(info["dtype"])
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(
                f"{path}: corrupt safetensors header entry for {name!r}; re-download the file"
            ) from exc
        if dtype not in SUPPORTED_DTYPES:
            what = "unsupported" if dtype in KNOWN_BUT_UNSUPPORTED else "unknown"
            raise UserError(
                f"{path}: tensor {name!r} has {what} dtype {dtype}; seachat converts BF16, F16 "
                "and F32 checkpoints (dequantize or cast the checkpoint first)"
            )
        entry = TensorEntry(name, dtype, shape, path, data_start + begin, data_start + end)
        expected = entry.n_elements * SUPPORTED_DTYPES[dtype][1]
        if end < begin or entry.n_bytes != expected:
            raise UserError(
                f"{path}: tensor {name!r} spans {end - begin} bytes but shape {list(shape)} "
                f"{dtype} needs {expected}; the file is corrupt, re-download it"
            )
        if entry.end > size:
            raise UserError(
                f"{path}: truncated — tensor {name!r} ends at byte {entry.end} but the file has "
                f"{size} bytes; re-download this shard"
            )
        tensors[name] = entry
    return tensors


def discover_safetensors(model_dir: Path) -> list[Path]:
    """The checkpoint's safetensors files: from the shard index when there is one."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{index}: unreadable shard index ({exc}); re-download it") from exc
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not (model_dir / f).is_file()]
        if missing:
            raise UserError(
                f"{model_dir / missing[0]}: shard listed in {index.name} is missing "
                f"({len(missing)} of {len(files)} missing); download all shards"
            )
        return [model_dir / f for f in files]
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    found = sorted(model_dir.glob("*.safetensors"))
    if found:
        return found
    raise UserError(
        f"{model_dir}: no model.safetensors or model.safetensors.index.json; seachat converts "
        "safetensors checkpoints (convert .bin/.pth weights to safetensors first)"
    )


class SafetensorsCheckpoint:
    """All tensors of a (possibly sharded) checkpoint, read lazily."""

    def __init__(self, model_dir: Path) -> None:
        self.files = discover_safetensors(model_dir)
        self.tensors: dict[str, TensorEntry] = {}
        for path in self.files:
            for name, entry in read_header(path).items():
                if name in self.tensors:
                    raise UserError(
                        f"{path}: tensor {name!r} also appears in {self.tensors[name].file.name}; "
                        "the shards are from different checkpoints"
                    )
                self.tensors[name] = entry
        self._handles: dict[Path, BinaryIO] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for handle in self._handles.values():
                handle.close()
            self._handles.clear()

    def __enter__(self) -> SafetensorsCheckpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handle(self, path: Path) -> BinaryIO:
        with self._lock:
            handle = self._handles.get(path)
            if handle is None:
                handle = self._handles[path] = open(path, "rb", buffering=0)  # noqa: SIM115
            return handle

    def read_raw(self, entry: TensorEntry, start_row: int, stop_row: int) -> np.ndarray:
        """Rows [start_row, stop_row) in the file's own dtype, shape (rows, row_length).
        Thread-safe: positional reads, no shared file offset."""
        storage, itemsize = SUPPORTED_DTYPES[entry.dtype]
        out = np.empty((stop_row - start_row, entry.row_length), dtype=storage)
        view = memoryview(out).cast("B")
        handle = self._handle(entry.file)
        offset = entry.begin + start_row * entry.row_length * itemsize
        done = 0
        while done < len(view):
            if _HAS_PREADV:
                got = os.preadv(handle.fileno(), [view[done:]], offset + done)
            else:  # Windows: no positional reads; serialise seek + read
                with self._lock:
                    handle.seek(offset + done)
                    got = handle.readinto(view[done:]) or 0
            if not got:
                raise UserError(
                    f"{entry.file}: unexpected end of file reading {entry.name!r}; "
                    "the file changed or is truncated, re-download it"
                )
            done += got
        return out

    def read_f32(self, entry: TensorEntry, start_row: int, stop_row: int) -> np.ndarray:
        """Rows as float32 (bf16 widened exactly: bf16 is the top half of an f32)."""
        raw = self.read_raw(entry, start_row, stop_row)
        if entry.dtype == "BF16":
            wide = raw.astype(np.uint32)
            wide <<= 16
            return wide.view(np.float32)
        return raw.astype(np.float32, copy=False)
