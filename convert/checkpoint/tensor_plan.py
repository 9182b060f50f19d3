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
    hparams_kv,
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


def choose_type(outtype: str, shape: tuple[int, ...]) -> GGMLQuantizationType:
    """1-D tensors (norms, biases) stay F32 as llama.cpp expects; Q8_0 needs rows of 32."""
    if len(shape) < 2 or outtype == "f32":
        return GGMLQuantizationType.F32
    target = OUTTYPES[outtype]
    if target == GGMLQuantizationType.Q8_0 and shape[-1] % 32 != 0:
        return GGMLQuantizationType.F16
    return target


@dataclass(frozen=True)
class _TensorPlanner:
    """What planning one checkpoint tensor needs to know about the whole checkpoint."""

    arch: ArchSpec
    name_map: gguf.TensorNameMap
    dims: Dims
    n_vocab_tokens: int
    tied: bool
    outtype: str

    def plan(self, entry: TensorEntry) -> PlannedTensor | None:
        """The output tensor made from `entry`, or None when llama.cpp does not read it."""
        arch, name = self.arch, entry.name
        if name.endswith(arch.ignored_tensor_suffixes):
            return None
        mapped = self.name_map.get_type_and_name(name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise UserError(
                f"{entry.file}: tensor {name!r} has no llama.cpp {arch.arch_name} counterpart; "
                "is this checkpoint really a plain "
                f"{'/'.join(arch.hf_architectures)}? (adapters and vision towers are not converted)"
            )
        kind, gguf_name = mapped
        if kind == T.OUTPUT and self.tied:
            return None
        shape = self._output_shape(entry, kind, gguf_name)
        permute = 0
        if arch.permute_qk and kind in (T.ATTN_Q, T.ATTN_K):
            permute = self.dims.n_head if kind == T.ATTN_Q else self.dims.n_kv
        offset = arch.norm_weight_offset if gguf_name.endswith("norm.weight") else 0.0
        return PlannedTensor(
            gguf_name=gguf_name,
            source=entry,
            shape=shape,
            out_type=choose_type(self.outtype, shape),
            permute_heads=permute,
            add_offset=offset,
        )

    def _output_shape(
        self, entry: TensorEntry, kind: MODEL_TENSOR, gguf_name: str
    ) -> tuple[int, ...]:
        """The checkpoint shape checked against config.json (and the vocabulary, for the
        embedding and output matrices), trimmed to the vocabulary where the architecture says."""
        name, dims, n_vocab = entry.name, self.dims, self.n_vocab_tokens
        expected_fn = SHAPES.get((kind, gguf_name.rsplit(".", 1)[-1]))
        if expected_fn is None:
            raise UserError(
                f"{entry.file}: tensor {name!r} ({gguf_name}) is not used by llama.cpp's "
                f"{self.arch.arch_name}; remove it or convert with the matching architecture"
            )
        shape, expected = entry.shape, expected_fn(dims)
        if kind not in (T.TOKEN_EMBD, T.OUTPUT):
            if shape != expected:
                raise UserError(
                    f"{entry.file}: shape mismatch for {name!r}: {list(shape)}, config.json "
                    f"implies {list(expected)}; checkpoint and config.json do not belong together"
                )
            return shape
        if len(shape) != 2 or shape[1] != dims.hidden or shape[0] < n_vocab:
            raise UserError(
                f"{entry.file}: shape mismatch for {name!r}: {list(shape)}, expected "
                f"[≥{n_vocab}, {dims.hidden}] (vocabulary × hidden_size); checkpoint "
                "and config.json/tokenizer do not belong together"
            )
        if self.arch.trim_embedding_to_vocab:
            return (n_vocab, shape[1])
        if shape[0] != n_vocab:
            raise UserError(
                f"{entry.file}: shape mismatch for {name!r}: {shape[0]} rows but the "
                f"vocabulary has {n_vocab} tokens; check config.json vocab_size"
            )
        return shape


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
    tied = arch.always_tied_output or bool(config.get("tie_word_embeddings", False))
    planner = _TensorPlanner(
        arch=arch,
        name_map=gguf.get_tensor_name_map(arch.gguf_arch, n_blocks),
        dims=dims,
        n_vocab_tokens=n_vocab_tokens,
        tied=tied,
        outtype=outtype,
    )
    planned: list[PlannedTensor] = []
    skipped: list[str] = []
    for name, entry in checkpoint.tensors.items():
        tensor = planner.plan(entry)
        if tensor is None:
            skipped.append(name)
        else:
            planned.append(tensor)
    _check_complete(arch, planned, n_blocks, tied, checkpoint)
    if rope_scaling_kv(config, arch.arch_name)[1] == "llama3":
        planned.append(_rope_freqs_tensor(config))
    planned.sort(key=_gguf_order)
    return ConversionPlan(
        arch=arch,
        outtype=outtype,
        tensors=planned,
        hparams_kv=hparams_kv(arch, config, config_path),
        skipped=skipped,
    )


def _rope_freqs_tensor(config: Mapping[str, Any]) -> PlannedTensor:
    """llama.cpp reads Llama 3.1-style RoPE scaling as a generated per-frequency tensor."""
    factors = np.asarray(llama3_rope_factors(config), dtype=np.float32)
    return PlannedTensor(
        gguf_name=gguf.TENSOR_NAMES[T.ROPE_FREQS] + ".weight",
        source=None,
        shape=factors.shape,
        out_type=GGMLQuantizationType.F32,
        generated=factors,
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
    planned: list[PlannedTensor],
    n_blocks: int,
    tied: bool,
    checkpoint: SafetensorsCheckpoint,
) -> None:
    """Every tensor llama.cpp's loader requires is planned (a missing shard shows up here)."""

    def name(kind: MODEL_TENSOR, suffix: str = "weight", bid: int | None = None) -> str:
        return gguf.TENSOR_NAMES[kind].format(bid=bid) + "." + suffix

    required = [name(T.TOKEN_EMBD), name(T.OUTPUT_NORM)] + ([] if tied else [name(T.OUTPUT)])
    required += [
        name(kind, suffix, bid)
        for bid in range(n_blocks)
        for kind, suffix in arch.required_block_tensors
    ]
    seen = {t.gguf_name for t in planned}
    missing = [r for r in required if r not in seen]
    if missing:
        raise UserError(
            f"{checkpoint.files[0].parent}: checkpoint lacks {missing[0]} ({len(missing)} "
            "required tensors missing); download every shard of the checkpoint"
        )
