"""What a person needs to know about a GGUF before loading it: what it is, how big, whether it fits.

Read from the GGUF header only (see seachat.convert.gguf_file.reader), so listing a library of
multi-gigabyte models takes milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil
from gguf import LlamaFileType

from seachat.convert.gguf_file.keys import PROFILE_KEY
from seachat.convert.gguf_file.reader import GGUFFormatError, GGUFHeader, read_gguf_header
from seachat.convert.units import human_count

# llama.cpp needs the weights plus a KV cache and compute buffers; this is the context we plan
# for when saying whether a model "fits" (the chat default).
PLANNING_CONTEXT = 4096
COMPUTE_OVERHEAD_BYTES = 300 * 1024 * 1024


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    name: str
    architecture: str
    n_params: int
    size_label: str
    quantization: str  # llama.cpp file type, e.g. Q4_K_M
    profile: str | None  # seachat profile name, when seachat made the file
    languages: tuple[str, ...]
    file_size: int
    context_length: int
    has_chat_template: bool
    kv_bytes_per_token: int

    def ram_needed(self, n_ctx: int = PLANNING_CONTEXT) -> int:
        ctx = min(n_ctx, self.context_length) if self.context_length else n_ctx
        return self.file_size + ctx * self.kv_bytes_per_token + COMPUTE_OVERHEAD_BYTES

    def fits_in_ram(self, n_ctx: int = PLANNING_CONTEXT, available: int | None = None) -> bool:
        free = available if available is not None else available_ram()
        return self.ram_needed(n_ctx) <= free

    @property
    def params_label(self) -> str:
        return self.size_label or human_count(self.n_params)


def available_ram() -> int:
    return int(psutil.virtual_memory().available)


def file_type_name(value: int | None) -> str:
    if value is None:
        return "unknown"
    try:
        name = LlamaFileType(value).name
    except ValueError:
        return f"type {value}"
    return name.removeprefix("MOSTLY_").replace("ALL_F32", "F32")


def _kv_bytes_per_token(header: GGUFHeader) -> int:
    """f16 K and V for every layer: what the KV cache costs per token of context."""
    n_layer = int(header.arch_key("block_count", 0) or 0)
    n_embd = int(header.arch_key("embedding_length", 0) or 0)
    n_head = int(header.arch_key("attention.head_count", 1) or 1)
    n_head_kv = header.arch_key("attention.head_count_kv", n_head)
    if isinstance(n_head_kv, list):  # per-layer counts
        n_head_kv = max(n_head_kv) if n_head_kv else n_head
    head_dim_k = int(header.arch_key("attention.key_length", n_embd // max(n_head, 1)) or 0)
    head_dim_v = int(header.arch_key("attention.value_length", head_dim_k) or 0)
    return n_layer * int(n_head_kv) * (head_dim_k + head_dim_v) * 2


def model_info_from_header(header: GGUFHeader) -> ModelInfo:
    meta = header.metadata
    languages = meta.get("general.languages") or []
    if isinstance(languages, str):
        languages = [languages]
    name = meta.get("general.name") or header.path.stem
    return ModelInfo(
        path=header.path,
        name=str(name),
        architecture=header.architecture,
        n_params=header.n_params,
        size_label=str(meta.get("general.size_label") or ""),
        quantization=file_type_name(meta.get("general.file_type")),
        profile=meta.get(PROFILE_KEY),
        languages=tuple(str(x) for x in languages),
        file_size=header.file_size,
        context_length=int(header.arch_key("context_length", 0) or 0),
        has_chat_template=bool(meta.get("tokenizer.chat_template")),
        kv_bytes_per_token=_kv_bytes_per_token(header),
    )


def read_model_info(path: str | Path) -> ModelInfo:
    """Raises GGUFFormatError (a ValueError naming the file) for anything that is not a GGUF."""
    return model_info_from_header(read_gguf_header(path))


__all__ = [
    "GGUFFormatError",
    "ModelInfo",
    "available_ram",
    "file_type_name",
    "read_model_info",
]
