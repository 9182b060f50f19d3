"""Per-language quality of a quantized model against its reference, over the full vocabulary.

For every language (one text file each) the reference and the candidate(s) read the same
token chunks in lockstep, n_batch tokens at a time: the reference's log-probabilities for a
batch are computed once, each candidate's are compared with them, and both are dropped
before the next batch. Memory therefore stays at a few n_batch x n_vocab arrays, whatever
the text length — 128 MiB per array for Gemma's 262k vocabulary at n_batch=128 — and all
positions x vocabulary are never held.

Per language: mean and 99th-percentile KL(reference || candidate), top-1 agreement,
perplexity of both, tokens per character. Chunks start with BOS (when the model's tokenizer
adds one); positions 1..L-2 of a chunk
of L tokens are scored (each prediction has context and a next token), the same positions
for every metric and every model. KL is computed as sum p·(log p − log q) from
identically-computed log-softmaxes, so a model against itself scores exactly 0.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from seachat.convert.errors import UserError
from seachat.convert.llama.core import Context, Model
from seachat.convert.quant.report import EvalReport, LanguageResult

Progress = Callable[[str, int, int], None]  # (language, tokens done, tokens total)


def read_eval_texts(
    path: str | Path | None, languages: Sequence[str] | None = None
) -> dict[str, str]:
    """language -> text from a directory of <language>.txt files (None: the shipped held-out
    evaluation text)."""
    from seachat.convert.quant.calibration import read_language_files, shipped_eval_dir

    path = Path(path) if path is not None else shipped_eval_dir()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.glob("*.txt") if p.is_file())
    else:
        raise UserError(
            f"{path}: no such evaluation text directory; give a folder of <language>.txt files"
        )
    if languages:
        wanted = set(languages)
        files = [f for f in files if f.stem in wanted]
        missing = wanted - {f.stem for f in files}
        if missing:
            raise UserError(f"{path}: no text for {', '.join(sorted(missing))}")
    texts = read_language_files(files)
    if not texts:
        raise UserError(f"{path}: no non-empty .txt files to evaluate on")
    return texts


_ROWS = 8  # rows per numpy step: 8 x 262k floats stay in cache between the passes


def _log_softmax_into(logits: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[:] = log_softmax(logits) row-wise, in blocks of rows (cache-friendly, no
    allocation of vocabulary-sized temporaries)."""
    for i in range(0, logits.shape[0], _ROWS):
        x = logits[i : i + _ROWS]
        o = out[i : i + _ROWS]
        m = x.max(axis=1, keepdims=True)
        np.subtract(x, m, out=o)
        np.exp(o, out=o)
        lse = np.log(o.sum(axis=1, keepdims=True, dtype=np.float64)).astype(np.float32) + m
        np.subtract(x, lse, out=o)
    return out


def _kl_rows(lp: np.ndarray, p: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """sum p * (lp - lq) per row; overwrites lq."""
    out = np.empty(lp.shape[0], dtype=np.float64)
    for i in range(0, lp.shape[0], _ROWS):
        o = lq[i : i + _ROWS]
        np.subtract(lp[i : i + _ROWS], o, out=o)
        np.multiply(o, p[i : i + _ROWS], out=o)
        out[i : i + _ROWS] = o.sum(axis=1, dtype=np.float64)
    return out


class _Acc:
    def __init__(self) -> None:
        self.kl: list[np.ndarray] = []
        self.agree = 0
        self.nll = 0.0
        self.n = 0

    def result(self, lang: str, nll_ref: float, tpc: float) -> LanguageResult:
        kl = np.concatenate(self.kl) if self.kl else np.zeros(0)
        n = max(self.n, 1)
        return LanguageResult(
            language=lang,
            n_scored=self.n,
            kld_mean=float(kl.mean()) if kl.size else float("nan"),
            kld_p99=float(np.percentile(kl, 99)) if kl.size else float("nan"),
            kld_median=float(np.median(kl)) if kl.size else float("nan"),
            top1=self.agree / n,
            ppl_ref=math.exp(nll_ref / n),
            ppl=math.exp(self.nll / n),
            tokens_per_char=tpc,
        )


def _chunks(tokens: list[int], n_ctx: int, bos: int | None) -> list[list[int]]:
    """Chunks of at most n_ctx tokens, BOS first when the model adds one."""
    lead = [] if bos is None else [bos]
    piece = n_ctx - len(lead)
    return [
        [*lead, *tokens[i : i + piece]]
        for i in range(0, len(tokens), piece)
        if len(tokens[i : i + piece]) >= 2
    ]


def evaluate_models(
    reference: str | Path,
    models: Sequence[str | Path],
    texts: dict[str, str],
    *,
    n_ctx: int = 512,
    n_batch: int = 128,
    max_tokens: int = 2048,
    threads: int | None = None,
    progress: Progress | None = None,
    n_gpu_layers: int = 0,
) -> list[EvalReport]:
    """Evaluate each model against the reference on every language; one report per model."""
    if not models:
        raise ValueError("no model to evaluate")
    if n_ctx < 8 or n_batch < 1:
        raise ValueError("n_ctx must be >= 8 and n_batch >= 1")
    batch = min(n_batch, n_ctx)
    with contextlib.ExitStack() as stack:
        ref_model, cand_models = _open_models(stack, reference, models, n_gpu_layers)
        contexts = [
            stack.enter_context(Context(m, n_ctx=n_ctx, n_batch=batch, n_threads=threads))
            for m in (ref_model, *cand_models)
        ]
        lockstep = _Lockstep(contexts[0], contexts[1:], batch, ref_model.n_vocab)
        bos = ref_model.bos if ref_model.add_bos else None
        reports = [
            EvalReport(
                str(m),
                str(reference),
                settings={
                    "n_ctx": n_ctx,
                    "max_tokens_per_language": max_tokens,
                    "scored": "positions 1..L-2 of each BOS-led chunk",
                },
            )
            for m in models
        ]
        for lang, text in sorted(texts.items()):
            toks = ref_model.tokenize(text, add_special=False)
            tpc = len(toks) / max(len(text), 1)
            chunks = _chunks(toks[:max_tokens], n_ctx, bos)
            accs, nll_ref = lockstep.language(lang, chunks, progress)
            for report, acc in zip(reports, accs, strict=True):
                report.languages[lang] = acc.result(lang, nll_ref, tpc)
        return reports


def _open_models(
    stack: contextlib.ExitStack,
    reference: str | Path,
    models: Sequence[str | Path],
    n_gpu_layers: int,
) -> tuple[Model, list[Model]]:
    """The reference and every candidate, closed with the stack; UserError for a candidate
    whose vocabulary is not the reference's (the KL divergence would compare other tokens)."""
    ref_model = stack.enter_context(Model(reference, n_gpu_layers=n_gpu_layers))
    cand_models = []
    for m in models:
        cm = stack.enter_context(Model(m, n_gpu_layers=n_gpu_layers))
        cand_models.append(cm)
        if cm.n_vocab != ref_model.n_vocab:
            raise UserError(
                f"{m}: vocabulary of {cm.n_vocab} tokens differs from the reference's {ref_model.n_vocab}; evaluate against the model it was made from"
            )
    return ref_model, cand_models


class _Lockstep:
    """The reference and the candidates decode the same batch; the reference's
    log-probabilities are computed once per batch into reused buffers and compared with each
    candidate's before the next batch (memory: a few batch x n_vocab arrays)."""

    def __init__(self, ref: Context, cands: list[Context], batch: int, n_vocab: int) -> None:
        self.ref, self.cands, self.batch = ref, cands, batch
        self.buf_lp = np.empty((batch, n_vocab), dtype=np.float32)
        self.buf_p = np.empty((batch, n_vocab), dtype=np.float32)
        self.buf_lq = np.empty((batch, n_vocab), dtype=np.float32)

    def language(
        self, lang: str, chunks: list[list[int]], progress: Progress | None
    ) -> tuple[list[_Acc], float]:
        """Per-candidate accumulators over all chunks of one language, and the reference's
        negative log-likelihood over the same positions."""
        accs = [_Acc() for _ in self.cands]
        nll_ref = 0.0
        total = sum(len(c) for c in chunks)
        done = 0
        for chunk in chunks:
            for ctx in (self.ref, *self.cands):
                ctx.clear()
            for s in range(0, len(chunk), self.batch):
                nll_ref += self._batch(chunk, s, accs)
                done += len(chunk[s : s + self.batch])
                if progress is not None:
                    progress(lang, done, total)
        return accs, nll_ref

    def _batch(self, chunk: list[int], s: int, accs: list[_Acc]) -> float:
        """Decode chunk[s : s + batch] everywhere; score positions i in [max(s, 1),
        min(s + len, L - 1)), which have a next token. Returns the reference's NLL there."""
        part = chunk[s : s + self.batch]
        lo, hi = max(s, 1), min(s + len(part), len(chunk) - 1)
        logits = self.ref.decode(part, s)
        if hi <= lo:
            for ctx in self.cands:
                ctx.decode(part, s)
            return 0.0
        idx = slice(lo - s, hi - s)  # a view: no copy of vocabulary rows
        rows = np.arange(hi - lo)
        nxt = np.asarray(chunk[lo + 1 : hi + 1])
        lp = _log_softmax_into(logits[idx], self.buf_lp[: hi - lo])
        p = np.exp(lp, out=self.buf_p[: hi - lo])
        ref_top = logits[idx].argmax(axis=1)
        nll_ref = -float(lp[rows, nxt].sum(dtype=np.float64))
        for acc, ctx in zip(accs, self.cands, strict=True):
            clog = ctx.decode(part, s)
            lq = _log_softmax_into(clog[idx], self.buf_lq[: hi - lo])
            acc.agree += int((clog[idx].argmax(axis=1) == ref_top).sum())
            acc.nll -= float(lq[rows, nxt].sum(dtype=np.float64))
            acc.kl.append(_kl_rows(lp, p, lq))
            acc.n += hi - lo
        return nll_ref
