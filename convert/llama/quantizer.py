"""One call into llama.cpp's quantizer (`llama_model_quantize`), with the C arrays it needs.

The importance matrix (NULL-name terminated array of {name, float*, size}), the per-tensor
type overrides ({regex, ggml_type}, NULL-pattern terminated) and the metadata overrides are
built here and kept referenced until the call returns: llama.cpp reads them during the call
only, but ctypes would free the buffers as soon as Python dropped them.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import llama_cpp as L
import numpy as np

from seachat.convert.errors import UserError
from seachat.convert.gguf_file.keys import OVERRIDE_STRING_BYTES
from seachat.convert.llama.core import LlamaLog, backend_init, default_threads

KvValue = str | int | float | bool


def _kv_array(kv: Mapping[str, KvValue]) -> ctypes.Array | None:
    if not kv:
        return None
    arr = (L.llama_model_kv_override * (len(kv) + 1))()
    for i, (key, value) in enumerate(kv.items()):
        k = key.encode()
        if len(k) >= 128:
            raise ValueError(f"metadata key too long: {key}")
        arr[i].key = k
        if isinstance(value, bool):
            arr[i].tag = L.LLAMA_KV_OVERRIDE_TYPE_BOOL
            arr[i].value.val_bool = value
        elif isinstance(value, int):
            arr[i].tag = L.LLAMA_KV_OVERRIDE_TYPE_INT
            arr[i].value.val_i64 = value
        elif isinstance(value, float):
            arr[i].tag = L.LLAMA_KV_OVERRIDE_TYPE_FLOAT
            arr[i].value.val_f64 = value
        else:
            raw = str(value).encode("utf-8")
            if len(raw) > OVERRIDE_STRING_BYTES:
                raise ValueError(
                    f"metadata {key}: {len(raw)} bytes do not fit llama.cpp's override buffer "
                    f"({OVERRIDE_STRING_BYTES}); write it after quantizing (gguf_file.kv_edit)"
                )
            arr[i].tag = L.LLAMA_KV_OVERRIDE_TYPE_STR
            arr[i].value.val_str = raw
    arr[len(kv)].key = b""
    return arr


def run_llama_quantize(
    src: Path,
    dst: Path,
    *,
    ftype: int,
    overrides: Sequence[tuple[str, int]] | None = None,
    imatrix: Mapping[str, np.ndarray] | None = None,
    kv: Mapping[str, KvValue] | None = None,
    threads: int | None = None,
    allow_requantize: bool = False,
    pure: bool = False,
    echo: Callable[[str], None] | None = None,
) -> None:
    """Quantize src to dst with llama.cpp. `imatrix` maps tensor names to per-column mean
    squared activations (what llama-quantize passes after dividing sums by counts); `echo`
    sees each line llama.cpp logs meanwhile (its per-tensor progress)."""
    backend_init()
    params = L.llama_model_quantize_default_params()
    params.nthread = threads or default_threads()
    params.ftype = ftype
    params.allow_requantize = allow_requantize
    params.pure = pure
    keep: list[object] = []

    if imatrix:
        entries = (L.llama_model_imatrix_data * (len(imatrix) + 1))()
        for i, (name, values) in enumerate(imatrix.items()):
            v = np.ascontiguousarray(values, dtype=np.float32)
            if not np.all(np.isfinite(v)):
                raise UserError(
                    f"importance matrix entry {name} holds non-finite values; recompute it"
                )
            name_b = ctypes.c_char_p(name.encode())
            keep.extend((v, name_b))
            entries[i].name = name_b.value
            entries[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = v.size
        entries[len(imatrix)].name = None
        keep.append(entries)
        params.imatrix = ctypes.cast(entries, ctypes.POINTER(L.llama_model_imatrix_data))

    if overrides:
        tt = (L.llama_model_tensor_override * (len(overrides) + 1))()
        for i, (pattern, type_id) in enumerate(overrides):
            pat = ctypes.c_char_p(pattern.encode())
            keep.append(pat)
            tt[i].pattern = pat.value
            tt[i].type = type_id
        tt[len(overrides)].pattern = None
        tt[len(overrides)].type = L.GGML_TYPE_COUNT
        keep.append(tt)
        params.tt_overrides = ctypes.cast(tt, ctypes.POINTER(L.llama_model_tensor_override))

    kv_arr = _kv_array(kv or {})
    if kv_arr is not None:
        keep.append(kv_arr)
        params.kv_overrides = ctypes.cast(kv_arr, ctypes.POINTER(L.llama_model_kv_override))

    with LlamaLog(echo=echo) as log:
        rc = L.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    del keep
    if rc != 0:
        detail = log.tail(2, match="failed") or log.tail(2)
        raise UserError(f"{src}: llama.cpp could not quantize ({detail})")
