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
    n_experts,
    rope_scaling_kv,
)
from seachat.convert.checkpoint.safetensors import SafetensorsCheckpoint, TensorEntry
from seachat.convert.errors import UserError

T = MODEL_TENSOR
F32 = GGMLQuantizationType.F32


@dataclass(frozen=True)
class Dims:
    hidden: int
    n_head: int
    n_kv: int
    head_dim: int
    ffn: int
    vocab: int
    n_expert: int = 0
    ffn_exp: int = 0  # rows of each expert's gate/up projection

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
            n_expert=int(n_experts(config) or 0),
            ffn_exp=int(config.get("moe_intermediate_size") or 0),
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
    (T.FFN_GATE_INP, "weight"): lambda d: (d.n_expert, d.hidden),
    (T.FFN_GATE_EXP, "weight"): lambda d: (d.n_expert, d.ffn_exp, d.hidden),
    (T.FFN_UP_EXP, "weight"): lambda d: (d.n_expert, d.ffn_exp, d.hidden),
    (T.FFN_DOWN_EXP, "weight"): lambda d: (d.n_expert, d.hidden, d.ffn_exp),
}
# llama.cpp's converter keeps the expert router in F32 whatever the output type (its
# quantizer never touches it either): routing decisions flip on small logit differences.
F32_KINDS = (T.FFN_GATE_INP,)

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
    source: TensorEntry | None  # None: generated (data in `generated`) or `stacked`
    shape: tuple[int, ...]  # output shape, row-major (HF order)
    out_type: GGMLQuantizationType
    permute_heads: int = 0  # >0: apply Llama's q/k row permutation with this many heads
    add_offset: float = 0.0  # Gemma's (1 + w) norms
    generated: np.ndarray | None = None
    # Non-empty: the data is these tensors one after another (a stack along a new first axis)
    stacked: tuple[TensorEntry, ...] = ()

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
    # What was left out of a multimodal checkpoint on purpose (e.g. "vision tower"), and how
    # many tensors that was.
    dropped: str | None = None
    n_dropped: int = 0

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
        mapped = self.name_map.get_type_and_name(
            arch.checkpoint_name(name), try_suffixes=(".weight", ".bias")
        )
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
            out_type=F32 if kind in F32_KINDS else choose_type(self.outtype, shape),
            permute_heads=permute,
            add_offset=offset,
        )

    def plan_stack(self, name: str, members: list[TensorEntry]) -> PlannedTensor:
        """One output tensor made of `members` stacked along a new first axis; `name` is the
        stack's name as TensorNameMap knows it (e.g. model.layers.0.mlp.experts.up_proj.weight)."""
        first = members[0]
        mapped = self.name_map.get_type_and_name(name, try_suffixes=(".weight",))
        expected_fn = SHAPES.get((mapped[0], "weight")) if mapped else None
        if mapped is None or expected_fn is None:
            raise UserError(
                f"{first.file}: tensor {first.name!r} has no llama.cpp {self.arch.arch_name} "
                "counterpart; is this checkpoint really a plain "
                f"{'/'.join(self.arch.hf_architectures)}?"
            )
        shape = (len(members), *first.shape)
        odd = next((m for m in members if m.shape != first.shape), None)
        if odd is not None or shape != expected_fn(self.dims):
            bad = odd or first
            raise UserError(
                f"{bad.file}: shape mismatch for {bad.name!r}: {list(bad.shape)}, config.json "
                f"implies {list(expected_fn(self.dims)[1:])}; checkpoint and config.json do "
                "not belong together"
            )
        return PlannedTensor(
            gguf_name=mapped[1],
            source=None,
            shape=shape,
            out_type=choose_type(self.outtype, shape),
            stacked=tuple(members),
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
    stacks = _stacks(checkpoint, arch, config)
    planned = [planner.plan_stack(name, members) for name, members in stacks.items()]
    in_stacks = {e.name for members in stacks.values() for e in members}
    skipped: list[str] = []
    dropped = [name for name in checkpoint.tensors if name.startswith(arch.dropped_prefixes)]
    as_hparams = tuple(suffix for suffix, _ in arch.block_scalar_hparams)
    for name, entry in checkpoint.tensors.items():
        if name in in_stacks:
            continue
        if name.startswith(arch.dropped_prefixes) or name.endswith(as_hparams):
            continue
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
        hparams_kv={
            **hparams_kv(arch, config, config_path),
            **_block_scalars_kv(checkpoint, arch, n_blocks),
        },
        skipped=skipped,
        dropped=arch.dropped_label if dropped else None,
        n_dropped=len(dropped),
    )


def _stacks(
    checkpoint: SafetensorsCheckpoint, arch: ArchSpec, config: Mapping[str, Any]
) -> dict[str, list[TensorEntry]]:
    """The checkpoint tensors the architecture stacks (`ArchSpec.stacked`), by the name of the
    stack, in index order; every index the config implies must be there, and no other."""
    found: dict[str, dict[int, TensorEntry]] = {}
    expected: dict[str, tuple[int, str]] = {}  # stack -> (count, member name with {})
    for name, entry in checkpoint.tensors.items():
        for stack in arch.stacked:
            m = stack.pattern.match(arch.checkpoint_name(name))
            if m:
                merged = m["head"] + m["tail"]
                found.setdefault(merged, {})[int(m["index"])] = entry
                expected[merged] = (int(stack.count(config) or 0), m["head"] + ".{}" + m["tail"])
                break
    out: dict[str, list[TensorEntry]] = {}
    for merged, members in sorted(found.items()):
        count, member = expected[merged]
        missing = [i for i in range(count) if i not in members]
        if missing:
            raise UserError(
                f"{checkpoint.files[0].parent}: checkpoint lacks {member.format(missing[0])} "
                f"({len(missing)} of {count} missing); download every shard"
            )
        extra = sorted(i for i in members if i >= count)
        if extra:
            raise UserError(
                f"{checkpoint.files[0].parent}: checkpoint has {member.format(extra[0])} but "
                f"config.json implies {count}; config.json does not belong to this checkpoint"
            )
        out[merged] = [members[i] for i in range(count)]
    return out


def _block_scalars_kv(
    checkpoint: SafetensorsCheckpoint, arch: ArchSpec, n_blocks: int
) -> dict[str, tuple[Any, gguf.GGUFValueType]]:
    """Per-layer arrays made of one-value block tensors (Apertus' xIELU parameters), which
    llama.cpp reads as hyper-parameters; a few bytes each, so planning reads them."""
    by_name = {arch.checkpoint_name(name): e for name, e in checkpoint.tensors.items()}
    kv: dict[str, tuple[Any, gguf.GGUFValueType]] = {}
    for suffix, key in arch.block_scalar_hparams:
        values = []
        for bid in range(n_blocks):
            name = f"model.layers.{bid}{suffix}"
            entry = by_name.get(name)
            if entry is None or entry.n_elements != 1:
                raise UserError(
                    f"{checkpoint.files[0].parent}: checkpoint lacks the one-value tensor "
                    f"{name!r} llama.cpp's {arch.arch_name} needs; download every shard"
                )
            values.append(float(checkpoint.read_f32(entry, 0, 1).reshape(-1)[0]))
        kv[key] = (values, gguf.GGUFValueType.ARRAY)
    return kv


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
