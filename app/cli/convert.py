"""`seachat convert SRC -o OUT.gguf`: the publisher's command."""

from __future__ import annotations

from pathlib import Path

import click

from seachat.app.cli.options import (
    calibration_option,
    eval_text_option,
    imatrix_option,
    llama_compute_options,
)
from seachat.convert.checkpoint.tensor_plan import OUTTYPES
from seachat.convert.units import human_bytes


@click.command()
@click.argument("src")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), help="Output GGUF file.")
@click.option(
    "--outtype",
    type=click.Choice(sorted(OUTTYPES)),
    default="f16",
    show_default=True,
    help="Tensor type for the weights (norms always stay f32).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the plan (tensors, types, size); write nothing."
)
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option(
    "--allow-tokenizer-mismatch",
    is_flag=True,
    help="Write the GGUF even when llama.cpp tokenizes the probe text differently.",
)
@click.option("--revision", help="Hub revision (branch, tag or commit) when SRC is a repo id.")
@click.option("--name", help="Model name to store in general.name.")
@click.option(
    "--verify-logits",
    is_flag=True,
    help="Also compare llama.cpp's logits with a transformers forward pass (needs seachat[verify]).",
)
@click.option(
    "--profile",
    "-p",
    help="Quantize with this profile (shipped name such as sea-q4, or a .toml file); "
    "--outtype is then the verified intermediate's type. See `seachat profiles`.",
)
@imatrix_option("With --profile: reuse this importance matrix (GGUF or legacy .dat).")
@calibration_option("With --profile: calibration text (folder of <language>.txt or one file).")
@eval_text_option("With --profile: evaluation text folder (default: the shipped held-out text).")
@click.option("--no-eval", is_flag=True, help="With --profile: skip the per-language evaluation.")
@llama_compute_options
def convert(
    src: str,
    out: Path | None,
    outtype: str,
    dry_run: bool,
    force: bool,
    allow_tokenizer_mismatch: bool,
    revision: str | None,
    name: str | None,
    verify_logits: bool,
    profile: str | None,
    imatrix: Path | None,
    calibration: Path | None,
    eval_text: Path | None,
    no_eval: bool,
    gpu_layers: int,
    threads: int | None,
) -> int:
    """Convert a Hugging Face checkpoint (local folder or Hub repo id) to GGUF.

    Every conversion is checked: the GGUF must tokenize a multilingual probe set (Thai, Khmer,
    Lao, Burmese, Arabic, … and edge cases) exactly like the original tokenizer.
    """
    from rich.console import Console

    from seachat.convert import pipeline

    console = Console(highlight=False)
    if out is None and not dry_run:
        raise click.UsageError("missing -o OUT.gguf (or use --dry-run)")
    quant = {
        "imatrix": imatrix,
        "calibration": calibration,
        "eval_text": eval_text,
        "evaluate": not no_eval,
        "threads": threads,
        "n_gpu_layers": gpu_layers,
    }
    _check_profile_options(profile, outtype, verify_logits, quant)
    prepared = pipeline.prepare(src, outtype, revision)
    plan = prepared.plan
    _print_summary(console, prepared)
    if dry_run:
        _print_plan(console, plan, outtype)
        prepared.checkpoint.close()
        return 0

    assert out is not None
    finalize = None
    if profile is not None:
        finalize = _quantizer(src, outtype.upper(), profile, force, quant)
    result = _convert_with_progress(
        console,
        pipeline,
        src,
        out,
        outtype,
        prepared,
        force,
        allow_tokenizer_mismatch,
        revision,
        name,
        finalize,
    )
    _print_parity(console, result.parity)
    if verify_logits:
        from seachat.convert.parity.logits import compare_logits

        report = compare_logits(prepared.source.model_dir, out)
        console.print(report.summary())
        if not report.ok:
            console.print("[red]logit parity below threshold[/]")
            return 1
    console.print(f"Wrote [bold]{out}[/] ({human_bytes(out.stat().st_size)})")
    return 0


def _print_summary(console, prepared) -> None:
    plan = prepared.plan
    console.print(
        f"[bold]{prepared.source.label}[/]: {plan.arch.arch_name}, {len(plan.tensors)} tensors, "
        f"{plan.n_params / 1e6:.1f}M parameters, vocabulary {len(prepared.vocab)} "
        f"({prepared.vocab.source})"
    )
    if plan.dropped:
        console.print(f"left out: the {plan.dropped} ({plan.n_dropped} tensors); text model only")


def _check_profile_options(
    profile: str | None, outtype: str, verify_logits: bool, quant: dict
) -> None:
    """Quantization options without --profile, or --profile with options it cannot honour,
    are usage errors; a bad profile is a UserError here, before any work."""
    paths_or_threads = ("imatrix", "calibration", "eval_text", "threads")
    given = any(quant[k] is not None for k in paths_or_threads)
    if profile is None and (given or not quant["evaluate"] or quant["n_gpu_layers"] != 0):
        raise click.UsageError(
            "--imatrix, --calibration, --eval-text, --no-eval, --threads and --gpu-layers need --profile"
        )
    if profile is None:
        return
    if outtype == "q8_0":
        raise click.UsageError("--profile quantizes from f32/f16/bf16; drop --outtype q8_0")
    if verify_logits:
        raise click.UsageError(
            "--verify-logits checks an unquantized conversion; run it without --profile"
        )
    from seachat.convert.quant.profiles import load_profile

    load_profile(profile)


def _print_plan(console, plan, outtype: str) -> None:
    """--dry-run: every tensor with its shape, type and size, and the total."""
    from rich.table import Table

    table = Table(title=f"Plan ({outtype})", show_lines=False)
    for col in ("tensor", "shape", "type", "size"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for t in plan.tensors:
        notes = []
        if t.permute_heads:
            notes.append("rope-permuted")
        if t.add_offset:
            notes.append(f"+{t.add_offset:g}")
        if t.source is not None and t.source.shape != t.shape:
            notes.append(f"trimmed from {t.source.shape[0]} rows")
        label = t.gguf_name + (f" ({', '.join(notes)})" if notes else "")
        table.add_row(label, "×".join(map(str, t.shape)), t.out_type.name, human_bytes(t.out_bytes))
    console.print(table)
    for skipped in plan.skipped:
        console.print(f"  not written: {skipped}")
    console.print(f"Output size: [bold]{human_bytes(plan.total_bytes)}[/] of tensor data")


def _quantizer(source: str, verified_type: str, profile: str, force: bool, quant: dict):
    """`finalize` for the pipeline: quantize the verified intermediate into OUT with the
    profile (imatrix, evaluation report beside OUT, summary in its metadata)."""

    def finalize(verified: Path, out: Path) -> None:
        from seachat.app.cli.quant import StatusLine
        from seachat.convert.quant.quantize import quantize_with_profile

        report = quantize_with_profile(
            verified,
            out,
            profile,
            progress=StatusLine(),
            overwrite=force,
            source_label=f"{source} (converted by seachat, {verified_type})",
            **quant,
        )
        if report.evaluation is not None:
            click.echo(report.evaluation.table())
        for line in report.summary_lines():
            click.echo(line)

    return finalize


def _convert_with_progress(
    console, pipeline, src, out, outtype, prepared, force, allow, revision, name, finalize
):
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("writing", total=prepared.plan.total_bytes)

        def after_bar(verified: Path, final: Path) -> None:
            bar.stop()  # the quantizer prints its own status lines
            finalize(verified, final)

        return pipeline.convert(
            src,
            out,
            outtype,
            force=force,
            allow_tokenizer_mismatch=allow,
            revision=revision,
            name=name,
            progress=lambda n: bar.advance(task, n),
            prepared=prepared,
            finalize=after_bar if finalize else None,
        )


def _print_parity(console, report) -> None:
    from rich.table import Table

    if report is None:
        return
    table = Table(title=f"Tokenizer parity vs {report.reference}")
    for col in ("language / case", "texts", "tokens/char", "text mode", "special mode"):
        table.add_column(col)
    for row in report.table():
        table.add_row(*row)
    console.print(table)
    if report.normalizer:
        console.print(
            f"note: the original tokenizer applies {report.normalizer} normalization, which "
            "llama.cpp does not; seachat applies it to input (GGUF key seachat.tokenizer.normalizer)"
        )
    for text, token_id in report.forced_control:
        console.print(
            f"note: llama.cpp always treats {text!r} (id {token_id}) as a control token; the "
            "original treats it as plain added text, so typed text containing it is not split "
            "into that token by llama.cpp"
        )
    if not report.ok:
        console.print(f"[yellow]{len(report.mismatches)} mismatching texts (written anyway)[/]")
