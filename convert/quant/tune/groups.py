"""Tensor groups for `seachat tune`: quantizable tensors by kind and depth range, each with
the ladder of candidate types it is measured and allocated over."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from seachat.convert.errors import UserError
from seachat.convert.gguf_file.ggml_types import TYPES
from seachat.convert.gguf_file.reader import GGUFHeader
from seachat.convert.quant.plan import layer_of, llama_quantizes, tensor_kind

LADDER_256 = ("q4_k", "q5_k", "q6_k", "q8_0")
LADDER_32 = ("iq4_nl", "q5_0", "q5_1", "q8_0")
# The output projection (and a tied embedding) carries every token's logit: below 5 bits it
# costs rare scripts many times what it costs English, so its ladder starts higher.
LADDER_OUTPUT_32 = ("q5_0", "q5_1", "q8_0")
# When a profile is re-solved for another model ([allocate]) the ladders reach lower, so the
# stock recipe the budget names is always among the choices (Q3_K_M puts most of a 4096-wide
# model at q3_k); types that were not measured are interpolated by bits per weight.
PLAN_LADDERS = {
    256: ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_0"),
    32: ("iq4_nl", "q5_0", "q5_1", "q8_0"),
}


@dataclass
class Group:
    key: str  # "attn_v@0-1/3", "output"
    kind: str  # profile kind: attn_v, ffn_down, output, token_embd, ...
    layers: str | None  # depth-fraction selector, None for non-block tensors
    tensors: list[str]
    n_elements: int
    row: int
    ladder: list[str]  # candidate types, cheapest first; the source type is the free top rung
    source_type: str
    nbytes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "kind": self.kind,
            "layers": self.layers,
            "tensors": self.tensors,
            "n_elements": self.n_elements,
            "row": self.row,
            "ladder": self.ladder,
            "bytes": self.nbytes,
        }


def _frac_text(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def depth_ranges(n_layer: int, n_ranges: int) -> list[tuple[str, Fraction, Fraction]]:
    out = []
    for i in range(n_ranges):
        lo, hi = Fraction(i, n_ranges), Fraction(i + 1, n_ranges)
        out.append((f"{_frac_text(lo)}-{_frac_text(hi)}", lo, hi))
    return out


def make_groups(
    header: GGUFHeader,
    n_ranges: int = 3,
    ladders: dict[str, Sequence[str]] | None = None,
    by_row: dict[int, Sequence[str]] | None = None,
) -> tuple[list[Group], int]:
    """Groups of quantizable tensors, and the bytes of everything that is not quantized."""
    n_layer = int(header.arch_key("block_count", 0) or 0) or (
        max((layer_of(t.name) or 0) for t in header.tensors) + 1
    )
    names = {t.name for t in header.tensors}
    tied = "output.weight" not in names
    ranges = depth_ranges(n_layer, n_ranges)
    groups: dict[str, Group] = {}
    fixed = 0
    for t in header.tensors:
        if not llama_quantizes(t.name, t.shape):
            fixed += t.n_bytes
            continue
        kind = tensor_kind(t.name)
        if kind == "token_embd" and tied and t.name == "token_embd.weight":
            kind = "output"
        layer = layer_of(t.name)
        if layer is None:
            key, layers = kind if kind in ("output", "token_embd") else t.name, None
        else:
            pos = Fraction(layer, n_layer)
            text = next(txt for txt, lo, hi in ranges if lo <= pos < hi)
            key, layers = f"{kind}@{text}", text
        src = t.type_name.lower()
        g = groups.get(key)
        if g is None:
            row = int(t.shape[0])
            if ladders and kind in ladders:
                ladder = [x for x in ladders[kind] if TYPES[x].fits(row)]
            elif by_row is not None:
                block = 256 if row % 256 == 0 else 32 if row % 32 == 0 else 0
                ladder = list(by_row.get(block, ()))
            elif kind == "output" and row % 256 != 0 and row % 32 == 0:
                ladder = list(LADDER_OUTPUT_32)
            elif row % 256 == 0:
                ladder = list(LADDER_256)
            elif row % 32 == 0:
                ladder = list(LADDER_32)
            else:
                ladder = []
            # the free top rung is the source precision; an already-quantized source (only with
            # --allow-requantize) is no free choice, so its top rung is f16 instead
            top = src if src in ("f32", "f16", "bf16") else "f16"
            g = Group(key, kind, layers, [], 0, row, [t for t in ladder if t != top] + [top], top)
            groups[key] = g
        elif int(t.shape[0]) % 256 != g.row % 256 or int(t.shape[0]) % 32 != g.row % 32:
            raise UserError(
                f"{header.path}: tensors of group {key} differ in row length; seachat cannot group them"
            )
        g.tensors.append(t.name)
        g.n_elements += t.n_elements
    for g in groups.values():
        infos = {t.name: t for t in header.tensors if t.name in set(g.tensors)}
        for ty in g.ladder:
            total = 0
            for name in g.tensors:
                info = infos[name]
                total += (
                    info.n_elements // info.shape[0] * TYPES[ty].row_bytes(info.shape[0])
                    if ty in TYPES
                    else info.n_bytes
                )
            g.nbytes[ty] = total
    order = {"output": 0, "token_embd": 1}
    return sorted(groups.values(), key=lambda g: (order.get(g.kind, 2), g.kind, g.key)), fixed
