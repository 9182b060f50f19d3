"""Proof that the converted weights compute what the original computes.

Runs the original checkpoint with transformers (the `verify` extra: torch + transformers) and
the GGUF with llama.cpp on the same token IDs, and compares next-token logits at every
position: top-1 agreement and the largest absolute difference, per text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seachat.convert.errors import UserError
from seachat.convert.llama.core import Model, backend_init
from seachat.convert.parity.probe_text import LANGUAGE_PROBES

TOP1_THRESHOLD = 0.99


@dataclass
class TextLogits:
    label: str
    positions: int
    top1_agree: int
    max_abs_diff: float
    logit_range: float  # spread of the reference logits, for scale


@dataclass
class LogitReport:
    rows: list[TextLogits] = field(default_factory=list)

    @property
    def positions(self) -> int:
        return sum(r.positions for r in self.rows)

    @property
    def top1(self) -> float:
        return sum(r.top1_agree for r in self.rows) / max(self.positions, 1)

    @property
    def max_abs_diff(self) -> float:
        return max((r.max_abs_diff for r in self.rows), default=0.0)

    @property
    def ok(self) -> bool:
        return self.top1 >= TOP1_THRESHOLD

    def summary(self) -> str:
        return (
            f"logit parity: top-1 agreement {self.top1:.2%} over {self.positions} positions, "
            f"max |Δlogit| {self.max_abs_diff:.4g}"
        )


def llama_cpp_logits(
    gguf_path: Path, token_lists: Sequence[list[int]], n_threads: int = 2
) -> list[np.ndarray]:
    """Logits for every position of each token list, from llama.cpp on the CPU."""
    from llama_cpp import Llama

    backend_init()
    n_ctx = max(len(t) for t in token_lists) + 8
    llm = Llama(
        model_path=str(gguf_path),
        n_ctx=max(n_ctx, 64),
        n_batch=max(n_ctx, 64),
        n_threads=n_threads,
        n_gpu_layers=0,
        logits_all=True,
        verbose=False,
    )
    out = []
    try:
        for tokens in token_lists:
            llm.reset()
            llm.eval(tokens)
            out.append(np.array(llm.scores[: len(tokens)], dtype=np.float32))
    finally:
        llm.close()
    return out


def reference_logits(model_dir: Path, token_lists: Sequence[list[int]]) -> list[np.ndarray]:
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError as exc:
        raise UserError(
            "logit parity needs torch and transformers: pip install 'seachat[verify]'"
        ) from exc
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    out = []
    with torch.no_grad():
        for tokens in token_lists:
            ids = torch.tensor([tokens], dtype=torch.long)
            out.append(model(input_ids=ids).logits[0].float().numpy())
    return out


def compare_logits(
    model_dir: Path,
    gguf_path: Path,
    labelled_texts: Sequence[tuple[str, str]] = LANGUAGE_PROBES,
    n_threads: int = 2,
) -> LogitReport:
    with Model(gguf_path, vocab_only=True) as vocab:
        token_lists = [vocab.tokenize(text, add_special=True) for _, text in labelled_texts]
    ours = llama_cpp_logits(gguf_path, token_lists, n_threads)
    theirs = reference_logits(model_dir, token_lists)
    report = LogitReport()
    for (label, _), a, b in zip(labelled_texts, ours, theirs, strict=True):
        n_vocab = min(a.shape[1], b.shape[1])
        a, b = a[:, :n_vocab], b[:, :n_vocab]
        report.rows.append(
            TextLogits(
                label=label,
                positions=a.shape[0],
                top1_agree=int((a.argmax(axis=1) == b.argmax(axis=1)).sum()),
                max_abs_diff=float(np.abs(a - b).max()),
                logit_range=float(b.max() - b.min()),
            )
        )
    return report
