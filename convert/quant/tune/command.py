"""The whole `seachat tune` run: budget, importance matrix, measurement, allocation, and the
profile and measurements written. The CLI only parses options and prints; everything here is
what `seachat tune` means, so it can be run and tested without click.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from seachat.convert.errors import UserError
from seachat.convert.files import write_text_atomic
from seachat.convert.gguf_file.ggml_types import lookup
from seachat.convert.gguf_file.reader import GGUFHeader, read_gguf_header
from seachat.convert.quant.evaluate import read_eval_texts
from seachat.convert.quant.imatrix import Imatrix
from seachat.convert.quant.profiles import Profile, load_profile, profile_from_text
from seachat.convert.quant.quantize import ImatrixInfo, obtain_imatrix, plan_for_header
from seachat.convert.quant.tune.allocate import Allocation
from seachat.convert.quant.tune.groups import Group, make_groups
from seachat.convert.quant.tune.measure import Progress, measure, write_measurements
from seachat.convert.quant.tune.per_model import solve_for_header
from seachat.convert.quant.tune.profile_toml import now_date, profile_toml


@dataclass(frozen=True)
class TuneOptions:
    """What `seachat tune` is asked, one field per command-line option."""

    model: Path
    budget: str  # bits per weight ("7.3"), or a profile whose size on MODEL is the budget
    text_dir: str  # folder of <language>.txt to measure on
    output: Path | None = None  # profile TOML (default: NAME.toml)
    measurements: Path | None = None  # cache JSON (default: OUTPUT.json)
    name: str = "tuned"
    summary: str | None = None
    imatrix: Path | None = None
    calibration: Path | None = None
    base: str = "sea-q4"  # profile whose calibration mix the tuned profile inherits
    languages: str | None = None  # comma-separated subset of the text folder's languages
    ranges: int = 3
    token_embd_type: str | None = None
    tokens: int = 192
    batch: int = 4
    gpu_layers: int = 0
    threads: int | None = None


@dataclass(frozen=True)
class Budget:
    n_bytes: int
    description: str
    spec: str | float  # what [allocate] records: bits per weight, or the profile's name
    file_type: str | None = None  # a budget profile's llama.cpp file type: same size, same label


@dataclass(frozen=True)
class TuneResult:
    output: Path
    measurements: Path
    toml_text: str
    allocation: Allocation
    n_params: int

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.allocation.n_bytes / self.n_params


def parse_budget(text: str, header: GGUFHeader) -> Budget:
    """`--budget`: bits per weight, or a profile whose size on this model is the budget."""
    try:
        bpw = float(text)
    except ValueError:
        prof = load_profile(text)
        plan = plan_for_header(prof, header)
        return Budget(
            plan.n_bytes,
            f"size of {text} on this model ({plan.bits_per_weight:.3f} bpw)",
            text,
            prof.file_type.removeprefix("MOSTLY_"),
        )
    return Budget(int(bpw * header.n_params / 8), f"{bpw} bits per weight", bpw)


def run_tune(opts: TuneOptions, progress: Progress, note: Callable[[str], None]) -> TuneResult:
    """Measure every group's per-language sensitivity on MODEL, allocate the budget to the
    worst language, and write the profile (checked to load) and the measurements behind it."""
    header = read_gguf_header(opts.model)
    budget = parse_budget(opts.budget, header)
    langs = [x.strip() for x in opts.languages.split(",")] if opts.languages else None
    texts = read_eval_texts(opts.text_dir, langs)
    base_prof = load_profile(opts.base)
    output = opts.output or Path(f"{opts.name}.toml")
    measurements = opts.measurements or output.with_suffix(".json")
    im, im_info = obtain_imatrix(
        opts.model,
        base_prof,
        imatrix=opts.imatrix,
        calibration=opts.calibration,
        threads=opts.threads,
        progress=progress,
        n_gpu_layers=opts.gpu_layers,
    )
    measured_groups, _ = make_groups(header, n_ranges=opts.ranges)
    note(
        f"{len(measured_groups)} groups, {sum(len(g.ladder) - 1 for g in measured_groups)} probes; budget {budget.description} = {budget.n_bytes} bytes"
    )
    data = measure(
        opts.model,
        measured_groups,
        texts,
        imatrix_means=im.means(),
        imatrix_id=_imatrix_id(im, im_info),
        cache=measurements,
        tokens=opts.tokens,
        batch=opts.batch,
        threads=opts.threads,
        progress=progress,
        n_gpu_layers=opts.gpu_layers,
        output_without_imatrix=base_prof.output_without_imatrix,
    )
    data["groups"] = [g.to_json() for g in measured_groups]
    # the same solver `quantize` runs for [allocate] profiles, so on this model the written
    # rules and the re-solved ones are identical
    static = dataclasses.replace(
        base_prof,
        rules=(),
        output_type=None,
        token_embd_type=lookup(opts.token_embd_type) if opts.token_embd_type else None,
        default_type=lookup("q8_0"),
        allocate=None,
    )
    alloc, groups = solve_for_header(static, header, [data], budget.n_bytes, opts.ranges)
    tuned = _provenance(opts, header, budget, texts, im, im_info, alloc, measurements)
    toml_text = _write_profile(
        opts, output, measurements, base_prof, budget, groups, alloc, tuned, header.n_params
    )
    data.setdefault("allocations", {})[opts.name] = {
        "budget_bytes": budget.n_bytes,
        "budget": budget.description,
        "bytes": alloc.n_bytes,
        "bits_per_weight": 8.0 * alloc.n_bytes / header.n_params,
        "choice": alloc.choice,
        "predicted_kld": alloc.predicted,
    }
    write_measurements(measurements, data)
    if alloc.n_bytes > budget.n_bytes:  # pragma: no cover - the allocator never exceeds it
        raise UserError("internal error: allocation exceeds the budget")
    return TuneResult(output, measurements, toml_text, alloc, header.n_params)


def _imatrix_id(im: Imatrix, info: ImatrixInfo) -> str:
    """Identifies the importance matrix in the measurement cache: another matrix means other
    probes, so cached measurements made with it must not be reused."""
    total = sum(float(e.sums.sum()) for e in im.entries.values())
    return f"{info.source}:{im.n_tokens}:{len(im.entries)}:{total:.6e}"


def _provenance(
    opts: TuneOptions,
    header: GGUFHeader,
    budget: Budget,
    texts: dict[str, str],
    im: Imatrix,
    im_info: ImatrixInfo,
    alloc: Allocation,
    measurements: Path,
) -> dict:
    """The profile's [tuned] table: what it was tuned on, and what it predicts."""
    worst_lang, worst = alloc.worst
    return {
        "model": f"{opts.model.name} ({header.get('general.name', '?')})",
        "text": f"{Path(opts.text_dir).name}: {', '.join(sorted(texts))}; {opts.tokens} tokens per language",
        "date": now_date(),
        "budget": budget.description,
        "imatrix": im_info.source
        if im_info.source != "computed"
        else f"computed on {opts.base} calibration mix ({im.n_tokens} tokens)",
        "measurements": measurements.name,
        "predicted_worst": f"{worst_lang} {worst:.4f}",
    }


def _write_profile(
    opts: TuneOptions,
    output: Path,
    measurements: Path,
    base_prof: Profile,
    budget: Budget,
    groups: list[Group],
    alloc: Allocation,
    tuned: dict,
    n_params: int,
) -> str:
    """Write the profile TOML, after checking that it loads as a profile."""
    cal = base_prof.calibration
    toml_text = profile_toml(
        name=opts.name,
        summary=opts.summary or f"Tuned for the worst language within {budget.description}.",
        groups=groups,
        allocation=alloc,
        n_params=n_params,
        calibration=dataclasses.asdict(cal) if cal else None,
        tuned=tuned,
        file_type=budget.file_type,
        allocate={
            "budget": budget.spec,
            "measurements": _relative(measurements, output.parent),
            "ranges": opts.ranges,
        },
        token_embd_type=opts.token_embd_type,
        output_without_imatrix=base_prof.output_without_imatrix,
    )
    profile_from_text(toml_text, str(output))  # what we write must load
    write_text_atomic(output, toml_text)
    return toml_text


def _relative(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), base.resolve())
    except ValueError:  # pragma: no cover - another drive on Windows
        return str(path.resolve())
