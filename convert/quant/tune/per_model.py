"""Re-solving an [allocate] profile for the model at hand: the measured ΔKLD (by kind and
depth range) mapped onto this model's groups and ladders, then the same worst-language
allocation within the budget, as rules ahead of the profile's own."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import numpy as np

from seachat.convert.errors import UserError
from seachat.convert.gguf_file.ggml_types import TYPES
from seachat.convert.gguf_file.reader import GGUFHeader
from seachat.convert.quant.plan import plan_tensors
from seachat.convert.quant.profiles import (
    EXPERT_KINDS,
    LayerSelector,
    Profile,
    Rule,
    load_profile,
)
from seachat.convert.quant.tune.allocate import Allocation, allocate
from seachat.convert.quant.tune.groups import (
    PLAN_LADDERS,
    Group,
    block_rules,
    make_groups,
    row_regime,
    split_by_layer,
)

# An untied input embedding was not measured on Gemma's tied one; it is weighed as half the
# output projection's sensitivity (bench part 2: q5_0 input rows cost ~0.6x what q5_0 output
# rows cost, on SmolLM2 with an extended vocabulary).
TOKEN_EMBD_PROXY = 0.5
# Expert tensors were not measured either: for every token the chosen experts of a block do
# what the dense FFN of a dense block does, so all of a block's experts quantized to a type
# are weighed as the dense FFN of the same depth quantized to it (same ΔKLD, n_expert times
# the bytes: the allocation then gives experts the cheaper types, as MoE recipes do).
EXPERT_PROXY = 1.0


def _interpolate(points: dict[float, np.ndarray], bpw: float, source_bpw: float) -> np.ndarray:
    """Per-language ΔKLD at `bpw` from a group's measured (bpw -> ΔKLD) points: linear in
    log ΔKLD between measured types, the slope of the two lowest below them, and a straight
    line to 0 at the source precision above them."""
    xs = sorted(points)
    if bpw in points:
        return points[bpw]
    if bpw > xs[-1]:
        frac = max(0.0, (source_bpw - bpw) / max(source_bpw - xs[-1], 1e-9))
        return points[xs[-1]] * frac
    logs = {x: np.log(np.maximum(points[x], 1e-9)) for x in xs}
    if bpw < xs[0]:
        if len(xs) == 1:
            return points[xs[0]] * 2.0 ** (xs[0] - bpw)  # ~ halving per extra bit
        slope = (logs[xs[1]] - logs[xs[0]]) / (xs[1] - xs[0])
        return np.exp(logs[xs[0]] + slope * (bpw - xs[0]))
    hi = next(x for x in xs if x > bpw)
    lo = max(x for x in xs if x < bpw)
    t = (bpw - lo) / (hi - lo)
    return np.exp(logs[lo] * (1 - t) + logs[hi] * t)


def measured_by_regime(
    measurements: Sequence[dict],
) -> tuple[dict[tuple[str, int | None], dict[str, dict]], list[str]]:
    """(group key, row regime it was measured on) -> type -> per-language ΔKLD, over every file
    (the first file measuring a group on a regime wins); and the languages all files share."""
    table: dict[tuple[str, int | None], dict[str, dict]] = {}
    languages: set[str] | None = None
    for data in measurements:
        rows = {g["key"]: int(g["row"]) for g in data.get("groups", [])}
        per_key: dict[str, dict[str, dict]] = {}
        for key, entry in data["delta"].items():
            gkey, ty = key.rsplit("|", 1)
            per_key.setdefault(gkey, {})[ty] = entry
        for gkey, types in per_key.items():
            regime = row_regime(rows[gkey]) if gkey in rows else None
            table.setdefault((gkey, regime), types)
        langs = set(next(iter(data["delta"].values())))
        languages = langs if languages is None else languages & langs
    if not languages:
        raise UserError("the measurement files share no language; measure them on the same text")
    return table, sorted(languages)


def _lookup(table: dict, key: str, row: int) -> dict[str, dict] | None:
    """A group's measurements made on rows of its own regime, else on any rows."""
    if (key, row_regime(row)) in table:
        return table[(key, row_regime(row))]
    return next((types for (k, _), types in table.items() if k == key), None)


def transfer_measurements(
    groups: list[Group], measurements: Sequence[dict]
) -> tuple[dict, list[str], list[Group]]:
    """Map measured ΔKLD (by group key: kind and depth range, and by row regime) onto this
    model's groups and their ladders. Returns (delta, languages, groups that can be allocated)."""
    table, languages = measured_by_regime(measurements)
    delta: dict[str, dict[str, float]] = {}
    usable = []
    for g in groups:
        measured = _lookup(table, g.key, g.row)
        scale = 1.0
        if not measured and g.kind == "token_embd" and g.layers is None:
            measured, scale = _lookup(table, "output", g.row), TOKEN_EMBD_PROXY
        if not measured and g.kind in EXPERT_KINDS:
            measured = _lookup(table, f"{EXPERT_KINDS[g.kind]}@{g.layers}", g.row)
            scale = EXPERT_PROXY
        if not measured:
            continue
        points = {
            TYPES[t].bits_per_weight: scale * np.array([m[lang] for lang in languages])
            for t, m in measured.items()
            if t in TYPES
        }
        source_bpw = TYPES[g.source_type].bits_per_weight if g.source_type in TYPES else 16.0
        for ty in g.ladder[:-1]:
            values = (
                {lang: scale * v for lang, v in measured[ty].items()} if ty in measured else None
            )
            if values is None:
                arr = _interpolate(points, TYPES[ty].bits_per_weight, source_bpw)
                values = {lang: float(v) for lang, v in zip(languages, arr, strict=True)}
            delta[f"{g.key}|{ty}"] = {lang: float(values[lang]) for lang in languages}
        usable.append(g)
    return delta, languages, usable


def solve_for_header(
    profile: Profile,
    header: GGUFHeader,
    measurements: Sequence[dict],
    budget_bytes: int,
    ranges: int = 3,
    fixed_kinds: Sequence[str] = (),
) -> tuple[Allocation, list[Group]]:
    """Allocate this model's measured groups within budget_bytes; everything the measurements
    do not cover keeps the profile's own choice and counts as fixed. Returns (Allocation,
    groups allocated)."""
    static = dataclasses.replace(profile, allocate=None)
    n_layer = int(header.arch_key("block_count", 0) or 0) or None
    groups, fixed = make_groups(header, n_ranges=ranges, by_row=PLAN_LADDERS)
    delta, languages, usable = transfer_measurements(groups, measurements)
    usable = [g for g in usable if g.kind not in fixed_kinds]
    usable, delta = split_by_layer(usable, delta, header)
    usable_names = {name for g in usable for name in g.tensors}
    static_plan = plan_tensors(
        static,
        header.tensors,
        n_layer=n_layer,
        architecture=header.architecture,
        source=str(header.path),
    )
    fixed += sum(
        t.n_bytes for t in static_plan.tensors if t.quantize and t.name not in usable_names
    )
    return allocate(usable, delta, languages, budget_bytes, fixed), usable


def budget_bytes_for(spec_budget: str | float, header: GGUFHeader) -> tuple[int, str]:
    """The [allocate] budget in bytes on this model (bits per weight, or a fixed-rule
    profile's size on it), and how to name it in messages."""
    if isinstance(spec_budget, float):
        return int(spec_budget * header.n_params / 8), f"{spec_budget} bpw"
    n_layer = int(header.arch_key("block_count", 0) or 0) or None
    plan = plan_tensors(
        load_profile(spec_budget), header.tensors, n_layer=n_layer, architecture=header.architecture
    )
    return plan.n_bytes, f"size of {spec_budget}"


def allocate_for_header(profile: Profile, header: GGUFHeader) -> Profile:
    """The profile with its [allocate] section solved for this model: one rule per measured
    group (kind and depth range) chosen to minimise the worst language's predicted KLD within
    the budget, ahead of the profile's own rules (which still decide everything else)."""
    spec = profile.allocate
    assert spec is not None
    measurements = [json.loads(p.read_text(encoding="utf-8")) for p in spec.measurements]
    budget_bytes, budget_desc = budget_bytes_for(spec.budget, header)
    try:
        alloc, usable = solve_for_header(
            profile, header, measurements, budget_bytes, spec.ranges, spec.fixed
        )
    except UserError as exc:
        raise UserError(
            f"{profile.source or profile.name}: cannot fit {header.path} within the {budget_desc} ({exc})"
        ) from None
    output_type = profile.output_type
    token_embd_type = profile.token_embd_type
    why = f"allocated for this model: worst language within the {budget_desc}"
    for g in usable:
        if g.layers is None and g.kind == "output":
            output_type = TYPES[alloc.choice[g.key]]
        elif g.layers is None and g.kind == "token_embd":
            token_embd_type = TYPES[alloc.choice[g.key]]
    rules = [(kind, layers, TYPES[ty]) for kind, layers, ty in block_rules(usable, alloc.choice)]
    # expert rules first: a dense-kind rule also matches the experts (first match wins)
    rules.sort(key=lambda r: r[0] not in EXPERT_KINDS)
    new_rules = [
        Rule(
            i + 1, ty, (kind,), None, None if layers == "all" else LayerSelector.parse(layers), why
        )
        for i, (kind, layers, ty) in enumerate(rules)
    ]
    offset = len(new_rules)
    new_rules += [dataclasses.replace(r, index=r.index + offset) for r in profile.rules]
    return dataclasses.replace(
        profile,
        allocated=f"worst language within the {budget_desc}",
        allocate=None,
        rules=tuple(new_rules),
        output_type=output_type,
        token_embd_type=token_embd_type,
    )
