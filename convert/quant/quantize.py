"""Quantize an F32/F16/BF16 GGUF with a profile: plan, importance matrix, llama.cpp's
quantizer, per-language evaluation, metadata — the one entry point `seachat quantize` and
`seachat convert --profile` share.

    quantize_with_profile(src_gguf, out_gguf, "sea-q4")

1. The profile is validated and planned against the source's tensors (UserError before
   any work when something is wrong).
2. When the profile wants an importance matrix (or one is asked for with `calibration`), it
   is read from `imatrix` or computed on token-balanced calibration text — the shipped text
   unless `calibration` names other text.
3. llama.cpp quantizes with the plan's exact per-tensor types; the written types are checked
   against the plan.
4. The result is evaluated per language against the source (shipped held-out text unless
   `eval_text` names other text), the summary goes into the GGUF metadata
   (seachat.quant.profile, seachat.quant.quality_summary) and the full report beside it
   (OUT.gguf.eval.json).
Everything is written to temporary files beside OUT and renamed at the end: an error or
Ctrl-C leaves no half-written output.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from seachat.convert.errors import UserError
from seachat.convert.files import temp_beside, write_text_atomic
from seachat.convert.gguf_file.ggml_types import TYPES
from seachat.convert.gguf_file.keys import (
    CALIBRATION_KEY,
    OVERRIDE_STRING_BYTES,
    PROFILE_KEY,
    QUALITY_KEY,
)
from seachat.convert.gguf_file.kv_edit import set_metadata
from seachat.convert.gguf_file.reader import GGUFFormatError, GGUFHeader, read_gguf_header
from seachat.convert.quant.imatrix import Imatrix
from seachat.convert.quant.plan import QuantPlan, check_written, plan_tensors
from seachat.convert.quant.profiles import Profile, load_profile
from seachat.convert.quant.report import EvalReport, report_path
from seachat.convert.quant.tune.per_model import allocate_for_header
from seachat.convert.units import human_bytes

DEFAULT_EVAL_TOKENS = 512  # per language; the shipped held-out text is about this long

# progress(stage, done, total): stage is "imatrix", "quantize", "evaluate" or "write"
Progress = Callable[[str, int, int], None]

_SOURCE_TYPES = {"f32", "f16", "bf16"}


@dataclass
class ImatrixInfo:
    source: str  # a file path, or "computed"
    entries: int
    tokens: int
    chunks: int
    per_language: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    chunk_size: int = 0
    text: str = ""  # where the calibration text came from
    datasets: list[str] = field(default_factory=list)  # an imatrix file's own record

    @property
    def label(self) -> str:
        """Short enough for llama.cpp's `quantize.imatrix.dataset` (its 128-byte buffer)."""
        if self.source == "computed":
            return f"seachat token-balanced, {len(self.per_language)} languages"
        named = self.datasets[0] if self.datasets else Path(self.source).name
        if len(named.encode()) <= OVERRIDE_STRING_BYTES:
            return named
        return f"{Path(self.source).name[:80]} (full record: {CALIBRATION_KEY})"

    def record(self) -> dict:
        """The whole calibration description, for seachat's own metadata key."""
        method = "seachat token-balanced" if self.source == "computed" else "imatrix file"
        return {
            "method": method,
            "source": self.source,
            "text": self.text,
            "datasets": self.datasets,
            "chunk_size": self.chunk_size,
            "chunks": self.chunks,
            "tokens": self.tokens,
            "languages": self.per_language,
            "notes": self.notes,
        }

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "entries": self.entries,
            "tokens": self.tokens,
            "chunks": self.chunks,
            "per_language_tokens": self.per_language,
            "notes": self.notes,
        }


@dataclass
class QuantizeReport:
    profile: str
    source: Path
    output: Path
    plan: QuantPlan
    file_size: int
    imatrix: ImatrixInfo | None = None
    evaluation: EvalReport | None = None
    eval_json: Path | None = None
    quality_summary: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def bits_per_weight(self) -> float:
        return self.plan.bits_per_weight

    def summary_lines(self) -> list[str]:
        lines = [
            f"{self.output}: profile {self.profile}, {human_bytes(self.file_size)}, {self.bits_per_weight:.3f} bits per weight",
        ]
        if self.plan.fallbacks:
            lines.append(
                f"  {len(self.plan.fallbacks)} tensor(s) took a fallback type (rows not a multiple of the block); see the plan"
            )
        if self.imatrix:
            lines.append(
                f"  importance matrix: {self.imatrix.source} ({self.imatrix.entries} entries, {self.imatrix.tokens} tokens)"
            )
        if self.quality_summary:
            lines.append(f"  {self.quality_summary}")
        if self.eval_json:
            lines.append(f"  per-language report: {self.eval_json}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return lines


def plan_for_header(profile: Profile, header: GGUFHeader) -> QuantPlan:
    """The plan a profile gives on this model; an [allocate] profile is first re-solved for
    it (seachat.convert.quant.tune.per_model), so its rules are this model's."""
    if profile.allocate is not None:
        profile = allocate_for_header(profile, header)
    n_layer = header.arch_key("block_count")
    return plan_tensors(
        profile,
        header.tensors,
        n_layer=int(n_layer) if n_layer else None,
        architecture=header.architecture,
        source=str(header.path),
    )


def plan_profile(src_gguf: str | Path, profile: str | Path | Profile) -> QuantPlan:
    """The plan alone (for --dry-run): validated profile, every tensor's type, sizes."""
    prof = load_profile(profile)
    return plan_for_header(prof, _header(Path(src_gguf)))


def _header(path: Path):
    try:
        return read_gguf_header(path)
    except GGUFFormatError as exc:
        raise UserError(f"{exc}; give an F16/BF16/F32 GGUF") from None


def obtain_imatrix(
    src_gguf: Path,
    profile: Profile,
    *,
    imatrix: Path | None,
    calibration: Path | None,
    threads: int | None,
    progress: Progress | None,
    n_gpu_layers: int = 0,
) -> tuple[Imatrix, ImatrixInfo]:
    """Read the given imatrix, or compute one on token-balanced calibration text."""
    from seachat.convert.llama.core import Model
    from seachat.convert.quant.calibration import build_calibration, read_text_sources
    from seachat.convert.quant.imatrix import compute_imatrix
    from seachat.convert.quant.imatrix_file import read_imatrix

    if imatrix is not None:
        im = read_imatrix(imatrix)
        return im, ImatrixInfo(
            str(imatrix),
            len(im.entries),
            im.n_tokens,
            im.chunk_count,
            chunk_size=im.chunk_size,
            datasets=list(im.datasets),
        )
    cal = profile.calibration
    texts = read_text_sources(calibration)
    with Model(src_gguf, vocab_only=True) as vocab_model:
        cset = build_calibration(
            vocab_model,
            texts,
            mix=cal.mix if cal else None,
            total_tokens=cal.tokens if cal else 16384,
            chunk_size=cal.chunk_size if cal else 512,
            strict_mix=calibration is None,
        )
    chunk_size = cal.chunk_size if cal else 512
    im = compute_imatrix(
        src_gguf,
        cset.chunks,
        n_ctx=chunk_size,
        threads=threads,
        process_output=cal.process_output if cal else False,
        datasets=[cset.describe()],
        progress=(lambda d, t: progress("imatrix", d, t)) if progress else None,
        n_gpu_layers=n_gpu_layers,
    )
    info = ImatrixInfo(
        "computed",
        len(im.entries),
        cset.n_tokens,
        len(cset.chunks),
        dict(cset.tokens),
        list(cset.notes),
        chunk_size=chunk_size,
        text=str(calibration) if calibration else "seachat's bundled calibration text",
    )
    return im, info


def quantize_with_profile(
    src_gguf: Path,
    out_gguf: Path,
    profile: str | Path | Profile,
    *,
    imatrix: Path | None = None,
    calibration: Path | None = None,
    eval_text: Path | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    evaluate: bool = True,
    eval_max_tokens: int = DEFAULT_EVAL_TOKENS,
    save_imatrix: Path | None = None,
    allow_requantize: bool = False,
    overwrite: bool = False,
    n_gpu_layers: int = 0,
    source_label: str | None = None,
) -> QuantizeReport:
    """Quantize src_gguf (F32/F16/BF16) into out_gguf with a profile (shipped name or TOML
    path). See the module docstring for the steps. Returns a QuantizeReport; raises
    UserError (one line, naming the file and the fix) on bad input. `source_label` names
    the source in the report when src_gguf is a temporary file (`convert --profile`)."""
    t_start = time.monotonic()
    src, out = Path(src_gguf), Path(out_gguf)
    prof = load_profile(profile)
    plan = _validate(src, out, prof, overwrite, allow_requantize, (imatrix, calibration, eval_text))
    texts = None
    if evaluate:
        from seachat.convert.quant.evaluate import read_eval_texts

        texts = read_eval_texts(eval_text)
    job = _Job(src, out, prof, plan, threads, progress, n_gpu_layers)
    if prof.imatrix or imatrix is not None or calibration is not None or _needs_imatrix(plan):
        job.timed("imatrix", _imatrix_stage, imatrix, calibration, save_imatrix)
    job.quantize_and_evaluate(texts, eval_text, eval_max_tokens, allow_requantize, source_label)
    report = job.report()
    if job.evaluation is not None:
        report.eval_json = _write_eval_json(job, report.file_size, source_label or str(src))
    job.seconds["total"] = time.monotonic() - t_start
    if progress:
        progress("write", 1, 1)
    return report


def _validate(
    src: Path,
    out: Path,
    prof: Profile,
    overwrite: bool,
    allow_requantize: bool,
    inputs: tuple[Path | None, ...],
) -> QuantPlan:
    """Everything that can be wrong before any work starts; the plan when nothing is."""
    if not src.is_file():
        raise UserError(f"{src}: no such GGUF file")
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists; remove it or choose another output path")
    if out.exists() and out.resolve() == src.resolve():
        raise UserError(f"{out}: output and input are the same file; choose another output path")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: output folder does not exist")
    plan = plan_for_header(prof, _header(src))
    requant = sorted(
        {t.source_type for t in plan.tensors if t.quantize and t.source_type not in _SOURCE_TYPES}
    )
    if requant and not allow_requantize:
        raise UserError(
            f"{src}: holds already-quantized tensors ({', '.join(requant)}); quantize from an F16/BF16/F32 GGUF "
            "(seachat convert --outtype f16), or pass --allow-requantize and accept the extra loss"
        )
    for path in inputs:
        if path is not None and not Path(path).exists():
            raise UserError(f"{path}: no such file or directory")
    return plan


def _needs_imatrix(plan: QuantPlan) -> bool:
    """A planned type llama.cpp refuses to produce without an importance matrix."""
    return any(TYPES[t.final].needs_imatrix for t in plan.tensors if t.quantize)


@dataclass
class _Job:
    """One quantization's state as it passes through the stages: what each stage produced,
    the stage timings, and the temporary files beside OUT that an error must remove."""

    src: Path
    out: Path
    prof: Profile
    plan: QuantPlan
    threads: int | None
    progress: Progress | None
    n_gpu_layers: int
    im: Imatrix | None = None
    im_info: ImatrixInfo | None = None
    evaluation: EvalReport | None = None
    summary: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    # Metadata too long for llama.cpp's override buffer, written after quantizing.
    late_kv: dict[str, str] = field(default_factory=dict)

    def final_metadata(self) -> dict[str, str]:
        """What the last rewrite of the header adds: quality summary and long strings."""
        values = dict(self.late_kv)
        if self.summary is not None:
            values[QUALITY_KEY] = self.summary
        return values

    def timed(self, stage: str, fn: Callable[..., None], *args: object) -> None:
        t0 = time.monotonic()
        fn(self, *args)
        self.seconds[stage] = time.monotonic() - t0

    def quantize_and_evaluate(
        self,
        texts: dict[str, str] | None,
        eval_text: Path | None,
        eval_max_tokens: int,
        allow_requantize: bool,
        source_label: str | None,
    ) -> None:
        """Quantize into a temporary file, evaluate it and write the summary into its
        metadata (a second temporary file), then rename onto OUT; on any error or Ctrl-C
        the temporary files go."""
        tmp_q = temp_beside(self.out, "quant")
        tmp_final: Path | None = None
        try:
            self.timed("quantize", _quantize_stage, tmp_q, allow_requantize)
            if texts is not None:
                self.timed(
                    "evaluate",
                    _evaluate_stage,
                    tmp_q,
                    texts,
                    eval_text,
                    eval_max_tokens,
                    source_label,
                )
            if final := self.final_metadata():
                if self.progress:
                    self.progress("write", 0, 1)
                tmp_final = temp_beside(self.out, "final")
                set_metadata(tmp_q, tmp_final, final)
                tmp_q.unlink(missing_ok=True)
                tmp_q = tmp_final
            os.replace(tmp_q, self.out)
            tmp_final = None
        except BaseException:
            tmp_q.unlink(missing_ok=True)
            if tmp_final is not None:
                tmp_final.unlink(missing_ok=True)
            raise

    def report(self) -> QuantizeReport:
        notes = []
        if self.plan.unused_rules:
            notes.append(
                f"profile rules that matched no tensor: {'; '.join(self.plan.unused_rules)}"
            )
        return QuantizeReport(
            profile=self.prof.name,
            source=self.src,
            output=self.out,
            plan=self.plan,
            file_size=self.out.stat().st_size,
            imatrix=self.im_info,
            evaluation=self.evaluation,
            quality_summary=self.summary,
            seconds=self.seconds,
            notes=notes,
        )


def _imatrix_stage(
    job: _Job, imatrix: Path | None, calibration: Path | None, save_imatrix: Path | None
) -> None:
    """Read or compute the importance matrix, check it was made for this model, note the
    weights it does not cover, and save it when asked."""
    im, info = obtain_imatrix(
        job.src,
        job.prof,
        imatrix=imatrix,
        calibration=calibration,
        threads=job.threads,
        progress=job.progress,
        n_gpu_layers=job.n_gpu_layers,
    )
    shapes = {t.name: t.shape for t in job.plan.tensors}
    for name, entry in im.entries.items():
        shape = shapes.get(name)
        if shape is None:
            continue
        n_mat = shape[2] if len(shape) > 2 else 1
        if entry.sums.size != shape[0] * n_mat:
            raise UserError(
                f"{imatrix or 'importance matrix'}: {name} has {entry.sums.size} values but the model's tensor has "
                f"{shape[0] * n_mat} columns; the matrix was made for another model, compute one for this model"
            )
    planned = {
        t.name for t in job.plan.tensors if t.quantize and t.kind not in ("token_embd", "output")
    }
    missing = sorted(planned - set(im.entries))
    if missing:
        info.notes.append(
            f"{len(missing)} weight(s) without importance data (quantized without it): {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}"
        )
    if save_imatrix is not None:
        from seachat.convert.quant.imatrix_file import write_imatrix

        write_imatrix(im, save_imatrix)
    job.im, job.im_info = im, info


def _imatrix_kv(im: Imatrix, info: ImatrixInfo) -> dict[str, str | int]:
    """The quantize.imatrix.* keys llama-quantize itself records when given a matrix, plus
    seachat's whole calibration record."""
    kv: dict[str, str | int] = {
        "quantize.imatrix.file": info.source if info.source != "computed" else "seachat (computed)",
        "quantize.imatrix.dataset": info.label,
        CALIBRATION_KEY: json.dumps(info.record(), ensure_ascii=False),
    }
    kv["quantize.imatrix.entries_count"] = len(im.entries)
    if im.chunk_count > 0:
        kv["quantize.imatrix.chunks_count"] = im.chunk_count
    return kv


def _imatrix_means(job: _Job) -> dict | None:
    """The importance matrix llama.cpp is given: without the output projection's entry at the
    types the profile quantizes it better without one (said in the calibration record)."""
    if job.im is None:
        return None
    means = job.im.means()
    dropped = [
        t
        for t in job.plan.tensors
        if t.quantize
        and t.kind in ("output", "token_embd")
        and t.final in job.prof.output_without_imatrix
        and t.name in means
    ]
    for t in dropped:
        del means[t.name]
        if job.im_info is not None:
            job.im_info.notes.append(
                f"{t.name} quantized to {t.final} without its importance data (profile: output_without_imatrix)"
            )
    return means


def _quantize_stage(job: _Job, tmp_q: Path, allow_requantize: bool) -> None:
    """llama.cpp writes tmp_q with the plan's exact types; the written types are checked."""
    from seachat.convert.llama.quantizer import run_llama_quantize

    kv: dict[str, str | int] = {PROFILE_KEY: job.prof.name}
    means = _imatrix_means(job)
    if job.im is not None and job.im_info is not None:
        kv.update(_imatrix_kv(job.im, job.im_info))
    n_tensors = len(job.plan.tensors)
    progress = job.progress
    if progress:
        progress("quantize", 0, n_tensors)
    counter = {"n": 0}

    def echo(line: str) -> None:
        if progress and line.startswith("[") and "/" in line[:12]:
            counter["n"] += 1
            progress("quantize", counter["n"], n_tensors)

    fits, job.late_kv = _split_for_override(kv)
    run_llama_quantize(
        job.src,
        tmp_q,
        ftype=job.prof.file_type_id,
        overrides=job.plan.overrides(),
        imatrix=means,
        kv=fits,
        threads=job.threads,
        allow_requantize=allow_requantize,
        echo=echo,
    )
    check_written(job.plan, _header(tmp_q))


def _evaluate_stage(
    job: _Job,
    tmp_q: Path,
    texts: dict[str, str],
    eval_text: Path | None,
    eval_max_tokens: int,
    source_label: str | None,
) -> None:
    """Per-language evaluation of tmp_q against the source, labelled with the names the
    report will carry (OUT, not the temporary file)."""
    from seachat.convert.quant.evaluate import evaluate_models

    progress = job.progress
    evaluation = evaluate_models(
        job.src,
        [tmp_q],
        texts,
        max_tokens=eval_max_tokens,
        threads=job.threads,
        progress=(lambda lang, d, t: progress("evaluate", d, t)) if progress else None,
        n_gpu_layers=job.n_gpu_layers,
    )[0]
    src_type = sorted({t.source_type for t in job.plan.tensors if t.quantize})
    evaluation.settings["reference_type"] = "/".join(src_type).upper() or "reference"
    evaluation.model = str(job.out)
    evaluation.reference = source_label or str(job.src)
    evaluation.text = Path(eval_text).name if eval_text else "seachat held-out evaluation text"
    job.evaluation = evaluation
    job.summary = f"{job.prof.name}: {evaluation.summary_line()}"


def _split_for_override(kv: dict[str, str | int]) -> tuple[dict[str, str | int], dict[str, str]]:
    """(what llama.cpp's override buffer carries whole, the strings that are too long for it)."""
    long = {
        k: v
        for k, v in kv.items()
        if isinstance(v, str) and len(v.encode()) > OVERRIDE_STRING_BYTES
    }
    return {k: v for k, v in kv.items() if k not in long}, long


def _write_eval_json(job: _Job, file_size: int, source: str) -> Path:
    """OUT.gguf.eval.json: the evaluation report, with what was quantized and how."""
    assert job.evaluation is not None
    path = report_path(job.out)
    data = job.evaluation.to_json()
    data.update(
        {
            "profile": job.prof.name,
            "profile_summary": job.prof.summary,
            "source": source,
            "file_size": file_size,
            "bits_per_weight": round(job.plan.bits_per_weight, 4),
            "type_counts": job.plan.type_counts(),
            "fallbacks": {t.name: t.fallback for t in job.plan.fallbacks},
            "imatrix": job.im_info.to_json() if job.im_info else None,
        }
    )
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path
