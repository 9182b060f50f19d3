"""What each supported Hugging Face architecture becomes in GGUF, as data.

One `ArchSpec` row per architecture holds everything the converter knows about it: the
llama.cpp architecture, which config keys feed which GGUF hyper-parameters (keys from gguf-py's
`gguf.Keys`), the tensors every block must have, the tensor quirks (Llama's q/k RoPE row order,
Gemma's "1 + weight" RMSNorm) and the vocabulary quirks (Gemma 3's vocabulary-padded embedding,
Llama's vocab_size key). Tensor names come from gguf-py's own TensorNameMap, so a new
architecture is a new row, not new code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import gguf
from gguf import MODEL_TENSOR as T

from seachat.convert.errors import UserError

Config = Mapping[str, Any]
KV = dict[str, tuple[Any, gguf.GGUFValueType]]
K = gguf.Keys


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
    """GGUF key `key` (a `gguf.Keys` template with `{arch}`) <- what `source` finds in the
    config; a missing optional value writes no key, a missing required one is an error."""

    key: str
    source: Callable[[Config], Any]
    value_type: gguf.GGUFValueType
    required: bool = True


def cfg(*names: str) -> Callable[[Config], Any]:
    return lambda c: _first(c, *names)


U32, F32 = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.FLOAT32

COMMON_HPARAMS: tuple[HParam, ...] = (
    HParam(K.LLM.CONTEXT_LENGTH, cfg("max_position_embeddings"), U32),
    HParam(K.LLM.EMBEDDING_LENGTH, cfg("hidden_size"), U32),
    HParam(K.LLM.BLOCK_COUNT, cfg("num_hidden_layers"), U32),
    HParam(K.LLM.FEED_FORWARD_LENGTH, cfg("intermediate_size"), U32),
    HParam(K.Attention.HEAD_COUNT, cfg("num_attention_heads"), U32),
    HParam(K.Attention.HEAD_COUNT_KV, cfg("num_key_value_heads", "num_attention_heads"), U32),
    HParam(K.Attention.LAYERNORM_RMS_EPS, cfg("rms_norm_eps"), F32),
    HParam(K.Rope.FREQ_BASE, lambda c: rope_parameters(c).get("rope_theta"), F32, required=False),
)

HEAD_DIM_HPARAMS: tuple[HParam, ...] = (
    HParam(K.Attention.KEY_LENGTH, head_dim, U32),
    HParam(K.Attention.VALUE_LENGTH, head_dim, U32),
)

LLAMA_HPARAMS: tuple[HParam, ...] = (
    HParam(K.Rope.DIMENSION_COUNT, head_dim, U32),
    HParam(K.Attention.KEY_LENGTH, cfg("head_dim"), U32, required=False),
    HParam(K.Attention.VALUE_LENGTH, cfg("head_dim"), U32, required=False),
)

GEMMA2_HPARAMS: tuple[HParam, ...] = (
    *HEAD_DIM_HPARAMS,
    HParam(K.LLM.ATTN_LOGIT_SOFTCAPPING, cfg("attn_logit_softcapping"), F32, required=False),
    HParam(K.LLM.FINAL_LOGIT_SOFTCAPPING, cfg("final_logit_softcapping"), F32, required=False),
    HParam(K.Attention.SLIDING_WINDOW, cfg("sliding_window"), U32, required=False),
)

GEMMA3_HPARAMS: tuple[HParam, ...] = (
    *HEAD_DIM_HPARAMS,
    HParam(K.LLM.FINAL_LOGIT_SOFTCAPPING, cfg("final_logit_softcapping"), F32, required=False),
    HParam(K.Attention.SLIDING_WINDOW, cfg("sliding_window"), U32, required=False),
    HParam(K.Rope.FREQ_BASE_SWA, sliding_rope_theta, F32, required=False),
)

# Apertus' xIELU activation: llama.cpp reads its four per-layer scalars as arrays of these keys
# (softplus applied inside ggml, as transformers does), from the checkpoint's act_fn tensors.
XIELU_SCALARS: tuple[tuple[str, str], ...] = (
    (".mlp.act_fn.alpha_n", K.xIELU.ALPHA_N),
    (".mlp.act_fn.alpha_p", K.xIELU.ALPHA_P),
    (".mlp.act_fn.beta", K.xIELU.BETA),
    (".mlp.act_fn.eps", K.xIELU.EPS),
)

# llama.cpp's loader reads the vocabulary size of Llama files from this key.
VOCAB_SIZE_HPARAMS: tuple[HParam, ...] = (
    HParam(K.LLM.VOCAB_SIZE, lambda c: int(c["vocab_size"]), U32),
)

# (tensor kind, "weight" or "bias"): what llama.cpp's loader requires of every block.
BlockTensor = tuple[T, str]
BLOCK_COMMON: tuple[BlockTensor, ...] = (
    (T.ATTN_NORM, "weight"),
    (T.ATTN_Q, "weight"),
    (T.ATTN_K, "weight"),
    (T.ATTN_V, "weight"),
    (T.ATTN_OUT, "weight"),
    (T.FFN_GATE, "weight"),
    (T.FFN_UP, "weight"),
    (T.FFN_DOWN, "weight"),
)
QKV_BIASES: tuple[BlockTensor, ...] = ((T.ATTN_Q, "bias"), (T.ATTN_K, "bias"), (T.ATTN_V, "bias"))
GEMMA_SANDWICH_NORMS: tuple[BlockTensor, ...] = (
    (T.ATTN_POST_NORM, "weight"),
    (T.FFN_PRE_NORM, "weight"),
    (T.FFN_POST_NORM, "weight"),
)
QK_NORMS: tuple[BlockTensor, ...] = ((T.ATTN_Q_NORM, "weight"), (T.ATTN_K_NORM, "weight"))


@dataclass(frozen=True)
class Stack:
    """Checkpoint tensors written as one GGUF tensor, stacked along a new first axis in index
    order: every name `pattern` matches belongs to the stack named head + tail (the name
    TensorNameMap knows), at position `index`; `count` says how many the config implies."""

    pattern: re.Pattern[str]  # named groups: head, index, tail
    count: Callable[[Config], Any]


def n_experts(config: Config) -> Any:
    return _first(config, "num_experts", "num_local_experts")


# Mixture-of-experts blocks: llama.cpp holds each projection of all experts in one
# [n_expert, rows, cols] tensor (ffn_{gate,up,down}_exps), stacked from the per-expert ones.
EXPERT_STACKS: tuple[Stack, ...] = (
    Stack(
        re.compile(
            r"^(?P<head>model\.layers\.\d+\.mlp\.experts)\.(?P<index>\d+)"
            r"(?P<tail>\.(?:gate|up|down)_proj\.weight)$"
        ),
        n_experts,
    ),
)
MOE_HPARAMS: tuple[HParam, ...] = (
    HParam(K.LLM.EXPERT_COUNT, n_experts, U32),
    HParam(K.LLM.EXPERT_USED_COUNT, cfg("num_experts_per_tok"), U32),
    HParam(K.LLM.EXPERT_FEED_FORWARD_LENGTH, cfg("moe_intermediate_size"), U32),
)
DENSE_FFN = (T.FFN_GATE, T.FFN_UP, T.FFN_DOWN)
MOE_FFN: tuple[BlockTensor, ...] = (
    (T.FFN_NORM, "weight"),
    (T.FFN_GATE_INP, "weight"),
    (T.FFN_GATE_EXP, "weight"),
    (T.FFN_UP_EXP, "weight"),
    (T.FFN_DOWN_EXP, "weight"),
)


@dataclass(frozen=True)
class ArchSpec:
    hf_architectures: tuple[str, ...]
    gguf_arch: gguf.MODEL_ARCH
    # Written in this order, before the RoPE scaling keys.
    hparams: tuple[HParam, ...]
    required_block_tensors: tuple[BlockTensor, ...]
    # Written after the RoPE scaling keys (the order llama.cpp's own converter uses).
    trailing_hparams: tuple[HParam, ...] = ()
    # Llama-family checkpoints store q/k rows in HF's rotate-half order; llama.cpp expects
    # interleaved pairs, so q_proj/k_proj rows are permuted per head.
    permute_qk: bool = False
    # Gemma RMSNorm multiplies by (1 + w); llama.cpp multiplies by w.
    norm_weight_offset: float = 0.0
    # Gemma 3 embeddings carry rows for padding ids beyond the tokenizer; llama.cpp wants
    # exactly one row per token, so the embedding is trimmed instead of the vocabulary padded.
    trim_embedding_to_vocab: bool = False
    # Tensors present in checkpoints that llama.cpp does not use.
    ignored_tensor_suffixes: tuple[str, ...] = (".rotary_emb.inv_freq",)
    # lm_head is never read (output tied to embeddings in llama.cpp's graph).
    always_tied_output: bool = False
    # Each returns why llama.cpp would compute a different function for this config, or None.
    checks: tuple[Callable[[Config], str | None], ...] = ()
    # Multimodal checkpoints keep the language model's hyper-parameters under this config key;
    # they are merged over the top level (llama.cpp's own converter does the same).
    text_config_key: str | None = None
    # (checkpoint prefix, prefix TensorNameMap knows): the language model inside a multimodal
    # checkpoint, whose prefix depends on the transformers version that saved it.
    renamed_prefixes: tuple[tuple[str, str], ...] = ()
    # Checkpoint tensors left out on purpose, and the one-line name of what they are.
    dropped_prefixes: tuple[str, ...] = ()
    dropped_label: str | None = None
    # (checkpoint name suffix, GGUF key): per-block scalar tensors that llama.cpp reads as
    # per-layer hyper-parameter arrays instead of tensors.
    block_scalar_hparams: tuple[tuple[str, str], ...] = ()
    # Checkpoint tensors that become one stacked GGUF tensor (mixture-of-experts weights).
    stacked: tuple[Stack, ...] = ()

    @property
    def arch_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.gguf_arch]

    def text_config(self, config: Config) -> dict[str, Any]:
        """The config the language model is described by (for multimodal checkpoints, the
        text part over the top level)."""
        if self.text_config_key is None:
            return dict(config)
        return {**config, **(config.get(self.text_config_key) or {})}

    def checkpoint_name(self, name: str) -> str:
        """`name` as TensorNameMap knows it (the language-model prefix of multimodal
        checkpoints rewritten)."""
        for old, new in self.renamed_prefixes:
            if name.startswith(old):
                return new + name[len(old) :]
        return name


def _no_attention_bias(config: Config) -> str | None:
    if config.get("attention_bias") or config.get("mlp_bias"):
        return "attention_bias/mlp_bias is not supported for this architecture in llama.cpp"
    return None


def _no_qkv_bias(config: Config) -> str | None:
    if config.get("attention_bias"):
        return "attention_bias: true is not supported by llama.cpp for this architecture"
    return None


def _no_sliding_window(config: Config) -> str | None:
    if config.get("use_sliding_window"):
        return "use_sliding_window: true is not supported by llama.cpp's qwen3 (no sliding window)"
    return None


def _gelu_tanh(config: Config) -> str | None:
    """llama.cpp's gemma graph applies tanh-approximated GELU; transformers reads the legacy
    "gelu" of Gemma configs as that same approximation."""
    act = _first(config, "hidden_activation", "hidden_act") or "gelu_pytorch_tanh"
    if act not in ("gelu", "gelu_pytorch_tanh"):
        return f"hidden_activation {act!r} is not supported (llama.cpp's gemma uses tanh GELU)"
    return None


def _gemma3_query_scale(config: Config) -> str | None:
    """llama.cpp has no GGUF key for the query scale: its gemma3 graph uses 1/sqrt(head_dim),
    or 1/sqrt(hidden_size/num_attention_heads) for the 62-layer (27B) model."""
    scalar = config.get("query_pre_attn_scalar")
    if scalar is None:
        return None
    if int(config["num_hidden_layers"]) == 62:
        expected, what = config["hidden_size"] // config["num_attention_heads"], "hidden/heads"
    else:
        expected, what = head_dim(config), "head_dim"
    if float(scalar) != float(expected):
        return (
            f"query_pre_attn_scalar {scalar} is not supported: llama.cpp's gemma3 scales queries "
            f"by 1/sqrt({what}) = 1/sqrt({expected}) and has no GGUF key for another value"
        )
    return None


def _xielu_untied(config: Config) -> str | None:
    if config.get("hidden_act", "xielu") != "xielu":
        return f"hidden_act {config['hidden_act']!r} is not supported (llama.cpp's apertus: xielu)"
    if config.get("tie_word_embeddings"):
        return "tie_word_embeddings: true is not supported (llama.cpp's apertus needs lm_head)"
    return None


def _gemma3_no_attn_softcap(config: Config) -> str | None:
    if config.get("attn_logit_softcapping") is not None:
        return "Gemma 3 has no attention logit soft-capping; this config sets one"
    return None


def _qwen3moe_routing(config: Config) -> str | None:
    """llama.cpp's qwen3moe graph routes every block through the experts and always
    renormalises the chosen experts' weights (it reads no expert_weights_norm key)."""
    if not config.get("norm_topk_prob", False):
        return (
            "norm_topk_prob: false is not supported: llama.cpp's qwen3moe always renormalises "
            "the chosen experts' weights, so it would compute a different function"
        )
    if config.get("mlp_only_layers"):
        return "mlp_only_layers is not supported: llama.cpp's qwen3moe has no dense blocks"
    if int(config.get("decoder_sparse_step", 1)) != 1:
        return "decoder_sparse_step != 1 is not supported: llama.cpp's qwen3moe has no dense blocks"
    if config.get("use_sliding_window"):
        return "use_sliding_window: true is not supported by llama.cpp's qwen3moe"
    return None


ARCHITECTURES: tuple[ArchSpec, ...] = (
    ArchSpec(
        ("LlamaForCausalLM", "MistralForCausalLM"),
        gguf.MODEL_ARCH.LLAMA,
        COMMON_HPARAMS + LLAMA_HPARAMS,
        required_block_tensors=(*BLOCK_COMMON, (T.FFN_NORM, "weight")),
        trailing_hparams=VOCAB_SIZE_HPARAMS,
        permute_qk=True,
        checks=(_no_attention_bias,),
    ),
    ArchSpec(
        ("Qwen2ForCausalLM",),
        gguf.MODEL_ARCH.QWEN2,
        COMMON_HPARAMS,
        required_block_tensors=(*BLOCK_COMMON, (T.FFN_NORM, "weight"), *QKV_BIASES),
    ),
    ArchSpec(
        ("Gemma2ForCausalLM",),
        gguf.MODEL_ARCH.GEMMA2,
        COMMON_HPARAMS + GEMMA2_HPARAMS,
        required_block_tensors=(*BLOCK_COMMON, *GEMMA_SANDWICH_NORMS),
        norm_weight_offset=1.0,
        always_tied_output=True,
    ),
    ArchSpec(
        ("Gemma3ForCausalLM",),
        gguf.MODEL_ARCH.GEMMA3,
        COMMON_HPARAMS + GEMMA3_HPARAMS,
        required_block_tensors=(*BLOCK_COMMON, *GEMMA_SANDWICH_NORMS, *QK_NORMS),
        norm_weight_offset=1.0,
        trim_embedding_to_vocab=True,
        always_tied_output=True,
        checks=(_gemma3_no_attn_softcap, _gemma3_query_scale),
    ),
    ArchSpec(
        ("GemmaForCausalLM",),
        gguf.MODEL_ARCH.GEMMA,
        COMMON_HPARAMS + HEAD_DIM_HPARAMS,
        required_block_tensors=(*BLOCK_COMMON, (T.FFN_NORM, "weight")),
        norm_weight_offset=1.0,
        always_tied_output=True,
        checks=(_no_attention_bias, _gelu_tanh),
    ),
    ArchSpec(
        ("Qwen3ForCausalLM",),
        gguf.MODEL_ARCH.QWEN3,
        COMMON_HPARAMS + HEAD_DIM_HPARAMS,
        required_block_tensors=(*BLOCK_COMMON, (T.FFN_NORM, "weight"), *QK_NORMS),
        checks=(_no_qkv_bias, _no_sliding_window),
    ),
    ArchSpec(
        ("ApertusForCausalLM",),
        gguf.MODEL_ARCH.APERTUS,
        COMMON_HPARAMS + LLAMA_HPARAMS,
        required_block_tensors=(
            *(t for t in BLOCK_COMMON if t[0] != T.FFN_GATE),
            (T.FFN_NORM, "weight"),
            *QK_NORMS,
        ),
        trailing_hparams=VOCAB_SIZE_HPARAMS,
        block_scalar_hparams=XIELU_SCALARS,
        checks=(_no_attention_bias, _xielu_untied),
    ),
    ArchSpec(
        ("Qwen3MoeForCausalLM",),
        gguf.MODEL_ARCH.QWEN3MOE,
        COMMON_HPARAMS + HEAD_DIM_HPARAMS + MOE_HPARAMS,
        required_block_tensors=(
            *(t for t in BLOCK_COMMON if t[0] not in DENSE_FFN),
            *QK_NORMS,
            *MOE_FFN,
        ),
        stacked=EXPERT_STACKS,
        checks=(_no_attention_bias, _qwen3moe_routing),
    ),
)


def _gemma3_text_of_multimodal() -> ArchSpec:
    """Gemma 3 4B/12B/27B-it: the Gemma 3 text row, read from the multimodal checkpoint's
    language model; the SigLIP vision tower and its projector are left out."""
    gemma3 = next(spec for spec in ARCHITECTURES if spec.gguf_arch == gguf.MODEL_ARCH.GEMMA3)
    return replace(
        gemma3,
        hf_architectures=("Gemma3ForConditionalGeneration",),
        text_config_key="text_config",
        renamed_prefixes=(
            ("model.language_model.", "model."),  # transformers ≥ 4.52
            ("language_model.model.", "model."),
            ("language_model.lm_head.", "lm_head."),
        ),
        dropped_prefixes=(
            "model.vision_tower.",
            "vision_tower.",
            "model.multi_modal_projector.",
            "multi_modal_projector.",
        ),
        dropped_label="vision tower",
    )


ARCHITECTURES += (_gemma3_text_of_multimodal(),)

SUPPORTED = ", ".join(a for spec in ARCHITECTURES for a in spec.hf_architectures)


def find_architecture(config: Config, config_path: str) -> ArchSpec:
    names = config.get("architectures") or []
    for name in names:
        for spec in ARCHITECTURES:
            if name in spec.hf_architectures:
                text_config = spec.text_config(config)
                for check in spec.checks:
                    problem = check(text_config)
                    if problem:
                        raise UserError(f"{config_path}: {problem}")
                return spec
    shown = ", ".join(names) if names else "none listed"
    raise UserError(
        f"{config_path}: architecture {shown} is not supported; seachat converts {SUPPORTED}"
    )


def hparams_kv(arch: ArchSpec, config: Config, config_path: str) -> KV:
    """Every hyper-parameter key of `arch` with its value, in the order they are written."""
    name = arch.arch_name
    kv: KV = {}
    for hp in arch.hparams:
        _put(kv, hp, name, config, config_path)
    kv.update(rope_scaling_kv(config, name)[0])
    for hp in arch.trailing_hparams:
        _put(kv, hp, name, config, config_path)
    return kv


def _put(kv: KV, hp: HParam, arch_name: str, config: Config, config_path: str) -> None:
    key = hp.key.format(arch=arch_name)
    value = hp.source(config)
    if value is not None:
        kv[key] = (value, hp.value_type)
    elif hp.required:
        raise UserError(
            f"{config_path}: missing hyper-parameter for {key}; the config "
            "is incomplete (compare with the model's original config.json)"
        )


def rope_scaling_kv(config: Config, arch_name: str) -> tuple[KV, str | None]:
    """GGUF keys for RoPE scaling, and the llama3-style rope type when frequency factors are
    needed as a tensor (llama.cpp's rope_freqs)."""
    params = rope_parameters(config)
    rope_type = str(params.get("rope_type") or params.get("type") or "default").lower()
    factor = params.get("factor")
    kv: KV = {}

    def put(template: str, value: Any, value_type: gguf.GGUFValueType) -> None:
        kv[template.format(arch=arch_name)] = (value, value_type)

    if rope_type == "linear" and factor is not None:
        put(K.Rope.SCALING_TYPE, "linear", gguf.GGUFValueType.STRING)
        put(K.Rope.SCALING_FACTOR, float(factor), F32)
    elif rope_type == "yarn" and factor is not None:
        put(K.Rope.SCALING_TYPE, "yarn", gguf.GGUFValueType.STRING)
        put(K.Rope.SCALING_FACTOR, float(factor), F32)
        orig = params.get("original_max_position_embeddings")
        if orig is not None:
            put(K.Rope.SCALING_ORIG_CTX_LEN, int(orig), U32)
    elif rope_type == "llama3":
        return kv, "llama3"
    elif rope_type not in ("default", "none"):
        raise UserError(
            f"RoPE scaling type {rope_type!r} is not supported (supported: linear, yarn, llama3)"
        )
    return kv, None


def llama3_rope_factors(config: Config) -> list[float]:
    """Per-frequency RoPE factors of Llama 3.1-style scaling (llama.cpp's rope_freqs tensor)."""
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
