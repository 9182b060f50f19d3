"""`seachat convert`: checkpoint → plan → GGUF (temp file) → tokenizer parity → rename.

Every step that can reject the input (config, architecture, tokenizer, tensor headers and
shapes, output path) runs before any tensor byte is written; the parity check runs on the
written file, and only a file that passes is renamed to the requested output name.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from seachat.convert.checkpoint.architectures import ArchSpec, find_architecture
from seachat.convert.checkpoint.safetensors import SafetensorsCheckpoint
from seachat.convert.checkpoint.source import Source, resolve_source
from seachat.convert.checkpoint.tensor_plan import FILE_TYPES, OUTTYPES, ConversionPlan, build_plan
from seachat.convert.errors import UserError
from seachat.convert.gguf_file.keys import DROPPED_KEY, NORMALIZER_KEY
from seachat.convert.gguf_file.writer import ProgressFn, write_gguf
from seachat.convert.llama.core import Model
from seachat.convert.parity.probe_text import ALL_PROBES
from seachat.convert.parity.reference_worker import ReferenceJob
from seachat.convert.parity.tokens import (
    ParityReport,
    ReferenceSpec,
    byte_fallback_explains,
    compare,
    reference_ids,
)
from seachat.convert.tokenizer.vocab import Vocab, load_vocab


@dataclass
class Prepared:
    source: Source
    config: dict[str, Any]
    arch: ArchSpec
    vocab: Vocab
    checkpoint: SafetensorsCheckpoint
    plan: ConversionPlan


@dataclass
class ConvertResult:
    prepared: Prepared
    out_path: Path | None
    parity: ParityReport | None


def read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not path.is_file():
        raise UserError(
            f"{path}: missing; a Hugging Face checkpoint folder needs config.json beside its "
            "safetensors files"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); re-download it") from exc
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a JSON object")
    return config


def prepare(src: str, outtype: str, revision: str | None = None) -> Prepared:
    if outtype not in OUTTYPES:
        raise UserError(f"unknown --outtype {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    source = resolve_source(src, revision)
    config = read_config(source.model_dir)
    arch = find_architecture(config, str(source.model_dir / "config.json"))
    config = arch.text_config(config)
    vocab = load_vocab(source.model_dir, config, pad=not arch.trim_embedding_to_vocab)
    checkpoint = SafetensorsCheckpoint(source.model_dir)
    try:
        plan = build_plan(
            checkpoint, arch, config, outtype, len(vocab), str(source.model_dir / "config.json")
        )
    except BaseException:
        checkpoint.close()
        raise
    return Prepared(source, config, arch, vocab, checkpoint, plan)


def metadata_writer(prepared: Prepared, name: str | None) -> Callable[[gguf.GGUFWriter], None]:
    plan, source = prepared.plan, prepared.source

    def add(writer: gguf.GGUFWriter) -> None:
        meta = gguf.Metadata.load(None, source.model_dir, name, plan.n_params)
        if meta.name is None:
            meta.name = source.repo_id.split("/")[-1] if source.repo_id else source.model_dir.name
        if meta.size_label is None:
            meta.size_label = gguf.size_label(plan.n_params, 0, 0, 0)
        if source.repo_id and meta.source_repo_url is None:
            meta.source_repo_url = f"https://huggingface.co/{source.repo_id}"
        meta.set_gguf_meta_model(writer)
        for key, (value, vtype) in plan.hparams_kv.items():
            writer.add_key_value(key, value, vtype)
        writer.add_file_type(FILE_TYPES[plan.outtype])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        prepared.vocab.add_to_writer(writer)
        if prepared.vocab.normalizer:
            writer.add_string(NORMALIZER_KEY, prepared.vocab.normalizer)
        if plan.dropped:
            writer.add_string(DROPPED_KEY, plan.dropped)

    return add


def check_output_path(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise UserError(f"{out}: already exists; pass --force to overwrite or choose another -o")
    if out.exists() and out.is_dir():
        raise UserError(f"{out}: is a folder; -o takes a file name such as model-f16.gguf")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: output folder does not exist; create it first")
    if not os.access(out.parent, os.W_OK):
        raise UserError(f"{out.parent}: output folder is not writable")


def reference_spec(prepared: Prepared) -> ReferenceSpec:
    return ReferenceSpec.from_vocab(prepared.source.model_dir, prepared.vocab)


def tokenizer_parity(
    prepared: Prepared,
    gguf_path: Path,
    labelled_texts: list[tuple[str, str]] | None = None,
    reference: list[tuple[list[int], list[int]]] | None = None,
) -> ParityReport:
    """Token IDs of llama.cpp on `gguf_path` vs the original tokenizer (default: probe set)."""
    texts = list(labelled_texts if labelled_texts is not None else ALL_PROBES)
    spec = reference_spec(prepared)
    if reference is None:
        reference = reference_ids(spec, [t for _, t in texts])
    with Model(gguf_path, vocab_only=True) as llama:
        return compare(spec, reference, llama, texts, prepared.vocab.normalizer)


def _start_reference(prepared: Prepared) -> ReferenceJob:
    """The reference tokenizer loads in its own process while tensors are written (on Gemma's
    262k vocabulary that load alone takes about a second)."""
    return ReferenceJob(reference_spec(prepared), [t for _, t in ALL_PROBES])


def convert(
    src: str,
    out: Path,
    outtype: str = "f16",
    *,
    force: bool = False,
    allow_tokenizer_mismatch: bool = False,
    revision: str | None = None,
    name: str | None = None,
    progress: ProgressFn | None = None,
    prepared: Prepared | None = None,
    finalize: Callable[[Path, Path], None] | None = None,
) -> ConvertResult:
    """Convert `src` to `out`. `finalize(tmp, out)` replaces the default rename: the quantizer
    uses it to turn the verified F16/F32 file into the final quantized one, and the verified
    intermediate is deleted afterwards whatever happens."""
    check_output_path(out, force)
    prepared = prepared or prepare(src, outtype, revision)
    tmp: Path | None = None
    job = _start_reference(prepared)
    try:
        tmp = write_gguf(
            prepared.plan, prepared.checkpoint, metadata_writer(prepared, name), out, progress
        )
        report = tokenizer_parity(prepared, tmp, reference=job.result())
        if not report.ok and not allow_tokenizer_mismatch:
            raise TokenizerMismatch(report, out, prepared.vocab)
        os.chmod(tmp, 0o644)
        if finalize is not None:
            finalize(tmp, out)
        else:
            os.replace(tmp, out)
            tmp = None
        return ConvertResult(prepared, out, report)
    finally:
        job.cancel()
        prepared.checkpoint.close()
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


class TokenizerMismatch(UserError):
    def __init__(self, report: ParityReport, out: Path, vocab: Vocab) -> None:
        m = report.mismatches[0]
        why = ""
        if vocab.model == "t5" and all(byte_fallback_explains(x, vocab) for x in report.mismatches):
            why = (
                " (llama.cpp's Unigram tokenizer has no byte fallback: characters outside the "
                "vocabulary become <unk> instead of byte tokens)"
            )
        super().__init__(
            f"{out}: not written — llama.cpp tokenizes {report.n_mismatched} probe texts "
            f"differently from {report.reference}{why}; first: {m.label} ({m.mode} mode) "
            f"{m.text!r} → reference {m.reference} vs llama.cpp {m.llama}; pass "
            "--allow-tokenizer-mismatch to write it anyway"
        )
        self.report = report
