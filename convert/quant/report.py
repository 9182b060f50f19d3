"""The per-language evaluation report: one schema for the evaluator that writes it and the app
that reads it back (`seachat publish` builds the model card's quality table from it).

`seachat eval --beside` and `quantize` / `convert --profile` write it beside a GGUF as
`<file>.gguf.eval.json`:

    {"model": "out.gguf", "reference": "model-f16.gguf", "text": "flores200-dev",
     "languages": {"tha_Thai": {"kld_mean": 0.021, "kld_p99": 0.31, "kld_median": 0.01,
                                "top1": 0.962, "ppl_ref": 11.9, "ppl": 12.1,
                                "tokens_per_char": 0.41, "n_scored": 510}, ...},
     "worst_language": ..., "mean_kld": ..., "summary": ..., "settings": {...}}

Reading is lenient where people edit or hand-write reports: extra keys are ignored, every
metric is optional (a non-finite one counts as missing), a top-1 above 1 is read as a
percentage. A missing report is normal (the card then has no quality table); a report that
exists but cannot be read is an error, because publishing a card without the numbers the
publisher meant to show would be worse than stopping.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seachat.convert.errors import UserError

REPORT_SUFFIX = ".eval.json"
_METRICS = ("kld_mean", "kld_p99", "kld_median", "top1", "ppl_ref", "ppl", "tokens_per_char")


@dataclass
class LanguageResult:
    language: str
    n_scored: int = 0
    kld_mean: float | None = None
    kld_p99: float | None = None
    kld_median: float | None = None
    top1: float | None = None  # fraction of positions where the top token agrees (0..1)
    ppl_ref: float | None = None
    ppl: float | None = None
    tokens_per_char: float | None = None

    def to_json(self) -> dict:
        out: dict = {m: getattr(self, m) for m in _METRICS}
        out["n_scored"] = self.n_scored
        return out

    @classmethod
    def from_json(cls, language: str, data: object) -> LanguageResult:
        """ValueError naming the field when a metric is not a number."""
        if not isinstance(data, dict):
            raise ValueError(f"languages.{language} is not an object")
        values = {m: _number(data.get(m), f"languages.{language}.{m}") for m in _METRICS}
        top1 = values["top1"]
        if top1 is not None and top1 > 1.0:  # written as a percentage
            values["top1"] = top1 / 100.0
        n_scored = _number(data.get("n_scored"), f"languages.{language}.n_scored")
        return cls(language, int(n_scored or 0), **values)


def _number(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} is {value!r}, not a number")
    if not math.isfinite(value):
        return None
    return float(value)


@dataclass
class EvalReport:
    model: str
    reference: str | None
    languages: dict[str, LanguageResult] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    text: str | None = None  # what was read: a folder name, or "seachat held-out evaluation text"

    def worst(self, metric: str = "kld_mean") -> LanguageResult | None:
        scored = [r for r in self.languages.values() if getattr(r, metric) is not None]
        return max(scored, key=lambda r: getattr(r, metric)) if scored else None

    @property
    def mean_kld(self) -> float:
        return self._mean("kld_mean")

    @property
    def mean_top1(self) -> float:
        return self._mean("top1")

    def _mean(self, metric: str) -> float:
        vals = [getattr(r, metric) for r in self.languages.values()]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else float("nan")

    def summary_line(self) -> str:
        """Short enough for GGUF metadata and a model card's first line."""
        w = self.worst()
        if w is None:
            return "not evaluated"
        return (
            f"KLD vs {self.settings.get('reference_type', 'reference')}: worst {w.language} {w.kld_mean:.4f}, "
            f"mean {self.mean_kld:.4f}; top-1 {100 * self.mean_top1:.1f}% ({len(self.languages)} languages)"
        )

    def to_json(self) -> dict:
        w = self.worst()
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

    @classmethod
    def from_json(cls, data: object) -> EvalReport:
        """ValueError saying what is wrong; the derived keys (worst, means, summary) are
        recomputed, not read."""
        if not isinstance(data, dict) or not isinstance(data.get("languages"), dict):
            raise ValueError('no "languages" object')
        languages = {
            str(code): LanguageResult.from_json(str(code), metrics)
            for code, metrics in data["languages"].items()
        }
        settings = data.get("settings")
        ref = data.get("reference")
        text = data.get("text") or data.get("eval_text")
        return cls(
            str(data.get("model") or ""),
            str(ref) if ref else None,
            languages,
            settings if isinstance(settings, dict) else {},
            str(text) if text else None,
        )

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


def report_path(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + REPORT_SUFFIX)


def read_report(gguf: Path) -> EvalReport | None:
    """The report beside `gguf`, None when there is none; UserError when it is unreadable."""
    path = report_path(gguf)
    if not path.exists():
        return None
    try:
        return EvalReport.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise UserError(
            f"{path}: not a readable evaluation report ({exc}); re-run `seachat eval` or "
            "delete the file to publish without quality numbers."
        ) from exc
