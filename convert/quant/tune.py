"""`seachat tune`: spend a bits-per-weight budget where the worst-served language needs it.

1. Group the model's quantizable tensors by kind and depth range (attn_v of the first third
   of the blocks, ffn_down of the last third, the output/tied embedding, ...).
2. Measure: for every group and every candidate type on its ladder, quantize ONLY that group
   (everything else stays at the source precision) and evaluate the probe against the
   source on every language. That gives ΔKLD[group, type, language]: how much each group
   hurts each language when quantized lower. Probes run several at a time against one
   reference pass; results are cached in the measurements JSON, so an interrupted tune
   resumes where it stopped.
3. Choose one type per group minimising the WORST language's predicted KLD (sum of the
   group ΔKLDs, which add up for small independent errors) subject to the total size
   budget: multiplicative weights over languages, each step an exact multiple-choice
   knapsack (dynamic programming over bytes), then a local search on the best iterate.
4. Write the profile TOML (rules by kind and depth fraction, so it applies to models of any
   depth) and the measurements behind it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from seachat.convert.errors import UserError
from seachat.convert.files import write_text_atomic
from seachat.convert.gguf_file.ggml_types import DEFAULT_FILE_TYPE, TYPES
from seachat.convert.gguf_file.reader import GGUFHeader, read_gguf_header
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
# An untied input embedding was not measured on Gemma's tied one; it is weighed as half the
# output projection's sensitivity (bench part 2: q5_0 input rows cost ~0.6x what q5_0 output
# rows cost, on SmolLM2 with an extended vocabulary).
TOKEN_EMBD_PROXY = 0.5
MEASUREMENTS_VERSION = 1

Progress = Callable[[str, int, int], None]


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


# --------------------------------------------------------------------------- measurement


def _hash_file_meta(path: Path) -> str:
    st = path.stat()
    return f"{path.name}:{st.st_size}:{int(st.st_mtime)}"


def _texts_digest(texts: dict[str, str]) -> str:
    h = hashlib.sha256()
    for k in sorted(texts):
        h.update(k.encode())
        h.update(texts[k].encode())
    return h.hexdigest()[:16]


def measure(
    model: Path,
    groups: list[Group],
    texts: dict[str, str],
    *,
    imatrix_means: dict[str, np.ndarray] | None,
    imatrix_id: str,
    cache: Path,
    tokens: int = 192,
    batch: int = 4,
    threads: int | None = None,
    progress: Progress | None = None,
    work_dir: Path | None = None,
    n_gpu_layers: int = 0,
) -> dict:
    """ΔKLD per (group, type, language), cached in `cache` (JSON) and resumed from it."""
    from seachat.convert.llama.quantizer import run_llama_quantize
    from seachat.convert.quant.evaluate import evaluate_models

    settings = {
        "version": MEASUREMENTS_VERSION,
        "model": _hash_file_meta(model),
        "texts": _texts_digest(texts),
        "languages": sorted(texts),
        "tokens_per_language": tokens,
        "imatrix": imatrix_id,
    }
    data: dict = {"settings": settings, "delta": {}}
    if cache.exists():
        try:
            old = json.loads(cache.read_text(encoding="utf-8"))
            if old.get("settings") == settings:  # keep what earlier runs stored (allocations)
                data = old
                data.setdefault("delta", {})
        except (OSError, json.JSONDecodeError):
            pass
    header = read_gguf_header(model)
    src_types = {t.name: t.ggml_type for t in header.tensors if llama_quantizes(t.name, t.shape)}
    todo = [(g, ty) for g in groups for ty in g.ladder[:-1] if f"{g.key}|{ty}" not in data["delta"]]
    total = sum(len(g.ladder) - 1 for g in groups)
    done = total - len(todo)
    if progress:
        progress("measure", done, total)
    work = Path(work_dir or tempfile.mkdtemp(prefix="seachat-tune-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for start in range(0, len(todo), batch):
            part = todo[start : start + batch]
            probes = []
            for i, (g, ty) in enumerate(part):
                path = work / f"probe-{i}.gguf"
                chosen = set(g.tensors)
                overrides = [
                    (f"^{_re_escape(name)}$", TYPES[ty].id if name in chosen else tid)
                    for name, tid in src_types.items()
                ]
                run_llama_quantize(
                    model,
                    path,
                    ftype=7,
                    overrides=overrides,
                    imatrix=imatrix_means,
                    threads=threads,
                )
                probes.append(path)
            reports = evaluate_models(
                model, probes, texts, max_tokens=tokens, threads=threads, n_gpu_layers=n_gpu_layers
            )
            for (g, ty), rep in zip(part, reports, strict=True):
                data["delta"][f"{g.key}|{ty}"] = {
                    lang: r.kld_mean for lang, r in rep.languages.items()
                }
            for p in probes:
                p.unlink(missing_ok=True)
            _write_json(cache, data)
            done += len(part)
            if progress:
                progress("measure", done, total)
    finally:
        for p in work.glob("probe-*.gguf"):
            p.unlink(missing_ok=True)
        if work_dir is None:
            with contextlib.suppress(OSError):
                work.rmdir()
    return data


def _re_escape(name: str) -> str:
    import re

    return re.escape(name)


def _write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- allocation


@dataclass
class Allocation:
    choice: dict[str, str]  # group key -> type
    n_bytes: int  # tensor bytes of the whole model with this choice
    predicted: dict[str, float]  # language -> predicted KLD
    budget_bytes: int

    @property
    def worst(self) -> tuple[str, float]:
        lang = max(self.predicted, key=self.predicted.get)
        return lang, self.predicted[lang]


def _delta_matrix(groups: list[Group], delta: dict, languages: list[str]) -> list[np.ndarray]:
    """Per group: array (n_types, n_languages); the source type (top rung) costs 0."""
    out = []
    for g in groups:
        rows = []
        for ty in g.ladder:
            if ty == g.ladder[-1]:
                rows.append(np.zeros(len(languages)))
                continue
            entry = delta.get(f"{g.key}|{ty}")
            if entry is None:
                raise UserError(f"no measurement for {g.key} at {ty}; run the measurement again")
            rows.append(np.array([max(0.0, float(entry[lang])) for lang in languages]))
        out.append(np.vstack(rows))
    return out


def _mckp(costs: list[np.ndarray], weights: list[np.ndarray], cap: int) -> list[int] | None:
    """Exact multiple-choice knapsack by DP: one option per group, total weight <= cap,
    minimal total cost. Returns the option index per group, or None if nothing fits."""
    inf = np.inf
    dp = np.full(cap + 1, inf)
    dp[0] = 0.0
    choices = []
    for c, w in zip(costs, weights, strict=True):
        new = np.full(cap + 1, inf)
        arg = np.full(cap + 1, -1, dtype=np.int16)
        for j in range(len(c)):
            wj = int(w[j])
            if wj > cap:
                continue
            cand = np.full(cap + 1, inf)
            cand[wj:] = dp[: cap + 1 - wj] + c[j]
            better = cand < new
            new[better] = cand[better]
            arg[better] = j
        dp = new
        choices.append(arg)
    if not np.isfinite(dp).any():
        return None
    b = int(np.argmin(dp))
    picked = []
    for g in range(len(costs) - 1, -1, -1):
        j = int(choices[g][b])
        picked.append(j)
        b -= int(weights[g][j])
    return picked[::-1]


def allocate(
    groups: list[Group],
    delta: dict,
    languages: list[str],
    budget_bytes: int,
    fixed_bytes: int,
    *,
    iterations: int = 150,
    cells: int = 8000,
) -> Allocation:
    """Minimise the worst language's predicted KLD within the byte budget."""
    mats = _delta_matrix(groups, delta, languages)
    avail = budget_bytes - fixed_bytes
    min_bytes = sum(min(g.nbytes[t] for t in g.ladder) for g in groups)
    if avail < min_bytes:
        raise UserError(
            f"budget of {budget_bytes} bytes is below the smallest this model can be made with these ladders ({min_bytes + fixed_bytes} bytes); raise --budget"
        )
    unit = max(1, math.ceil(avail / cells))
    weights = [np.array([math.ceil(g.nbytes[t] / unit) for t in g.ladder]) for g in groups]
    cap = avail // unit
    lam = np.full(len(languages), 1.0 / len(languages))
    best: tuple[float, float, list[int]] | None = None
    for _ in range(iterations):
        costs = [m @ lam for m in mats]
        picked = _mckp(costs, weights, cap)
        if picked is None:
            break
        k = sum(m[j] for m, j in zip(mats, picked, strict=True))
        key = (float(k.max()), float(k.mean()), picked)
        if best is None or key[:2] < best[:2]:
            best = key
        lam = lam * np.exp(0.5 * k / max(float(k.max()), 1e-12))
        lam /= lam.sum()
    if best is None:
        raise UserError("no type assignment fits the budget")
    picked = _local_search(best[2], mats, groups, avail)
    choice = {g.key: g.ladder[j] for g, j in zip(groups, picked, strict=True)}
    k = sum(m[j] for m, j in zip(mats, picked, strict=True))
    n_bytes = fixed_bytes + sum(g.nbytes[g.ladder[j]] for g, j in zip(groups, picked, strict=True))
    return Allocation(
        choice,
        n_bytes,
        {lang: float(v) for lang, v in zip(languages, k, strict=True)},
        budget_bytes,
    )


def _local_search(
    picked: list[int], mats: list[np.ndarray], groups: list[Group], avail: int
) -> list[int]:
    """Single-group changes that lower the worst language (then the mean) within budget."""
    picked = list(picked)

    def score(p: list[int]) -> tuple[float, float]:
        k = sum(m[j] for m, j in zip(mats, p, strict=True))
        return float(k.max()), float(k.mean())

    def size(p: list[int]) -> int:
        return sum(g.nbytes[g.ladder[j]] for g, j in zip(groups, p, strict=True))

    current = score(picked)
    for _ in range(200):
        best_move = None
        for gi, g in enumerate(groups):
            for j in range(len(g.ladder)):
                if j == picked[gi]:
                    continue
                trial = picked.copy()
                trial[gi] = j
                if size(trial) > avail:
                    continue
                s = score(trial)
                if s < current and (best_move is None or s < best_move[0]):
                    best_move = (s, gi, j)
        if best_move is None:
            break
        current, gi, j = best_move
        picked[gi] = j
    return picked


# --------------------------------------------------------------------------- profile output


def _merge_ranges(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
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


def profile_toml(
    *,
    name: str,
    summary: str,
    groups: list[Group],
    allocation: Allocation,
    n_params: int,
    calibration: dict | None,
    tuned: dict,
    file_type: str | None = None,
    allocate: dict | None = None,
    token_embd_type: str | None = None,
) -> str:
    by_kind: dict[str, list[tuple[Fraction, str, str]]] = {}
    output_type = None
    default_counts: dict[str, int] = {}
    for g in groups:
        ty = allocation.choice[g.key]
        if g.kind == "output" and g.layers is None:
            output_type = ty
            continue
        if g.kind == "token_embd" and g.layers is None:
            token_embd_type = ty
            continue
        lo = Fraction(g.layers.split("-")[0]) if g.layers else Fraction(0)
        by_kind.setdefault(g.kind, []).append((lo, g.layers or "0-1", ty))
        if ty in DEFAULT_FILE_TYPE:
            default_counts[ty] = default_counts.get(ty, 0) + g.n_elements
    main_type = max(default_counts, key=default_counts.get) if default_counts else "q8_0"
    bpw = 8.0 * allocation.n_bytes / n_params if n_params else 0.0
    lines = [
        f"# Tuned by `seachat tune` on {tuned.get('model', '?')} ({tuned.get('date', '?')}).",
        "# Each rule sets one kind of tensor in one depth range; the types were chosen to minimise",
        "# the worst language's KL divergence within the size budget. See [tuned] for the data.",
        f'name = "{name}"',
        f"summary = {json.dumps(summary, ensure_ascii=False)}",
        f"target_bpw = {bpw:.3f}",
        'default_type = "q8_0"  # anything the rules and [allocate] do not cover',
        f'file_type = "{file_type or DEFAULT_FILE_TYPE[main_type].removeprefix("MOSTLY_")}"',
    ]
    if output_type and output_type in TYPES and TYPES[output_type].is_quantized:
        lines.append(f'output_type = "{output_type}"')
    elif output_type:
        lines.append(f'output_type = "{output_type}"  # kept at source precision')
    if token_embd_type:
        lines.append(f'token_embd_type = "{token_embd_type}"')
    lines.append("imatrix = true")
    if allocate:
        lines.append("")
        lines.append(
            "[allocate]  # re-solved for every model: worst language first, never above the budget"
        )
        budget = allocate["budget"]
        lines.append(f"budget = {json.dumps(budget)}")
        lines.append(f"measurements = {json.dumps(allocate['measurements'])}")
        lines.append(f"ranges = {int(allocate.get('ranges', 3))}")
    lines.append("")
    if calibration:
        lines.append("[calibration]")
        lines.append(f"tokens = {int(calibration.get('tokens', 16384))}")
        lines.append(f"chunk_size = {int(calibration.get('chunk_size', 512))}")
        if calibration.get("process_output"):
            lines.append("process_output = true")
        lines.append("")
        lines.append("[calibration.mix]")
        for lang, w in calibration["mix"].items():
            lines.append(f"{lang} = {float(w):g}")
        lines.append("")
    for kind in sorted(by_kind):
        items = [(layers, ty) for _, layers, ty in sorted(by_kind[kind])]
        for layers, ty in _merge_ranges(items):
            lines.append("[[rules]]")
            lines.append(f'kind = "{kind}"')
            if layers != "all":
                lines.append(f'layers = "{layers}"')
            lines.append(f'type = "{ty}"')
            lines.append("")
    lines.append("[tuned]")
    for k, v in tuned.items():
        lines.append(f"{k} = {json.dumps(v, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


def now_date() -> str:
    return _dt.date.today().isoformat()


# --------------------------------------------------------------------------- allocation per model


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


def transfer_measurements(
    groups: list[Group], measurements: dict
) -> tuple[dict, list[str], list[Group]]:
    """Map measured ΔKLD (by group key: kind and depth range) onto this model's groups and
    their ladders. Returns (delta, languages, groups that can be allocated)."""
    by_key: dict[str, dict[str, dict[str, float]]] = {}
    for key, entry in measurements["delta"].items():
        gkey, ty = key.rsplit("|", 1)
        by_key.setdefault(gkey, {})[ty] = entry
    languages = sorted(next(iter(measurements["delta"].values())))
    delta: dict[str, dict[str, float]] = {}
    usable = []
    for g in groups:
        measured = by_key.get(g.key)
        scale = 1.0
        if not measured and g.kind == "token_embd" and g.layers is None and by_key.get("output"):
            measured, scale = by_key["output"], TOKEN_EMBD_PROXY
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
    profile,
    header: GGUFHeader,
    measurements: dict,
    budget_bytes: int,
    ranges: int = 3,
    fixed_kinds: Sequence[str] = (),
):
    """Allocate this model's measured groups within budget_bytes; everything the measurements
    do not cover keeps the profile's own choice and counts as fixed. Returns (Allocation,
    groups allocated)."""
    import dataclasses

    from seachat.convert.quant.plan import plan_tensors

    static = dataclasses.replace(profile, allocate=None)
    n_layer = int(header.arch_key("block_count", 0) or 0) or None
    groups, fixed = make_groups(header, n_ranges=ranges, by_row=PLAN_LADDERS)
    delta, languages, usable = transfer_measurements(groups, measurements)
    usable = [g for g in usable if g.kind not in fixed_kinds]
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
    from seachat.convert.quant.plan import plan_tensors
    from seachat.convert.quant.profiles import load_profile

    if isinstance(spec_budget, float):
        return int(spec_budget * header.n_params / 8), f"{spec_budget} bpw"
    n_layer = int(header.arch_key("block_count", 0) or 0) or None
    plan = plan_tensors(
        load_profile(spec_budget), header.tensors, n_layer=n_layer, architecture=header.architecture
    )
    return plan.n_bytes, f"size of {spec_budget}"


def allocate_for_header(profile, header: GGUFHeader):  # -> Profile
    """The profile with its [allocate] section solved for this model: one rule per measured
    group (kind and depth range) chosen to minimise the worst language's predicted KLD within
    the budget, ahead of the profile's own rules (which still decide everything else)."""
    import dataclasses

    from seachat.convert.quant.profiles import LayerSelector, Rule

    spec = profile.allocate
    measurements = json.loads(spec.measurements.read_text(encoding="utf-8"))
    budget_bytes, budget_desc = budget_bytes_for(spec.budget, header)
    try:
        alloc, usable = solve_for_header(
            profile, header, measurements, budget_bytes, spec.ranges, spec.fixed
        )
    except UserError as exc:
        raise UserError(
            f"{profile.source or profile.name}: cannot fit {header.path} within the {budget_desc} ({exc})"
        ) from None
    rules = []
    output_type = profile.output_type
    token_embd_type = profile.token_embd_type
    why = f"allocated for this model: worst language within the {budget_desc}"
    for g in usable:
        ty = TYPES[alloc.choice[g.key]]
        if g.layers is None and g.kind == "output":
            output_type = ty
        elif g.layers is None and g.kind == "token_embd":
            token_embd_type = ty
        else:
            rules.append((g.kind, g.layers, ty))
    new_rules = [
        Rule(i + 1, ty, (kind,), None, LayerSelector.parse(layers) if layers else None, why)
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
