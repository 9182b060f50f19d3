"""The conversion plan: every output tensor, where it comes from, how it changes, what type.

Planning reads only headers, so `--dry-run` can show the whole plan and every shape problem is
reported before a single byte is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gguf
import numpy as np
from gguf import GGML_QUANT_SIZES, MODEL_TENSOR, GGMLQuantizationType

from seachat.convert.checkpoint.architectures import (
    ArchSpec,
    head_dim,
    llama3_rope_factors,
    rope_scaling_kv,
)
from seachat.convert.checkpoint.safetensors import SafetensorsCheckpoint, TensorEntry
from seachat.convert.errors import UserError

T = MODEL_TENSOR


@dataclass(frozen=True)
class Dims:
    hidden: int
    n_head: int
    n_kv: int
    head_dim: int
    ffn: int
    vocab: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Dims:
        n_head = int(config["num_attention_heads"])
        return cls(
            hidden=int(config["hidden_size"]),
            n_head=n_head,
            n_kv=int(config.get("num_key_value_heads") or n_head),
            head_dim=head_dim(config),
            ffn=int(config["intermediate_size"]),
            vocab=int(config["vocab_size"]),
        )


# Expected HF (row-major) shapes by tensor kind; ".bias" entries only where the kind has one.
SHAPES: dict[tuple[MODEL_TENSOR, str], Callable[[Dims], tuple[int, ...]]] = {
    (T.TOKEN_EMBD, "weight"): lambda d: (d.vocab, d.hidden),
    (T.OUTPUT, "weight"): lambda d: (d.vocab, d.hidden),
    (T.OUTPUT_NORM, "weight"): lambda d: (d.hidden,),
    (T.ATTN_NORM, "weight"): lambda d: (d.hidden,),
    (T.ATTN_Q, "weight"): lambda d: (d.n_head * d.head_dim, d.hidden),
    (T.ATTN_K, "weight"): lambda d: (d.n_kv * d.head_dim, d.hidden),
    (T.ATTN_V, "weight"): lambda d: (d.n_kv * d.head_dim, d.hidden),
    (T.ATTN_Q, "bias"): lambda d: (d.n_head * d.head_dim,),
    (T.ATTN_K, "bias"): lambda d: (d.n_kv * d.head_dim,),
    (T.ATTN_V, "bias"): lambda d: (d.n_kv * d.head_dim,),
    (T.ATTN_OUT, "weight"): lambda d: (d.hidden, d.n_head * d.head_dim),
    (T.ATTN_Q_NORM, "weight"): lambda d: (d.head_dim,),
    (T.ATTN_K_NORM, "weight"): lambda d: (d.head_dim,),
    (T.ATTN_POST_NORM, "weight"): lambda d: (d.hidden,),
    (T.FFN_NORM, "weight"): lambda d: (d.hidden,),
    (T.FFN_PRE_NORM, "weight"): lambda d: (d.hidden,),
    (T.FFN_POST_NORM, "weight"): lambda d: (d.hidden,),
    (T.FFN_GATE, "weight"): lambda d: (d.ffn, d.hidden),
    (T.FFN_UP, "weight"): lambda d: (d.ffn, d.hidden),
    (T.FFN_DOWN, "weight"): lambda d: (d.hidden, d.ffn),
}

# Tensors each block must have, per architecture (what llama.cpp's loader requires).
_BLOCK_COMMON = (
    (T.ATTN_NORM, "weight"),
    (T.ATTN_Q, "weight"),
    (T.ATTN_K, "weight"),
    (T.ATTN_V, "weight"),
    (T.ATTN_OUT, "weight"),
    (T.FFN_GATE, "weight"),
    (T.FFN_UP, "weight"),
    (T.FFN_DOWN, "weight"),
)
REQUIRED_BLOCK_TENSORS: dict[gguf.MODEL_ARCH, tuple[tuple[MODEL_TENSOR, str], ...]] = {
    gguf.MODEL_ARCH.LLAMA: (*_BLOCK_COMMON, (T.FFN_NORM, "weight")),
    gguf.MODEL_ARCH.QWEN2: (
        *_BLOCK_COMMON,
        (T.FFN_NORM, "weight"),
        (T.ATTN_Q, "bias"),
        (T.ATTN_K, "bias"),
        (T.ATTN_V, "bias"),
    ),
    gguf.MODEL_ARCH.GEMMA2: (
        *_BLOCK_COMMON,
        (T.ATTN_POST_NORM, "weight"),
        (T.FFN_PRE_NORM, "weight"),
        (T.FFN_POST_NORM, "weight"),
    ),
    gguf.MODEL_ARCH.GEMMA3: (
        *_BLOCK_COMMON,
        (T.ATTN_POST_NORM, "weight"),
        (T.FFN_PRE_NORM, "weight"),
        (T.FFN_POST_NORM, "weight"),
        (T.ATTN_Q_NORM, "weight"),
        (T.ATTN_K_NORM, "weight"),
    ),
}

OUTTYPES: dict[str, GGMLQuantizationType] = {
    "f32": GGMLQuantizationType.F32,
    "f16": GGMLQuantizationType.F16,
    "bf16": GGMLQuantizationType.BF16,
    "q8_0": GGMLQuantizationType.Q8_0,
}
FILE_TYPES: dict[str, gguf.LlamaFileType] = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "bf16": gguf.LlamaFileType.MOSTLY_BF16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
}


@dataclass(frozen=True)
class PlannedTensor:
    gguf_name: str
    kind: MODEL_TENSOR | None
    source: TensorEntry | None  # None: generated (data in `generated`)
    shape: tuple[int, ...]  # output shape, row-major (HF order)
    out_type: GGMLQuantizationType
    permute_heads: int = 0  # >0: apply Llama's q/k row permutation with this many heads
    add_offset: float = 0.0  # Gemma's (1 + w) norms
    generated: np.ndarray | None = None

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def out_bytes(self) -> int:
        block, size = GGML_QUANT_SIZES[self.out_type]
        return self.n_elements // block * size

    @property
    def n_rows(self) -> int:
        return self.n_elements // self.shape[-1]


@dataclass
class ConversionPlan:
    arch: ArchSpec
    config: Mapping[str, Any]
    outtype: str
    tensors: list[PlannedTensor]
    hparams_kv: dict[str, tuple[Any, gguf.GGUFValueType]]
    skipped: list[str]

    @property
    def total_bytes(self) -> int:
        return sum(t.out_bytes for t in self.tensors)

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)


def choose_type(
    outtype: str, shape: tuple[int, ...], kind: MODEL_TENSOR | None
) -> GGMLQuantizationType:
    """1-D tensors (norms, biases) stay F32 as llama.cpp expects; Q8_0 needs rows of 32."""
    if len(shape) < 2 or outtype == "f32":
        return GGMLQuantizationType.F32
    target = OUTTYPES[outtype]
    if target == GGMLQuantizationType.Q8_0 and shape[-1] % 32 != 0:
        return GGMLQuantizationType.F16
    return target


def _hparams_kv(
    arch: ArchSpec, config: Mapping[str, Any], config_path: str
) -> dict[str, tuple[Any, gguf.GGUFValueType]]:
    prefix = arch.arch_name
    kv: dict[str, tuple[Any, gguf.GGUFValueType]] = {}
    for hp in arch.hparams:
        value = hp.source(config)
        if value is None:
            if hp.required:
                raise UserError(
                    f"{config_path}: missing hyper-parameter for {prefix}.{hp.key}; the config "
                    "is incomplete (compare with the model's original config.json)"
                )
            continue
        kv[f"{prefix}.{hp.key}"] = (value, hp.value_type)
    scaling, _ = rope_scaling_kv(config)
    for key, val in scaling.items():
        kv[f"{prefix}.{key}"] = val
    if arch.gguf_arch == gguf.MODEL_ARCH.LLAMA:
        kv[f"{prefix}.vocab_size"] = (int(config["vocab_size"]), gguf.GGUFValueType.UINT32)
    return kv


def build_plan(
    checkpoint: SafetensorsCheckpoint,
    arch: ArchSpec,
    config: Mapping[str, Any],
    outtype: str,
    n_vocab_tokens: int,
    config_path: str,
) -> ConversionPlan:
    """Map and validate every checkpoint tensor; `n_vocab_tokens` is the GGUF vocabulary size."""
    dims = Dims.from_config(config)
    n_blocks = int(config["num_hidden_layers"])
    name_map = gguf.get_tensor_name_map(arch.gguf_arch, n_blocks)
    tied = arch.always_tied_output or bool(config.get("tie_word_embeddings", False))

    planned: list[PlannedTensor] = []
    skipped: list[str] = []
    seen: set[tuple[MODEL_TENSOR, str, int | None]] = set()
    for name, entry in checkpoint.tensors.items():
        if name.endswith(arch.ignored_tensor_suffixes):
            skipped.append(name)
            continue
        mapped = name_map.get_type_and_name(name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise UserError(
                f"{entry.file}: tensor {name!r} has no llama.cpp {arch.arch_name} counterpart; "
                "is this checkpoint really a plain "
                f"{'/'.join(arch.hf_architectures)}? (adapters and vision towers are not converted)"
            )
        kind, gguf_name = mapped
        suffix = gguf_name.rsplit(".", 1)[-1]
        if kind == T.OUTPUT and tied:
            skipped.append(name)
            continue
        expected_fn = SHAPES.get((kind, suffix))
        if expected_fn is None:
            raise UserError(
                f"{entry.file}: tensor {name!r} ({gguf_name}) is not used by llama.cpp's "
                f"{arch.arch_name}; remove it or convert with the matching architecture"
            )
        expected = expected_fn(dims)
        shape = entry.shape
        if kind == T.TOKEN_EMBD or kind == T.OUTPUT:
            if len(shape) != 2 or shape[1] != dims.hidden or shape[0] < n_vocab_tokens:
                raise UserError(
                    f"{entry.file}: shape mismatch for {name!r}: {list(shape)}, expected "
                    f"[≥{n_vocab_tokens}, {dims.hidden}] (vocabulary × hidden_size); checkpoint "
                    "and config.json/tokenizer do not belong together"
                )
            if arch.trim_embedding_to_vocab:
                shape = (n_vocab_tokens, shape[1])
            elif shape[0] != n_vocab_tokens:
                raise UserError(
                    f"{entry.file}: shape mismatch for {name!r}: {shape[0]} rows but the "
                    f"vocabulary has {n_vocab_tokens} tokens; check config.json vocab_size"
                )
        elif shape != expected:
            raise UserError(
                f"{entry.file}: shape mismatch for {name!r}: {list(shape)}, config.json implies "
                f"{list(expected)}; checkpoint and config.json do not belong together"
            )
        bid = _block_id(gguf_name)
        seen.add((kind, suffix, bid))
        permute = 0
        if arch.permute_qk and kind in (T.ATTN_Q, T.ATTN_K):
            permute = dims.n_head if kind == T.ATTN_Q else dims.n_kv
        offset = arch.norm_weight_offset if gguf_name.endswith("norm.weight") else 0.0
        planned.append(
            PlannedTensor(
                gguf_name=gguf_name,
                kind=kind,
                source=entry,
                shape=shape,
                out_type=choose_type(outtype, shape, kind),
                permute_heads=permute,
                add_offset=offset,
            )
        )

    _check_complete(arch, seen, n_blocks, tied, checkpoint)

    _, rope_kind = rope_scaling_kv(config)
    if rope_kind == "llama3":
        factors = np.asarray(llama3_rope_factors(config), dtype=np.float32)
        planned.append(
            PlannedTensor(
                gguf_name=gguf.TENSOR_NAMES[T.ROPE_FREQS] + ".weight",
                kind=T.ROPE_FREQS,
                source=None,
                shape=factors.shape,
                out_type=GGMLQuantizationType.F32,
                generated=factors,
            )
        )
    planned.sort(key=_gguf_order)
    return ConversionPlan(
        arch=arch,
        config=config,
        outtype=outtype,
        tensors=planned,
        hparams_kv=_hparams_kv(arch, config, config_path),
        skipped=skipped,
    )


def _block_id(gguf_name: str) -> int | None:
    if gguf_name.startswith("blk."):
        return int(gguf_name.split(".")[1])
    return None


def _gguf_order(t: PlannedTensor) -> tuple[int, int, str]:
    """Global tensors first, then blocks in order (llama.cpp's own converter order)."""
    bid = _block_id(t.gguf_name)
    return (0 if bid is None else 1, bid or 0, t.gguf_name)


def _check_complete(
    arch: ArchSpec,
    seen: set[tuple[MODEL_TENSOR, str, int | None]],
    n_blocks: int,
    tied: bool,
    checkpoint: SafetensorsCheckpoint,
) -> None:
    where = checkpoint.files[0].parent
    required = [(T.TOKEN_EMBD, "weight", None), (T.OUTPUT_NORM, "weight", None)]
    if not tied:
        required.append((T.OUTPUT, "weight", None))
    for bid in range(n_blocks):
        required.extend((k, s, bid) for k, s in REQUIRED_BLOCK_TENSORS[arch.gguf_arch])
    missing = [r for r in required if r not in seen]
    if missing:
        kind, suffix, bid = missing[0]
        label = gguf.TENSOR_NAMES[kind].format(bid=bid) + "." + suffix
        raise UserError(
            f"{where}: checkpoint lacks {label} ({len(missing)} required tensors missing); "
            "download every shard of the checkpoint"
        )
