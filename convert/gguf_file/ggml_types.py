"""The ggml tensor types a profile may name, with the facts the planner needs about each.

Sizes come from gguf-py (the same table llama.cpp's GGUF writer uses); the numeric ids are
ggml's and match llama-cpp-python's GGML_TYPE_* constants (checked in the tests). Only types
that llama.cpp's quantizer can produce from F32/F16/BF16 and that the CPU backend runs are
listed: naming anything else in a profile is an error before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType


@dataclass(frozen=True)
class GGMLType:
    name: str  # lower case, as written in profiles: "q4_k"
    id: int  # enum ggml_type
    block: int  # elements per block: rows must be a multiple of this
    block_bytes: int
    needs_imatrix: bool = False  # llama.cpp refuses these without an importance matrix

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.block_bytes / self.block

    @property
    def is_quantized(self) -> bool:
        return self.name not in ("f32", "f16", "bf16")

    def row_bytes(self, n_per_row: int) -> int:
        return n_per_row // self.block * self.block_bytes

    def fits(self, n_per_row: int) -> bool:
        return n_per_row % self.block == 0


_NAMES = (
    "f32",
    "f16",
    "bf16",
    "q8_0",
    "q6_k",
    "q5_k",
    "q5_1",
    "q5_0",
    "q4_k",
    "q4_1",
    "q4_0",
    "iq4_nl",
    "iq4_xs",
    "q3_k",
    "iq3_s",
    "iq3_xxs",
    "q2_k",
    "iq2_s",
    "iq2_xs",
    "iq2_xxs",
    "iq1_m",
    "iq1_s",
)
_NEEDS_IMATRIX = {"iq3_xxs", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_m", "iq1_s"}


def _build() -> dict[str, GGMLType]:
    table: dict[str, GGMLType] = {}
    for name in _NAMES:
        qt = GGMLQuantizationType[name.upper()]
        block, nbytes = GGML_QUANT_SIZES[qt]
        table[name] = GGMLType(name, int(qt), block, nbytes, name in _NEEDS_IMATRIX)
    return table


TYPES: dict[str, GGMLType] = _build()
TYPES_BY_ID: dict[int, GGMLType] = {t.id: t for t in TYPES.values()}

# llama.cpp's own fallbacks when a row is not a multiple of the type's block (llama-quant.cpp,
# tensor_type_fallback). Profiles start from this table and may override any entry.
LLAMA_CPP_FALLBACKS: dict[str, str] = {
    "iq1_s": "iq4_nl",
    "iq1_m": "iq4_nl",
    "iq2_xxs": "iq4_nl",
    "iq2_xs": "iq4_nl",
    "iq2_s": "iq4_nl",
    "iq3_xxs": "iq4_nl",
    "iq3_s": "iq4_nl",
    "iq4_xs": "iq4_nl",
    "q2_k": "q4_0",
    "q3_k": "q4_0",
    "q4_k": "q5_0",
    "q5_k": "q5_1",
    "q6_k": "q8_0",
}

# general.file_type written for a profile whose default type is this (what `seachat models`
# and other tools display); a profile may name its own with `file_type`.
DEFAULT_FILE_TYPE: dict[str, str] = {
    "q8_0": "MOSTLY_Q8_0",
    "q6_k": "MOSTLY_Q6_K",
    "q5_k": "MOSTLY_Q5_K_M",
    "q5_1": "MOSTLY_Q5_1",
    "q5_0": "MOSTLY_Q5_0",
    "q4_k": "MOSTLY_Q4_K_M",
    "q4_1": "MOSTLY_Q4_1",
    "q4_0": "MOSTLY_Q4_0",
    "iq4_nl": "MOSTLY_IQ4_NL",
    "iq4_xs": "MOSTLY_IQ4_XS",
    "q3_k": "MOSTLY_Q3_K_M",
    "iq3_s": "MOSTLY_IQ3_S",
    "iq3_xxs": "MOSTLY_IQ3_XXS",
    "q2_k": "MOSTLY_Q2_K",
    "iq2_s": "MOSTLY_IQ2_S",
    "iq2_xs": "MOSTLY_IQ2_XS",
    "iq2_xxs": "MOSTLY_IQ2_XXS",
    "iq1_m": "MOSTLY_IQ1_M",
    "iq1_s": "MOSTLY_IQ1_S",
}


def file_type_id(name: str) -> int:
    """`Q4_K_M` or `MOSTLY_Q4_K_M` -> llama_ftype value; KeyError when unknown."""
    key = name.upper()
    if not key.startswith("MOSTLY_") and key != "ALL_F32":
        key = "MOSTLY_" + key
    return int(LlamaFileType[key])


def lookup(name: str) -> GGMLType:
    """KeyError (with the list of known names) for a type no profile may use."""
    try:
        return TYPES[name.lower()]
    except KeyError:
        raise KeyError(f"unknown ggml type {name!r} (known: {', '.join(_NAMES)})") from None
