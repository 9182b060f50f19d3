"""The profile TOML `seachat tune` writes: rules by kind and depth fraction, so that it
applies to models of any depth, and the provenance in [tuned]."""

from __future__ import annotations

import datetime as _dt
import json

from seachat.convert.gguf_file.ggml_types import DEFAULT_FILE_TYPE, TYPES
from seachat.convert.quant.tune.allocate import Allocation
from seachat.convert.quant.tune.groups import Group, block_rules


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
    output_without_imatrix: tuple[str, ...] = (),
) -> str:
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
    if output_without_imatrix:  # as the output was measured (the base profile's setting)
        lines.append(f"output_without_imatrix = {json.dumps(list(output_without_imatrix))}")
    lines.append("imatrix = true")
    lines += _allocate_lines(allocate) + [""] + _calibration_lines(calibration)
    for kind, layers, ty in block_rules(groups, allocation.choice):
        lines += ["[[rules]]", f'kind = "{kind}"']
        if layers != "all":
            lines.append(f'layers = "{layers}"')
        lines += [f'type = "{ty}"', ""]
    lines.append("[tuned]")
    lines += [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in tuned.items()]
    return "\n".join(lines) + "\n"


def _allocate_lines(allocate: dict | None) -> list[str]:
    if not allocate:
        return []
    return [
        "",
        "[allocate]  # re-solved for every model: worst language first, never above the budget",
        f"budget = {json.dumps(allocate['budget'])}",
        f"measurements = {json.dumps(allocate['measurements'])}",
        f"ranges = {int(allocate.get('ranges', 3))}",
    ]


def _calibration_lines(calibration: dict | None) -> list[str]:
    if not calibration:
        return []
    lines = [
        "[calibration]",
        f"tokens = {int(calibration.get('tokens', 16384))}",
        f"chunk_size = {int(calibration.get('chunk_size', 512))}",
    ]
    if calibration.get("process_output"):
        lines.append("process_output = true")
    lines += ["", "[calibration.mix]"]
    lines += [f"{lang} = {float(w):g}" for lang, w in calibration["mix"].items()]
    return lines + [""]


def now_date() -> str:
    return _dt.date.today().isoformat()
