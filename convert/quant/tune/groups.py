"""Tensor groups for `seachat tune`: quantizable tensors by kind and depth range, each with
the ladder of candidate types it is measured and allocated over."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from seachat.convert.errors import UserError
from seachat.convert.gguf_file.ggml_types import TYPES
from seachat.convert.gguf_file.reader import GGUFHeader, TensorInfo
from seachat.convert.quant.plan import layer_of, llama_quantizes, tensor_kind

# 256-wide rows are measured from q2_k up: Q3_K_M and Q2_K put most of a large model there.
LADDER_256 = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_0")
LADDER_32 = ("iq4_nl", "q5_0", "q5_1", "q8_0")
# The output projection (and a tied embedding) carries every token's logit: below 5 bits it
# costs rare scripts many times what it costs English, so its ladder starts higher.
LADDER_OUTPUT_32 = ("q5_0", "q5_1", "q8_0")
# When a profile is re-solved for another model ([allocate]) the ladders reach lower, so the
# stock recipe the budget names is always among the choices (Q3_K_M puts most of a 4096-wide
# model at q3_k); types a group's measurements lack are interpolated by bits per weight.
PLAN_LADDERS = {256: LADDER_256, 32: LADDER_32}


def row_regime(row: int) -> int:
    """The block size llama.cpp's k-quant recipes can use on rows this long: 256 (k-quants), 32
    (the fallback types), 0 (none)."""
    return 256 if row % 256 == 0 else 32 if row % 32 == 0 else 0


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


def merge_layer_ranges(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """[(layers 'a-b', type)] sorted by depth -> adjacent ranges with one type merged."""
    out: list[tuple[str, str]] = []
    for layers, ty in items:
        if out and out[-1][1] == ty:
            lo = out[-1][0].split("-")[0]
            hi = layers.split("-")[1]
            out[-1] = (f"{lo}-{hi}", ty)
        else:
            out.append((layers, ty))
    return [("all" if layers == "0-1" else layers, ty) for layers, ty in out]


def block_rules(groups: Sequence[Group], choice: dict[str, str]) -> list[tuple[str, str, str]]:
    """(kind, layers, type) rules for an allocation's groups other than the output projection
    and embedding: by kind, in depth order, adjacent ranges with one type merged ("all" when
    one type covers the whole depth)."""
    by_kind: dict[str, list[tuple[Fraction, str, str]]] = {}
    for g in groups:
        if g.layers is None and g.kind in ("output", "token_embd"):
            continue
        lo = Fraction(g.layers.split("-")[0]) if g.layers else Fraction(0)
        by_kind.setdefault(g.kind, []).append((lo, g.layers or "0-1", choice[g.key]))
    return [
        (kind, layers, ty)
        for kind in sorted(by_kind)
        for layers, ty in merge_layer_ranges([(lay, ty) for _, lay, ty in sorted(by_kind[kind])])
    ]


def block_count(header: GGUFHeader) -> int:
    """The model's number of blocks (from its metadata, else its highest block index)."""
    return int(header.arch_key("block_count", 0) or 0) or (
        max((layer_of(t.name) or 0) for t in header.tensors) + 1
    )


def make_groups(
    header: GGUFHeader,
    n_ranges: int = 3,
    ladders: dict[str, Sequence[str]] | None = None,
    by_row: dict[int, Sequence[str]] | None = None,
) -> tuple[list[Group], int]:
    """Groups of quantizable tensors, and the bytes of everything that is not quantized."""
    n_layer = block_count(header)
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
                ladder = list(by_row.get(row_regime(row), ()))
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
    infos = {t.name: t for t in header.tensors}
    for g in groups.values():
        g.nbytes = _ladder_bytes(g.ladder, [infos[name] for name in g.tensors])
    order = {"output": 0, "token_embd": 1}
    return sorted(groups.values(), key=lambda g: (order.get(g.kind, 2), g.kind, g.key)), fixed


def _ladder_bytes(ladder: Sequence[str], infos: Sequence[TensorInfo]) -> dict[str, int]:
    """Bytes of these tensors at each type of the ladder (the source precision as it is)."""
    return {
        ty: sum(
            t.n_elements // t.shape[0] * TYPES[ty].row_bytes(t.shape[0])
            if ty in TYPES
            else t.n_bytes
            for t in infos
        )
        for ty in ladder
    }


def split_by_layer(
    groups: list[Group], delta: dict, header: GGUFHeader
) -> tuple[list[Group], dict]:
    """Each block group as one group per layer, its measured ΔKLD shared out by elements (the
    allocator already takes ΔKLD to add up over tensors), so the allocation can spend the
    budget a layer at a time instead of leaving what no whole depth range fits."""
    n_layer = block_count(header)
    infos = {t.name: t for t in header.tensors}
    units: list[Group] = []
    unit_delta: dict = {}
    for g in groups:
        by_layer: dict[int | None, list[str]] = {}
        for name in g.tensors:
            by_layer.setdefault(layer_of(name), []).append(name)
        if g.layers is None or len(by_layer) == 1:
            units.append(g)
            unit_delta.update({k: v for k, v in delta.items() if k.startswith(g.key + "|")})
            continue
        for layer, names in sorted(by_layer.items()):
            n_elements = sum(infos[n].n_elements for n in names)
            share = n_elements / g.n_elements
            lo, hi = Fraction(layer, n_layer), Fraction(layer + 1, n_layer)
            layers = f"{_frac_text(lo)}-{_frac_text(hi)}"
            unit = Group(
                f"{g.kind}@{layers}",
                g.kind,
                layers,
                names,
                n_elements,
                g.row,
                g.ladder,
                g.source_type,
                _ladder_bytes(g.ladder, [infos[n] for n in names]),
            )
            units.append(unit)
            for ty in g.ladder[:-1]:
                unit_delta[f"{unit.key}|{ty}"] = {
                    lang: share * v for lang, v in delta[f"{g.key}|{ty}"].items()
                }
    return units, unit_delta
