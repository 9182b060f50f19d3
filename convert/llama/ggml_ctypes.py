"""A ctypes mirror of `struct ggml_tensor` (ggml/include/ggml.h of the llama.cpp that
llama-cpp-python 0.3.36 vendors) and the few ggml functions the importance-matrix collector
needs to read a graph node's inputs from inside llama.cpp's eval callback.

The layout is checked against the library at first use (ggml_tensor_overhead() is the
struct's size plus ggml's object header), so a llama-cpp-python whose ggml moved fields
fails loudly instead of reading garbage.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np

GGML_MAX_DIMS = 4
GGML_MAX_SRC = 10
GGML_MAX_OP_PARAMS = 64
GGML_MAX_NAME = 64
GGML_OBJECT_SIZE = 32  # struct ggml_object: offs, size, next, type, padding[4]

GGML_TYPE_F32 = 0
GGML_TYPE_F16 = 1
GGML_TYPE_I32 = 26


class GGMLTensor(ctypes.Structure):
    pass


GGMLTensor._fields_ = [
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
    ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * (GGML_MAX_OP_PARAMS // 4)),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(GGMLTensor) * GGML_MAX_SRC),
    ("view_src", ctypes.POINTER(GGMLTensor)),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * GGML_MAX_NAME),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]


class GGMLLib:
    """Bound functions of libggml-base, the library llama_cpp already loaded."""

    def __init__(self) -> None:
        import llama_cpp
        from llama_cpp._ctypes_extensions import load_shared_library

        lib_dir = Path(llama_cpp.__file__).parent / "lib"
        lib = load_shared_library("ggml-base", lib_dir)
        lib.ggml_backend_tensor_get.argtypes = [
            ctypes.POINTER(GGMLTensor),
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_size_t,
        ]
        lib.ggml_backend_tensor_get.restype = None
        lib.ggml_nbytes.argtypes = [ctypes.POINTER(GGMLTensor)]
        lib.ggml_nbytes.restype = ctypes.c_size_t
        lib.ggml_op_name.argtypes = [ctypes.c_int]
        lib.ggml_op_name.restype = ctypes.c_char_p
        lib.ggml_tensor_overhead.argtypes = []
        lib.ggml_tensor_overhead.restype = ctypes.c_size_t
        self.lib = lib
        expected = lib.ggml_tensor_overhead() - GGML_OBJECT_SIZE
        if ctypes.sizeof(GGMLTensor) != expected:
            raise RuntimeError(
                f"struct ggml_tensor is {expected} bytes in this llama.cpp but the mirror is "
                f"{ctypes.sizeof(GGMLTensor)}: seachat needs llama-cpp-python 0.3.36"
            )
        self.op_mul_mat = self.op_id("MUL_MAT")
        self.op_mul_mat_id = self.op_id("MUL_MAT_ID")

    def op_id(self, name: str) -> int:
        for i in range(512):
            raw = self.lib.ggml_op_name(i)
            if raw is None:
                break
            if raw.decode() == name:
                return i
        raise RuntimeError(f"ggml has no op named {name}")

    def read(self, t: GGMLTensor, dtype: type = np.float32) -> np.ndarray:
        """The tensor's elements as an array shaped (ne3, ne2, ne1, ne0), honouring its byte
        strides; copied out of the backend (works for host and device buffers alike)."""
        nbytes = int(self.lib.ggml_nbytes(ctypes.byref(t)))
        raw = np.empty(nbytes, dtype=np.uint8)
        self.lib.ggml_backend_tensor_get(ctypes.byref(t), raw.ctypes.data, 0, nbytes)
        ne = [int(x) for x in t.ne]
        nb = [int(x) for x in t.nb]
        itemsize = np.dtype(dtype).itemsize
        if nb[0] != itemsize:
            raise RuntimeError(f"tensor {t.name!r} is not made of {np.dtype(dtype).name} elements")
        # rows are contiguous (nb[0] == itemsize); rows, planes and batches may be strided
        rows = np.lib.stride_tricks.as_strided(
            raw,
            shape=(ne[3], ne[2], ne[1], ne[0] * itemsize),
            strides=(nb[3], nb[2], nb[1], 1),
            writeable=False,
        )
        return np.ascontiguousarray(rows).view(dtype)


@functools.lru_cache(maxsize=1)
def ggml() -> GGMLLib:
    return GGMLLib()
