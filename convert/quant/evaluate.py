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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seachat.convert.errors import UserError
from seachat.convert.llama.core import Context, Model

Progress = Callable[[str, int, int], None]  # (language, tokens done, tokens total)


@dataclass
class LanguageResult:
    language: str
    n_scored: int
    kld_mean: float
    kld_p99: float
    kld_median: float
    top1: float
    ppl_ref: float
    ppl: float
    tokens_per_char: float

    def to_json(self) -> dict:
        return {
            "kld_mean": self.kld_mean,
            "kld_p99": self.kld_p99,
            "kld_median": self.kld_median,
            "top1": self.top1,
            "ppl_ref": self.ppl_ref,
            "ppl": self.ppl,
            "tokens_per_char": self.tokens_per_char,
            "n_scored": self.n_scored,
        }


@dataclass
class EvalReport:
    model: str
    reference: str
    languages: dict[str, LanguageResult] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    text: str | None = None  # what was read: a folder name, or "seachat held-out evaluation text"

    @property
    def worst(self) -> LanguageResult | None:
        return max(self.languages.values(), key=lambda r: r.kld_mean, default=None)

    @property
    def best(self) -> LanguageResult | None:
        return min(self.languages.values(), key=lambda r: r.kld_mean, default=None)

    @property
    def mean_kld(self) -> float:
        vals = [r.kld_mean for r in self.languages.values()]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def mean_top1(self) -> float:
        vals = [r.top1 for r in self.languages.values()]
        return float(np.mean(vals)) if vals else float("nan")

    def summary_line(self) -> str:
        """Short enough for GGUF metadata and a model card's first line."""
        w = self.worst
        if w is None:
            return "not evaluated"
        return (
            f"KLD vs {self.settings.get('reference_type', 'reference')}: worst {w.language} {w.kld_mean:.4f}, "
            f"mean {self.mean_kld:.4f}; top-1 {100 * self.mean_top1:.1f}% ({len(self.languages)} languages)"
        )

    def to_json(self) -> dict:
        w = self.worst
        return {
            "model": self.model,
            "reference": self.reference,
            "text": self.text,
            "languages": {k: v.to_json() for k, v in sorted(self.languages.items())},
            "worst_language": w.language if w else None,
            "worst_kld_mean": w.kld_mean if w else None,
            "mean_kld": self.mean_kld,
            "mean_top1": self.mean_top1,
            "summary": self.summary_line(),
            "settings": self.settings,
        }

    def table(self) -> str:
        head = f"{'language':<10} {'KLD mean':>9} {'KLD p99':>8} {'top-1':>6} {'PPL ref':>8} {'PPL':>8} {'tok/char':>8} {'scored':>6}"
        lines = [head, "-" * len(head)]
        for lang, r in sorted(self.languages.items(), key=lambda kv: -kv[1].kld_mean):
            lines.append(
                f"{lang:<10} {r.kld_mean:9.5f} {r.kld_p99:8.4f} {100 * r.top1:5.1f}% {r.ppl_ref:8.2f} {r.ppl:8.2f} {r.tokens_per_char:8.3f} {r.n_scored:6d}"
            )
        lines.append("-" * len(head))
        lines.append(self.summary_line())
        return "\n".join(lines)


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
    ref_model = Model(reference, n_gpu_layers=n_gpu_layers)
    cand_models: list[Model] = []
    contexts: list[Context] = []
    try:
        for m in models:
            cm = Model(m, n_gpu_layers=n_gpu_layers)
            cand_models.append(cm)
            if cm.n_vocab != ref_model.n_vocab:
                raise UserError(
                    f"{m}: vocabulary of {cm.n_vocab} tokens differs from the reference's {ref_model.n_vocab}; evaluate against the model it was made from"
                )
        batch = min(n_batch, n_ctx)
        ref_ctx = Context(ref_model, n_ctx=n_ctx, n_batch=batch, n_threads=threads)
        contexts.append(ref_ctx)
        cand_ctxs = [
            Context(cm, n_ctx=n_ctx, n_batch=batch, n_threads=threads) for cm in cand_models
        ]
        contexts.extend(cand_ctxs)

        n_vocab = ref_model.n_vocab
        buf_lp = np.empty((batch, n_vocab), dtype=np.float32)
        buf_p = np.empty((batch, n_vocab), dtype=np.float32)
        buf_lq = np.empty((batch, n_vocab), dtype=np.float32)
        plan: dict[str, tuple[list[list[int]], float]] = {}
        for lang, text in sorted(texts.items()):
            toks = ref_model.tokenize(text, add_special=False)
            tpc = len(toks) / max(len(text), 1)
            plan[lang] = (
                _chunks(toks[:max_tokens], n_ctx, ref_model.bos if ref_model.add_bos else None),
                tpc,
            )
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
        for lang, (chunks, tpc) in plan.items():
            accs = [_Acc() for _ in models]
            nll_ref = 0.0
            total = sum(len(c) for c in chunks)
            done = 0
            for chunk in chunks:
                ref_ctx.clear()
                for c in cand_ctxs:
                    c.clear()
                length = len(chunk)
                for s in range(0, length, batch):
                    part = chunk[s : s + batch]
                    # score positions i in [max(s, 1), min(s + len, length - 1)) : need a next token
                    lo, hi = max(s, 1), min(s + len(part), length - 1)
                    logits = ref_ctx.decode(part, s)
                    if hi > lo:
                        idx = slice(lo - s, hi - s)  # a view: no copy of vocabulary rows
                        rows = np.arange(hi - lo)
                        nxt = np.asarray(chunk[lo + 1 : hi + 1])
                        lp = _log_softmax_into(logits[idx], buf_lp[: hi - lo])
                        p = np.exp(lp, out=buf_p[: hi - lo])
                        ref_top = logits[idx].argmax(axis=1)
                        nll_ref -= float(lp[rows, nxt].sum(dtype=np.float64))
                    for acc, ctx in zip(accs, cand_ctxs, strict=True):
                        clog = ctx.decode(part, s)
                        if hi <= lo:
                            continue
                        lq = _log_softmax_into(clog[idx], buf_lq[: hi - lo])
                        acc.agree += int((clog[idx].argmax(axis=1) == ref_top).sum())
                        acc.nll -= float(lq[rows, nxt].sum(dtype=np.float64))
                        acc.kl.append(_kl_rows(lp, p, lq))
                        acc.n += hi - lo
                    done += len(part)
                    if progress is not None:
                        progress(lang, done, total)
            for report, acc in zip(reports, accs, strict=True):
                report.languages[lang] = acc.result(lang, nll_ref, tpc)
        return reports
    finally:
        for c in contexts:
            c.close()
        for m in cand_models:
            m.close()
        ref_model.close()


def evaluate_model(
    reference: str | Path, model: str | Path, texts: dict[str, str], **kw
) -> EvalReport:
    return evaluate_models(reference, [model], texts, **kw)[0]
