"""Resolve a profile against a model's tensors: the exact ggml type of every tensor, and why.

The plan is computed in Python from the GGUF header, before llama.cpp runs, so that
  * every choice — including the fallback for rows that are not a multiple of a k-quant's
    256-element block (Gemma 3 270M's 640-wide rows) — is the profile's, and is reported;
  * the quantizer is then told each tensor's type by exact name (llama.cpp's tensor-type
    overrides), and the written file is checked against the plan afterwards;
  * sizes and bits per weight are known before any work starts (`--dry-run`, `tune`).
Which tensors llama.cpp quantizes at all, and how it names their kinds, mirrors
llama-quant.cpp (tensor_allows_quantization, tensor_get_category).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from seachat.convert.errors import UserError
from seachat.convert.gguf_file.ggml_types import TYPES, TYPES_BY_ID, GGMLType
from seachat.convert.gguf_file.reader import GGUFHeader, TensorInfo
from seachat.convert.quant.profiles import EXPERT_KINDS, Profile

_LAYER_RE = re.compile(r"^blk\.(\d+)\.")

# Substrings of tensor names llama.cpp never quantizes (llama-quant.cpp).
_NEVER_QUANTIZED = (
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
)
_NEVER_QUANTIZED_EXACT = ("position_embd.weight", "token_types.weight")


def n_dims(shape: Sequence[int]) -> int:
    """ggml_n_dims: trailing dimensions of size 1 do not count."""
    n = len(shape)
    while n > 1 and shape[n - 1] == 1:
        n -= 1
    return n


def llama_quantizes(name: str, shape: Sequence[int]) -> bool:
    if n_dims(shape) < 2 or not name.endswith("weight"):
        return False
    if name in _NEVER_QUANTIZED_EXACT:
        return False
    return not any(s in name for s in _NEVER_QUANTIZED)


def tensor_kind(name: str) -> str:
    """llama.cpp's tensor category, by name; expert tensors and the router get kinds of their
    own (llama.cpp files them under ffn_up/gate/down: see profiles.EXPERT_KINDS)."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for key, kind in (
        ("ffn_gate_inp.weight", "ffn_gate_inp"),
        ("ffn_up_exps.weight", "ffn_up_exps"),
        ("ffn_gate_exps.weight", "ffn_gate_exps"),
        ("ffn_down_exps.weight", "ffn_down_exps"),
        ("attn_qkv.weight", "attn_qkv"),
        ("attn_kv_b.weight", "attn_kv_b"),
        ("attn_v.weight", "attn_v"),
        ("attn_k.weight", "attn_k"),
        ("attn_q.weight", "attn_q"),
        ("attn_output.weight", "attn_output"),
        ("ffn_up", "ffn_up"),
        ("ffn_gate", "ffn_gate"),
        ("ffn_down", "ffn_down"),
    ):
        if key in name:
            return kind
    return "other"


def layer_of(name: str) -> int | None:
    m = _LAYER_RE.match(name)
    return int(m.group(1)) if m else None


@dataclass
class TensorPlan:
    name: str
    shape: tuple[int, ...]
    kind: str
    layer: int | None
    source_type: str
    quantize: bool  # llama.cpp may quantize this tensor at all
    requested: str  # what the profile asked for
    final: str  # what will be written
    decided_by: str  # "output_type", "rule 3 (...)", "default_type", "kept (norm/1-D)"
    fallback: str | None = None  # why requested != final
    n_elements: int = 0
    n_bytes: int = 0

    @property
    def row(self) -> int:
        return self.shape[0]


@dataclass
class QuantPlan:
    profile: str
    architecture: str
    n_layer: int
    tied_embeddings: bool
    tensors: list[TensorPlan] = field(default_factory=list)
    unused_rules: list[str] = field(default_factory=list)

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def n_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def bits_per_weight(self) -> float:
        """As llama.cpp reports it: all tensor bytes over all elements."""
        return 8.0 * self.n_bytes / self.n_params if self.n_params else 0.0

    @property
    def fallbacks(self) -> list[TensorPlan]:
        return [t for t in self.tensors if t.fallback]

    def overrides(self) -> list[tuple[str, int]]:
        """(anchored regex, ggml type id) for every quantizable tensor: llama.cpp then does
        exactly this plan and applies none of its own recipe."""
        return [(f"^{re.escape(t.name)}$", TYPES[t.final].id) for t in self.tensors if t.quantize]

    def type_counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for t in self.tensors:
            counts[t.final] += 1
        return dict(sorted(counts.items()))

    def summary_rows(self) -> list[tuple[str, str, str, str, int, int]]:
        """Grouped by (kind, final, decided_by, fallback): kind, types, decided by, layers,
        tensor count, bytes — what a person reads before a long run."""
        groups: dict[tuple[str, str, str, str, str | None], list[TensorPlan]] = defaultdict(list)
        for t in self.tensors:
            if not t.quantize:
                continue
            groups[(t.kind, t.requested, t.final, t.decided_by, t.fallback)].append(t)
        rows = []
        for (kind, req, fin, by, fb), items in groups.items():
            layers = sorted(t.layer for t in items if t.layer is not None)
            types = fin if req == fin else f"{req}->{fin}"
            rows.append(
                (
                    kind,
                    types,
                    by + (f"; {fb}" if fb else ""),
                    _ranges(layers),
                    len(items),
                    sum(t.n_bytes for t in items),
                )
            )
        order = {k: i for i, k in enumerate(("token_embd", "output"))}

        def first_layer(text: str) -> int:
            head = text.split(",")[0].split("-")[0]
            return int(head) if head.isdigit() else -1

        rows.sort(key=lambda r: (order.get(r[0], 2), r[0], first_layer(r[3])))
        return rows

    def to_json(self) -> dict:
        return {
            "profile": self.profile,
            "architecture": self.architecture,
            "n_layer": self.n_layer,
            "tied_embeddings": self.tied_embeddings,
            "n_params": self.n_params,
            "n_bytes": self.n_bytes,
            "bits_per_weight": round(self.bits_per_weight, 4),
            "unused_rules": self.unused_rules,
            "tensors": [asdict(t) for t in self.tensors],
        }


def _ranges(layers: list[int]) -> str:
    if not layers:
        return "-"
    out: list[str] = []
    start = prev = layers[0]
    for x in layers[1:] + [None]:  # type: ignore[list-item]
        if x is not None and x == prev + 1:
            prev = x
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if x is not None:
            start = prev = x
    return ",".join(out)


def _fallback_chain(profile: Profile, wanted: GGMLType, row: int) -> tuple[GGMLType, str | None]:
    t = wanted
    seen = [t.name]
    while not t.fits(row):
        nxt = profile.fallbacks.get(t.name)
        if nxt is None:
            # llama.cpp: a 32-block type with no smaller block to go to becomes F16
            nxt = "f16"
        t = TYPES[nxt]
        seen.append(t.name)
        if len(seen) > 8:  # pragma: no cover - fallbacks always shrink the block
            break
    if t is wanted:
        return t, None
    return t, f"row {row} is not a multiple of {wanted.block} ({' -> '.join(seen)})"


def plan_tensors(
    profile: Profile,
    tensors: Iterable[TensorInfo],
    *,
    n_layer: int | None = None,
    architecture: str = "unknown",
    source: str = "model",
) -> QuantPlan:
    """Every tensor's type under the profile, with the rule that decided it and any
    fallback; UserError when a rule's layer range does not fit this model."""
    tensors = list(tensors)
    names = {t.name for t in tensors}
    tied = "output.weight" not in names
    layers = [layer_of(t.name) for t in tensors]
    if n_layer is None:
        n_layer = max((x for x in layers if x is not None), default=-1) + 1
    for rule in profile.rules:
        if rule.layers is not None:
            problem = rule.layers.problem(n_layer)
            if problem:
                raise UserError(
                    f"{profile.source or profile.name}: {rule.describe()}: {problem} of {source}; fix the range"
                )
    used: set[int] = set()
    plan = QuantPlan(profile.name, architecture, n_layer, tied)
    for info, layer in zip(tensors, layers, strict=True):
        src = TYPES_BY_ID.get(info.ggml_type)
        src_name = src.name if src else info.type_name.lower()
        kind = tensor_kind(info.name)
        shape = tuple(info.shape)
        n_el = info.n_elements
        quantize = llama_quantizes(info.name, info.shape)
        if quantize:
            wanted, decided_by = _requested(profile, info.name, kind, tied, layer, n_layer, used)
            final, why = _fallback_chain(profile, wanted, info.shape[0])
            requested, final_name = wanted.name, final.name
            n_bytes = n_el // info.shape[0] * final.row_bytes(info.shape[0])
        else:
            requested = final_name = src_name
            decided_by, why, n_bytes = "kept (not a quantizable weight)", None, info.n_bytes
        plan.tensors.append(
            TensorPlan(
                info.name,
                shape,
                kind,
                layer,
                src_name,
                quantize=quantize,
                requested=requested,
                final=final_name,
                decided_by=decided_by,
                fallback=why,
                n_elements=n_el,
                n_bytes=n_bytes,
            )
        )
    plan.unused_rules = [r.describe() for r in profile.rules if r.index not in used]
    return plan


def _requested(
    profile: Profile,
    name: str,
    kind: str,
    tied: bool,
    layer: int | None,
    n_layer: int,
    used: set[int],
) -> tuple[GGMLType, str]:
    """The type the profile asks for and what decided it: output_type / token_embd_type, else
    the first matching rule (its index goes into `used`), else default_type. A tied embedding
    is the output projection too, so output rules and output_type apply to it; an expert
    tensor is its dense kind too (profiles.EXPERT_KINDS)."""
    kinds = {kind}
    if kind in EXPERT_KINDS:
        kinds.add(EXPERT_KINDS[kind])
    if kind == "token_embd" and tied and name == "token_embd.weight":
        kinds.add("output")
    wanted: GGMLType | None = None
    decided_by = ""
    if "output" in kinds and profile.output_type is not None:
        wanted = profile.output_type
        decided_by = "output_type" + (" (tied embedding)" if kind == "token_embd" else "")
    elif kind == "token_embd" and profile.token_embd_type is not None:
        wanted, decided_by = profile.token_embd_type, "token_embd_type"
    else:
        for rule in profile.rules:
            if rule.kinds and not kinds.intersection(rule.kinds):
                continue
            if rule.pattern is not None and not rule.pattern.search(name):
                continue
            if rule.layers is not None and (
                layer is None or not rule.layers.matches(layer, n_layer)
            ):
                continue
            wanted, decided_by = rule.type, rule.describe()
            if rule.why.startswith("allocated"):
                decided_by += " [allocated]"
            used.add(rule.index)
            break
    if profile.allocated and decided_by.startswith(("output_type", "token_embd_type")):
        decided_by += " [allocated]"
    if wanted is None:
        return profile.default_type, "default_type"
    return wanted, decided_by


def check_written(plan: QuantPlan, header: GGUFHeader) -> None:
    """The file llama.cpp wrote holds exactly the planned types (guards against drift between
    this planner and llama.cpp's quantizer)."""
    written = {t.name: t for t in header.tensors}
    for t in plan.tensors:
        w = written.get(t.name)
        if w is None:
            raise UserError(
                f"{header.path}: tensor {t.name} is missing from llama.cpp's output; this is a seachat bug, please report it"
            )
        got = TYPES_BY_ID.get(w.ggml_type)
        got_name = got.name if got else w.type_name.lower()
        if got_name != t.final:
            raise UserError(
                f"{header.path}: llama.cpp wrote {t.name} as {got_name} but the plan says {t.final}; this is a seachat bug, please report it"
            )
