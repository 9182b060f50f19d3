"""Fast GGUF header reader.

gguf-py's GGUFReader parses every array into numpy views: on a 262k-token vocabulary that
takes ~10 s, far too slow for listing a model library or planning a quantization. This reader
walks the header once, keeps scalars and short arrays, and only records the length of long
arrays (token lists, scores, merges) unless asked for them. It is the one GGUF header parser:
the model library, the quantization planner, the metadata editor (kv_edit, which needs the
byte span of every key/value) and the importance-matrix reader all go through it.
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

MAGIC = struct.pack("<I", gguf.GGUF_MAGIC)  # b"GGUF"
SUPPORTED_VERSIONS = (2, gguf.GGUF_VERSION)
FIXED_HEADER = struct.Struct("<4sIQQ")  # magic, version, tensor count, key/value count

# The one table of GGUF scalar encodings (little-endian): the reader, the metadata editor and
# the writer's fast array packing all take their value sizes from here.
SCALAR_FORMATS: dict[int, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}


class GGUFFormatError(ValueError):
    """The file is not a readable GGUF (wrong magic, truncated, unknown value type)."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # GGUF order: fastest-varying dimension first (row length first)
    ggml_type: int
    offset: int  # relative to the start of the data section

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def type_name(self) -> str:
        try:
            return GGMLQuantizationType(self.ggml_type).name
        except ValueError:
            return f"type{self.ggml_type}"

    @property
    def n_bytes(self) -> int:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(self.ggml_type)]
        return self.n_elements // block * type_size


@dataclass
class GGUFHeader:
    path: Path
    version: int
    metadata: dict[str, Any]
    array_lengths: dict[str, int]  # long arrays that were skipped: key -> length
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0
    file_size: int = 0
    alignment: int = gguf.GGUF_DEFAULT_ALIGNMENT
    # byte ranges [start, end) in the file, for rewriting the header (kv_edit)
    kv_spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    tensor_infos_span: tuple[int, int] = (0, 0)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    def arch_key(self, suffix: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def bits_per_weight(self) -> float:
        n = self.n_params
        return 8.0 * self.tensor_bytes / n if n else 0.0


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GGUFFormatError(f"{self.path}: truncated GGUF header at byte {self.pos}")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        if self.pos + n > len(self.buf):
            raise GGUFFormatError(f"{self.path}: truncated GGUF string at byte {self.pos}")
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int, keep_arrays_up_to: int, key: str, lengths: dict[str, int]) -> Any:
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            item_type = self.unpack("<I")
            count = self.unpack("<Q")
            if count > keep_arrays_up_to:
                lengths[key] = count
                self._skip_array(item_type, count)
                return None
            return [self.value(item_type, keep_arrays_up_to, key, lengths) for _ in range(count)]
        fmt = SCALAR_FORMATS.get(vtype)
        if fmt is None:
            raise GGUFFormatError(f"{self.path}: unknown GGUF value type {vtype} for key {key!r}")
        return self.unpack(fmt)

    def _skip_array(self, item_type: int, count: int) -> None:
        if item_type == GGUFValueType.STRING:
            buf, pos, unpack = self.buf, self.pos, struct.unpack_from
            for _ in range(count):
                (n,) = unpack("<Q", buf, pos)
                pos += 8 + n
            self.pos = pos
        elif item_type == GGUFValueType.ARRAY:
            for _ in range(count):
                self.value(GGUFValueType.ARRAY, 0, "", {})
        else:
            fmt = SCALAR_FORMATS.get(item_type)
            if fmt is None:
                raise GGUFFormatError(f"{self.path}: unknown GGUF array type {item_type}")
            self.pos += struct.calcsize(fmt) * count


def read_gguf_header(
    path: str | Path, keep_arrays_up_to: int = 256, arrays: tuple[str, ...] = ()
) -> GGUFHeader:
    """Read metadata and tensor infos; arrays longer than `keep_arrays_up_to` are skipped
    unless their key is listed in `arrays`."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = path.stat().st_size
            if size < 24:
                raise GGUFFormatError(f"{path}: too small to be a GGUF file ({size} bytes)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, path, size, keep_arrays_up_to, arrays)
    except OSError as exc:
        raise GGUFFormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _parse(
    buf: mmap.mmap, path: Path, size: int, keep_arrays_up_to: int, arrays: tuple[str, ...]
) -> GGUFHeader:
    cur = _Cursor(buf, path)
    magic, version, n_tensors, n_kv = FIXED_HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise GGUFFormatError(f"{path}: not a GGUF file (bad magic)")
    if version not in SUPPORTED_VERSIONS:
        raise GGUFFormatError(f"{path}: unsupported GGUF version {version}")
    cur.pos = FIXED_HEADER.size
    header = GGUFHeader(path, version, {}, {}, file_size=size)
    for _ in range(n_kv):
        start = cur.pos
        key = cur.string()
        vtype = cur.unpack("<I")
        limit = 1 << 62 if key in arrays else keep_arrays_up_to
        value = cur.value(vtype, limit, key, header.array_lengths)
        if value is not None or key not in header.array_lengths:
            header.metadata[key] = value
        header.kv_spans[key] = (start, cur.pos)
    start = cur.pos
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.unpack("<I")
        shape = tuple(cur.unpack("<Q") for _ in range(n_dims))
        ggml_type = cur.unpack("<I")
        offset = cur.unpack("<Q")
        header.tensors.append(TensorInfo(name, shape, ggml_type, offset))
    header.tensor_infos_span = (start, cur.pos)
    header.alignment = int(header.metadata.get("general.alignment", gguf.GGUF_DEFAULT_ALIGNMENT))
    header.data_offset = -(-cur.pos // header.alignment) * header.alignment
    return header
