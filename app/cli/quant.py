"""`seachat quantize`, `profiles`, `eval`, `imatrix`, `tune`: the quantization commands.

Thin CLI over seachat.convert.{quantize, profiles, evaluate, imatrix, tune}; heavy imports
happen inside the commands so `seachat --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from seachat.app.cli.options import (
    calibration_option,
    eval_text_option,
    imatrix_option,
    llama_compute_options,
)


class StatusLine:
    """The progress callback of the model-running commands: `stage: done/total pct` on one
    line (app.text.progress.LiveLine: redrawn on a terminal, plain lines in a log)."""

    def __init__(self) -> None:
        from seachat.app.text.progress import LiveLine

        self.line = LiveLine(every=(0.2, 10.0))
        self.stage = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        finished = bool(total) and done >= total
        if stage == self.stage and not finished and not self.line.due():
            return
        self.stage = stage
        pct = f"{100 * done / total:5.1f}%" if total else ""
        self.line.show(f"{stage}: {done}/{total} {pct}")
        if finished:
            self.line.end()


@click.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--profile",
    "-p",
    default="sea-q4",
    show_default=True,
    help="Shipped profile name or a .toml file.",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Output GGUF."
)
@imatrix_option("Use this importance matrix (GGUF or legacy .dat).")
@calibration_option("Calibration text: a folder of <language>.txt or one file.")
@eval_text_option("Evaluation text folder (default: the shipped held-out text).")
@click.option(
    "--no-eval", is_flag=True, help="Skip the per-language evaluation and quality summary."
)
@click.option(
    "--eval-tokens", default=512, show_default=True, help="Tokens per language for the evaluation."
)
@click.option(
    "--save-imatrix",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the importance matrix used (GGUF format).",
)
@llama_compute_options
@click.option(
    "--dry-run", is_flag=True, help="Print the plan (type of every tensor, size) and stop."
)
@click.option("--show-plan", is_flag=True, help="Print the type of every tensor before quantizing.")
@click.option(
    "--allow-requantize", is_flag=True, help="Accept an already-quantized input (quality suffers)."
)
@click.option("--force", is_flag=True, help="Overwrite the output if it exists.")
def quantize(
    model: Path,
    profile: str,
    output: Path | None,
    imatrix: Path | None,
    calibration: Path | None,
    eval_text: Path | None,
    no_eval: bool,
    eval_tokens: int,
    save_imatrix: Path | None,
    gpu_layers: int,
    threads: int | None,
    dry_run: bool,
    show_plan: bool,
    allow_requantize: bool,
    force: bool,
) -> None:
    """Quantize an F16/BF16/F32 GGUF with a profile, and report quality per language."""
    from seachat.convert.errors import UserError
    from seachat.convert.quant.quantize import plan_profile, quantize_with_profile

    if not model.is_file():
        raise UserError(f"{model}: no such GGUF file")
    plan = plan_profile(model, profile)
    if dry_run or show_plan:
        _print_plan(plan, per_tensor=show_plan or dry_run)
    if dry_run:
        return
    if output is None:
        raise UserError(f"{model}: give the output file with -o OUT.gguf")
    report = quantize_with_profile(
        model,
        output,
        profile,
        imatrix=imatrix,
        calibration=calibration,
        eval_text=eval_text,
        threads=threads,
        progress=StatusLine(),
        evaluate=not no_eval,
        eval_max_tokens=eval_tokens,
        save_imatrix=save_imatrix,
        allow_requantize=allow_requantize,
        overwrite=force,
        n_gpu_layers=gpu_layers,
    )
    if report.evaluation is not None:
        click.echo(report.evaluation.table())
    for line in report.summary_lines():
        click.echo(line)


def _print_plan(plan, per_tensor: bool) -> None:
    from seachat.convert.units import human_bytes

    click.echo(
        f"profile {plan.profile} on {plan.architecture} ({plan.n_layer} blocks, {'tied' if plan.tied_embeddings else 'untied'} embeddings)"
    )
    click.echo(f"{'kind':<12} {'type':<14} {'layers':<16} {'n':>4} {'size':>10}  decided by")
    for kind, types, by, layers, n, nbytes in plan.summary_rows():
        click.echo(f"{kind:<12} {types:<14} {layers:<16} {n:>4} {human_bytes(nbytes):>10}  {by}")
    if per_tensor:
        click.echo("")
        for t in plan.tensors:
            if t.quantize:
                fb = f"  ({t.fallback})" if t.fallback else ""
                click.echo(f"  {t.name:<40} {t.source_type:>5} -> {t.final:<7} {t.decided_by}{fb}")
    click.echo(
        f"total: {human_bytes(plan.n_bytes)} of tensors, {plan.bits_per_weight:.3f} bits per weight, {len(plan.fallbacks)} fallback(s)"
    )
    for r in plan.unused_rules:
        click.echo(f"note: {r} matched no tensor")


@click.command()
@click.option(
    "--model",
    "-m",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also show each profile's size on this GGUF.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def profiles(model: Path | None, as_json: bool) -> None:
    """List the shipped quantization profiles with their bits per weight."""
    from seachat.convert.gguf_file.reader import read_gguf_header
    from seachat.convert.quant.profiles import DEFAULT_PROFILE, shipped_profiles
    from seachat.convert.quant.quantize import plan_for_header
    from seachat.convert.units import human_bytes

    header = read_gguf_header(model) if model else None
    rows = []
    for prof in shipped_profiles():
        row = {
            "name": prof.name,
            "target_bpw": prof.target_bpw,
            "imatrix": prof.imatrix,
            "stock": prof.stock,
            "summary": prof.summary,
            "tuned_on": prof.tuned.get("model"),
        }
        if header is not None:
            plan = plan_for_header(prof, header)
            row.update(
                {
                    "bpw": round(plan.bits_per_weight, 3),
                    "bytes": plan.n_bytes,
                    "fallbacks": len(plan.fallbacks),
                }
            )
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    click.echo(
        "bpw: bits per weight on the model each profile was tuned or checked on (Gemma 3 270M: 262k x 640 tied embedding)"
    )
    extra = f" {'bpw here':>8} {'size here':>10}" if header is not None else ""
    click.echo(f"{'profile':<10} {'bpw':>6} {'imatrix':>7}{extra}  summary")
    for r in rows:
        mark = "*" if r["name"] == DEFAULT_PROFILE else " "
        here = f" {r['bpw']:>8.3f} {human_bytes(r['bytes']):>10}" if header is not None else ""
        click.echo(
            f"{r['name'] + mark:<10} {r['target_bpw']:>6.2f} {'yes' if r['imatrix'] else 'no':>7}{here}  {r['summary']}"
        )
    click.echo(f"* default ({DEFAULT_PROFILE})")


@click.command()
@click.argument(
    "models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--ref",
    "reference",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The unquantized reference GGUF.",
)
@click.option(
    "--text",
    "text_dir",
    type=click.Path(exists=True),
    help="Folder of <language>.txt (default: shipped held-out text).",
)
@click.option("--languages", help="Comma-separated subset of the text folder's languages.")
@click.option("--max-tokens", default=1024, show_default=True, help="Tokens per language.")
@click.option(
    "--ctx", default=512, show_default=True, help="Tokens per evaluated chunk (BOS first)."
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False),
    help="Write the report(s) as JSON to this file ('-' for stdout).",
)
@click.option(
    "--beside",
    is_flag=True,
    help="Also write MODEL.gguf.eval.json beside each model (read by `seachat publish`).",
)
@llama_compute_options
def evaluate(
    models: tuple[Path, ...],
    reference: Path,
    text_dir: str | None,
    languages: str | None,
    max_tokens: int,
    ctx: int,
    json_out: str | None,
    beside: bool,
    gpu_layers: int,
    threads: int | None,
) -> None:
    """Per-language KL divergence, top-1 agreement and perplexity against a reference."""
    from seachat.convert.files import write_text_atomic
    from seachat.convert.quant.evaluate import evaluate_models, read_eval_texts
    from seachat.convert.quant.report import report_path

    langs = [x.strip() for x in languages.split(",")] if languages else None
    texts = read_eval_texts(text_dir, langs)
    progress = StatusLine()
    reports = evaluate_models(
        reference,
        list(models),
        texts,
        n_ctx=ctx,
        max_tokens=max_tokens,
        threads=threads,
        progress=lambda lang, d, t: progress(f"evaluate {lang}", d, t),
        n_gpu_layers=gpu_layers,
    )
    for r in reports:
        r.text = Path(text_dir).name if text_dir else "seachat held-out evaluation text"
        if beside:
            write_text_atomic(
                report_path(Path(r.model)),
                json.dumps(r.to_json(), indent=2, ensure_ascii=False) + "\n",
            )
    if json_out != "-":
        for r in reports:
            click.echo(f"\n{r.model} vs {r.reference}")
            click.echo(r.table())
    if json_out:
        data = [r.to_json() for r in reports]
        text = json.dumps(data[0] if len(data) == 1 else data, indent=2, ensure_ascii=False)
        if json_out == "-":
            click.echo(text)
        else:
            Path(json_out).write_text(text + "\n", encoding="utf-8")


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Importance matrix to write (GGUF).",
)
@calibration_option("Folder of <language>.txt or one file (default: shipped text).")
@click.option(
    "--profile",
    "-p",
    default="sea-q4",
    show_default=True,
    help="Profile whose calibration mix and size to use.",
)
@click.option("--tokens", type=int, help="Total calibration tokens (default: the profile's).")
@click.option("--chunk", type=int, help="Tokens per chunk (default: the profile's, 512).")
@click.option(
    "--plain",
    is_flag=True,
    help="Chunk one text file exactly as llama-imatrix does (no balancing).",
)
@click.option(
    "--process-output", is_flag=True, help="Also collect activations of the output projection."
)
@llama_compute_options
def imatrix(
    model: Path,
    output: Path,
    calibration: str | None,
    profile: str,
    tokens: int | None,
    chunk: int | None,
    plain: bool,
    process_output: bool,
    gpu_layers: int,
    threads: int | None,
) -> None:
    """Compute an importance matrix on token-balanced multilingual text."""
    from seachat.convert.errors import UserError
    from seachat.convert.llama.core import Model
    from seachat.convert.quant.calibration import build_calibration, read_text_sources
    from seachat.convert.quant.imatrix import compute_imatrix, llama_imatrix_chunks
    from seachat.convert.quant.imatrix_file import write_imatrix
    from seachat.convert.quant.profiles import load_profile

    progress = StatusLine()
    prof = load_profile(profile)
    cal = prof.calibration
    n_ctx = chunk or (cal.chunk_size if cal else 512)
    with Model(model, vocab_only=True) as vm:
        if plain:
            if not calibration or not Path(calibration).is_file():
                raise UserError("--plain needs --calibration FILE (one text file)")
            try:
                text = Path(calibration).read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise UserError(f"{calibration}: not UTF-8 text; save it as UTF-8") from None
            chunks = llama_imatrix_chunks(
                vm.tokenize(text, add_special=True), n_ctx, vm.bos, vm.add_bos
            )
            if not chunks:
                raise UserError(
                    f"{calibration}: fewer than {n_ctx} tokens; give more text or a smaller --chunk"
                )
            dataset = str(calibration)
            click.echo(f"{len(chunks)} chunks of {n_ctx} tokens (llama-imatrix chunking)", err=True)
        else:
            cset = build_calibration(
                vm,
                read_text_sources(calibration),
                mix=cal.mix if cal else None,
                total_tokens=tokens or (cal.tokens if cal else 16384),
                chunk_size=n_ctx,
                strict_mix=calibration is None,
            )
            chunks = cset.chunks
            dataset = cset.describe()
            click.echo(dataset, err=True)
            for note in cset.notes:
                click.echo(f"note: {note}", err=True)
    im = compute_imatrix(
        model,
        chunks,
        n_ctx=n_ctx,
        threads=threads,
        process_output=process_output or bool(cal and cal.process_output),
        datasets=[dataset],
        progress=lambda d, t: progress("imatrix", d, t),
        n_gpu_layers=gpu_layers,
    )
    write_imatrix(im, output)
    click.echo(
        f"{output}: {len(im.entries)} entries from {im.n_tokens} tokens in {im.chunk_count} chunks"
    )


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--budget",
    required=True,
    help="Bits per weight (e.g. 7.3), or a profile whose size on MODEL is the budget (e.g. q4_k_m).",
)
@click.option(
    "--text",
    "text_dir",
    required=True,
    type=click.Path(exists=True),
    help="Folder of <language>.txt to measure on.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Profile TOML to write (default: NAME.toml).",
)
@click.option(
    "--measurements",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Measurements JSON (cache; resumes; default: OUTPUT.json).",
)
@click.option("--name", default="tuned", show_default=True, help="Profile name.")
@click.option("--summary", default=None, help="One-line profile summary.")
@imatrix_option("Importance matrix to quantize with (default: computed).")
@calibration_option("Calibration text for the importance matrix.")
@click.option(
    "--base",
    default="sea-q4",
    show_default=True,
    help="Profile whose calibration mix the tuned profile inherits.",
)
@click.option("--languages", help="Comma-separated subset of the text folder's languages.")
@click.option("--ranges", default=3, show_default=True, help="Depth ranges per tensor kind.")
@click.option(
    "--token-embd-type", help="Type for an untied model's input embedding (not measured by tune)."
)
@click.option(
    "--tokens", default=192, show_default=True, help="Tokens per language per measurement."
)
@click.option(
    "--batch", default=4, show_default=True, help="Probes evaluated against one reference pass."
)
@llama_compute_options
def tune(**options: Any) -> None:
    """Measure per-language sensitivity of tensor groups and write a profile that protects
    the worst language within a size budget."""
    from seachat.convert.quant.tune.command import TuneOptions, run_tune

    result = run_tune(TuneOptions(**options), StatusLine(), lambda line: click.echo(line, err=True))
    worst_lang, worst = result.allocation.worst
    click.echo(result.toml_text)
    click.echo(
        f"wrote {result.output} and {result.measurements}; predicted worst language {worst_lang} KLD {worst:.4f}, {result.bits_per_weight:.3f} bpw",
        err=True,
    )
