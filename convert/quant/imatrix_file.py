"""Importance-matrix files, in the formats llama.cpp reads and writes.

GGUF (llama-imatrix's default since 2025): for each weight `W`, an F32 tensor `W.in_sum2`
shaped (n_cols, n_mat) with raw sums of x², and `W.counts` shaped (1, n_mat) with the rows
summed; metadata `general.type = imatrix`, `imatrix.datasets` (strings),
`imatrix.chunk_count`, `imatrix.chunk_size` (common/imatrix-loader.cpp, imatrix.cpp).

Legacy `.dat` (read only): int32 entry count; per entry int32 name length, name, int32 ncall,
int32 nval, nval float32 values holding mean(x²)·ncall; then optionally int32 chunk count and
the dataset name. Means are all it keeps, so it reads back with counts = ncall·chunk_size
(unknown chunk size: 1), exactly as llama-imatrix re-reads it.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter

from seachat.convert.errors import UserError
from seachat.convert.files import temp_beside
from seachat.convert.gguf_file.reader import MAGIC, GGUFFormatError, GGUFHeader, read_gguf_header
from seachat.convert.quant.imatrix import Imatrix, ImatrixEntry

KEY_DATASETS = "imatrix.datasets"
KEY_CHUNK_COUNT = "imatrix.chunk_count"
KEY_CHUNK_SIZE = "imatrix.chunk_size"
SUM_SUFFIX = ".in_sum2"
COUNT_SUFFIX = ".counts"


def write_imatrix(imatrix: Imatrix, path: str | Path) -> Path:
    """Write in llama.cpp's GGUF imatrix format (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path, "imatrix")
    try:
        writer = GGUFWriter(tmp, arch="imatrix")
        writer.kv_data[0].pop("general.architecture", None)  # llama-imatrix writes none
        writer.add_type("imatrix")
        # gguf-py refuses an empty array; llama.cpp needs the key to exist
        datasets = list(imatrix.datasets) or ["(unnamed)"]
        writer.add_key_value(
            KEY_DATASETS, datasets, GGUFValueType.ARRAY, sub_type=GGUFValueType.STRING
        )
        writer.add_uint32(KEY_CHUNK_COUNT, int(imatrix.chunk_count))
        writer.add_uint32(KEY_CHUNK_SIZE, int(imatrix.chunk_size))
        for name in sorted(imatrix.entries):
            e = imatrix.entries[name]
            sums = np.ascontiguousarray(e.sums, dtype=np.float32)
            counts = e.counts.astype(np.float32).reshape(-1, 1)
            if sums.shape[0] == 1:  # ggml drops trailing dimensions of 1: (n_cols,) and (1,)
                sums, counts = sums.reshape(-1), counts.reshape(-1)
            writer.add_tensor(name + SUM_SUFFIX, sums)
            writer.add_tensor(name + COUNT_SUFFIX, counts)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_imatrix(path: str | Path) -> Imatrix:
    """Read a GGUF imatrix, or a legacy .dat one; UserError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such importance-matrix file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == MAGIC:
        return _read_gguf(path)
    return _read_legacy(path)


def _read_gguf(path: Path) -> Imatrix:
    try:
        header = read_gguf_header(path, arrays=(KEY_DATASETS,))
    except GGUFFormatError as exc:
        raise UserError(f"{path}: not a readable GGUF imatrix ({exc})") from exc
    datasets = header.get(KEY_DATASETS)
    chunk_count = header.get(KEY_CHUNK_COUNT)
    chunk_size = header.get(KEY_CHUNK_SIZE)
    if datasets is None or chunk_count is None or chunk_size is None:
        raise UserError(
            f"{path}: GGUF file without imatrix metadata (imatrix.datasets/chunk_count/chunk_size); is it an importance matrix?"
        )
    sums, counts = _read_tensors(header)
    if not sums:
        raise UserError(f"{path}: the importance matrix holds no entries")
    entries: dict[str, ImatrixEntry] = {}
    for name in sorted(set(sums) | set(counts)):
        if name not in sums or name not in counts:
            raise UserError(
                f"{path}: {name} has sums without counts (or the reverse); the file is damaged"
            )
        c = np.rint(counts[name].reshape(-1)).astype(np.int64)
        n_mat = c.size
        s = sums[name].reshape(n_mat, -1).astype(np.float64)
        entries[name] = ImatrixEntry(s, c)
    return Imatrix(entries, [str(d) for d in datasets], int(chunk_count), int(chunk_size))


def _read_tensors(header: GGUFHeader) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """weight name -> x² sums and -> counts, read from the data section (F32 only, as
    llama.cpp's imatrix loader requires)."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    with open(header.path, "rb") as f:
        for t in header.tensors:
            if t.ggml_type != GGMLQuantizationType.F32:
                raise UserError(
                    f"{header.path}: {t.name} is {t.type_name}, not F32; the file is damaged"
                )
            f.seek(header.data_offset + t.offset)
            raw = f.read(4 * t.n_elements)
            if len(raw) < 4 * t.n_elements:
                raise UserError(f"{header.path}: truncated at {t.name}; the file is damaged")
            values = np.frombuffer(raw, dtype="<f4")
            if t.name.endswith(SUM_SUFFIX):
                sums[t.name[: -len(SUM_SUFFIX)]] = values
            elif t.name.endswith(COUNT_SUFFIX):
                counts[t.name[: -len(COUNT_SUFFIX)]] = values
    return sums, counts


def _read_legacy(path: Path) -> Imatrix:
    data = path.read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise UserError(f"{path}: truncated legacy imatrix (.dat) file; recompute it")
        vals = struct.unpack_from(fmt, data, pos)
        pos += size
        return vals

    (n_entries,) = take("<i")
    if n_entries < 1 or n_entries > 1_000_000:
        raise UserError(f"{path}: neither a GGUF nor a legacy .dat importance matrix")
    raw: dict[str, tuple[int, np.ndarray]] = {}
    for _ in range(n_entries):
        (n,) = take("<i")
        if not 0 < n < 4096:
            raise UserError(f"{path}: neither a GGUF nor a legacy .dat importance matrix")
        name = data[pos : pos + n].decode("utf-8", errors="replace")
        pos += n
        ncall, nval = take("<ii")
        if nval < 1:
            raise UserError(f"{path}: entry {name} has no values; the file is damaged")
        values = np.frombuffer(data, dtype="<f4", count=nval, offset=pos).astype(np.float64)
        pos += 4 * nval
        raw[name] = (ncall, values)
    chunk_count = 0
    datasets: list[str] = []
    if pos + 4 <= len(data):
        (chunk_count,) = take("<i")
        if pos + 4 <= len(data):
            (n,) = take("<i")
            if n > 0 and pos + n <= len(data):
                datasets.append(data[pos : pos + n].decode("utf-8", errors="replace"))
    # the .dat keeps mean·ncall; a count of ncall rows gives back the same mean
    entries = {
        name: ImatrixEntry(
            values.reshape(1, -1), np.array([ncall if ncall > 0 else 1], dtype=np.int64)
        )
        for name, (ncall, values) in sorted(raw.items())
    }
    return Imatrix(entries, datasets, int(chunk_count), 0)
