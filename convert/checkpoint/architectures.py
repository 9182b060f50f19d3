"""What each supported Hugging Face architecture becomes in GGUF, as data.

One table row per architecture: the llama.cpp architecture, which config keys feed which GGUF
hyper-parameters, and which tensor quirks apply (Llama's q/k RoPE row order, Gemma's
"1 + weight" RMSNorm, Gemma 3's vocabulary-padded embedding). Tensor names come from gguf-py's
own TensorNameMap, so a new architecture is a new row, not new code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gguf

from seachat.convert.errors import UserError

Config = Mapping[str, Any]


def _first(config: Config, *keys: str) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return None


def rope_parameters(config: Config) -> dict[str, Any]:
    """RoPE settings for full-attention layers, whatever the transformers version wrote.

    Older configs: rope_theta + rope_scaling; transformers ≥ 4.57/5: rope_parameters, possibly
    split per layer type ({"full_attention": {...}, "sliding_attention": {...}}).
    """
    params = config.get("rope_parameters")
    if isinstance(params, dict):
        params = params.get("full_attention", params)
        return dict(params)
    merged: dict[str, Any] = dict(config.get("rope_scaling") or {})
    if "type" in merged and "rope_type" not in merged:
        merged["rope_type"] = merged["type"]
    if config.get("rope_theta") is not None:
        merged["rope_theta"] = config["rope_theta"]
    return merged


def sliding_rope_theta(config: Config) -> float | None:
    params = config.get("rope_parameters")
    if isinstance(params, dict) and isinstance(params.get("sliding_attention"), dict):
        return params["sliding_attention"].get("rope_theta")
    return config.get("rope_local_base_freq")


def head_dim(config: Config) -> int:
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


@dataclass(frozen=True)
class HParam:
    """GGUF key `{arch}.{key}` <- the first config value found by `source`."""

    key: str
    source: Callable[[Config], Any]
    value_type: gguf.GGUFValueType
    required: bool = True


def cfg(*names: str) -> Callable[[Config], Any]:
    return lambda c: _first(c, *names)


U32, F32 = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.FLOAT32

COMMON_HPARAMS: tuple[HParam, ...] = (
    HParam("context_length", cfg("max_position_embeddings"), U32),
    HParam("embedding_length", cfg("hidden_size"), U32),
    HParam("block_count", cfg("num_hidden_layers"), U32),
    HParam("feed_forward_length", cfg("intermediate_size"), U32),
    HParam("attention.head_count", cfg("num_attention_heads"), U32),
    HParam("attention.head_count_kv", cfg("num_key_value_heads", "num_attention_heads"), U32),
    HParam("attention.layer_norm_rms_epsilon", cfg("rms_norm_eps"), F32),
    HParam("rope.freq_base", lambda c: rope_parameters(c).get("rope_theta"), F32, required=False),
)

HEAD_DIM_HPARAMS: tuple[HParam, ...] = (
    HParam("attention.key_length", head_dim, U32),
    HParam("attention.value_length", head_dim, U32),
)

LLAMA_HPARAMS: tuple[HParam, ...] = (
    HParam("rope.dimension_count", head_dim, U32),
    HParam("attention.key_length", cfg("head_dim"), U32, required=False),
    HParam("attention.value_length", cfg("head_dim"), U32, required=False),
)

GEMMA2_HPARAMS: tuple[HParam, ...] = (
    *HEAD_DIM_HPARAMS,
    HParam("attn_logit_softcapping", cfg("attn_logit_softcapping"), F32, required=False),
    HParam("final_logit_softcapping", cfg("final_logit_softcapping"), F32, required=False),
    HParam("attention.sliding_window", cfg("sliding_window"), U32, required=False),
)

GEMMA3_HPARAMS: tuple[HParam, ...] = (
    *HEAD_DIM_HPARAMS,
    HParam("final_logit_softcapping", cfg("final_logit_softcapping"), F32, required=False),
    HParam("attention.sliding_window", cfg("sliding_window"), U32, required=False),
    HParam("rope.freq_base_swa", sliding_rope_theta, F32, required=False),
)


@dataclass(frozen=True)
class ArchSpec:
    hf_architectures: tuple[str, ...]
    gguf_arch: gguf.MODEL_ARCH
    hparams: tuple[HParam, ...]
    # Llama-family checkpoints store q/k rows in HF's rotate-half order; llama.cpp expects
    # interleaved pairs, so q_proj/k_proj rows are permuted per head.
    permute_qk: bool = False
    # Gemma RMSNorm multiplies by (1 + w); llama.cpp multiplies by w.
    norm_weight_offset: float = 0.0
    # Gemma 3 embeddings carry rows for padding ids beyond the tokenizer; llama.cpp wants
    # exactly one row per token.
    trim_embedding_to_vocab: bool = False
    # Tensors present in checkpoints that llama.cpp does not use.
    ignored_tensor_suffixes: tuple[str, ...] = (".rotary_emb.inv_freq",)
    # lm_head is never read (output tied to embeddings in llama.cpp's graph).
    always_tied_output: bool = False
    # A config key that must be a specific value for llama.cpp to compute the same function.
    checks: tuple[tuple[str, Callable[[Config], str | None]], ...] = field(default_factory=tuple)

    @property
    def arch_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.gguf_arch]


def _no_attention_bias(config: Config) -> str | None:
    if config.get("attention_bias") or config.get("mlp_bias"):
        return "attention_bias/mlp_bias is not supported for this architecture in llama.cpp"
    return None


def _gemma3_no_attn_softcap(config: Config) -> str | None:
    if config.get("attn_logit_softcapping") is not None:
        return "Gemma 3 has no attention logit soft-capping; this config sets one"
    return None


ARCHITECTURES: tuple[ArchSpec, ...] = (
    ArchSpec(
        ("LlamaForCausalLM", "MistralForCausalLM"),
        gguf.MODEL_ARCH.LLAMA,
        COMMON_HPARAMS + LLAMA_HPARAMS,
        permute_qk=True,
        checks=(("bias", _no_attention_bias),),
    ),
    ArchSpec(("Qwen2ForCausalLM",), gguf.MODEL_ARCH.QWEN2, COMMON_HPARAMS),
    ArchSpec(
        ("Gemma2ForCausalLM",),
        gguf.MODEL_ARCH.GEMMA2,
        COMMON_HPARAMS + GEMMA2_HPARAMS,
        norm_weight_offset=1.0,
        always_tied_output=True,
    ),
    ArchSpec(
        ("Gemma3ForCausalLM",),
        gguf.MODEL_ARCH.GEMMA3,
        COMMON_HPARAMS + GEMMA3_HPARAMS,
        norm_weight_offset=1.0,
        trim_embedding_to_vocab=True,
        always_tied_output=True,
        checks=(("softcap", _gemma3_no_attn_softcap),),
    ),
)

SUPPORTED = ", ".join(a for spec in ARCHITECTURES for a in spec.hf_architectures)


def find_architecture(config: Config, config_path: str) -> ArchSpec:
    names = config.get("architectures") or []
    for name in names:
        for spec in ARCHITECTURES:
            if name in spec.hf_architectures:
                for _label, check in spec.checks:
                    problem = check(config)
                    if problem:
                        raise UserError(f"{config_path}: {problem}")
                return spec
    shown = ", ".join(names) if names else "none listed"
    raise UserError(
        f"{config_path}: architecture {shown} is not supported; seachat converts {SUPPORTED}"
    )


def rope_scaling_kv(config: Config) -> tuple[dict[str, tuple[Any, gguf.GGUFValueType]], str | None]:
    """GGUF keys for RoPE scaling, and the llama3-style rope type when frequency factors are
    needed as a tensor (llama.cpp's rope_freqs)."""
    params = rope_parameters(config)
    rope_type = str(params.get("rope_type") or params.get("type") or "default").lower()
    factor = params.get("factor")
    kv: dict[str, tuple[Any, gguf.GGUFValueType]] = {}
    if rope_type == "linear" and factor is not None:
        kv["rope.scaling.type"] = ("linear", gguf.GGUFValueType.STRING)
        kv["rope.scaling.factor"] = (float(factor), F32)
    elif rope_type == "yarn" and factor is not None:
        kv["rope.scaling.type"] = ("yarn", gguf.GGUFValueType.STRING)
        kv["rope.scaling.factor"] = (float(factor), F32)
        orig = params.get("original_max_position_embeddings")
        if orig is not None:
            kv["rope.scaling.original_context_length"] = (int(orig), U32)
    elif rope_type == "llama3":
        return kv, "llama3"
    elif rope_type not in ("default", "none"):
        raise UserError(
            f"RoPE scaling type {rope_type!r} is not supported (supported: linear, yarn, llama3)"
        )
    return kv, None


def llama3_rope_factors(config: Config) -> list[float]:
    """Per-frequency RoPE factors of Llama 3.1-style scaling (llama.cpp's rope_freqs tensor)."""
    import math

    params = rope_parameters(config)
    base = float(params.get("rope_theta", 10000.0))
    dim = head_dim(config)
    factor = float(params.get("factor", 8.0))
    low = float(params.get("low_freq_factor", 1.0))
    high = float(params.get("high_freq_factor", 4.0))
    old_ctx = float(params.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    factors: list[float] = []
    for i in range(0, dim, 2):
        freq = 1.0 / (base ** (i / dim))
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return factors
