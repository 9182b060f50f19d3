"""Reading the per-language evaluation report that `seachat eval` / `convert --profile` write
beside a GGUF as `<file>.gguf.eval.json`.

Expected shape (extra keys are ignored, every metric is optional):

    {"reference": "model-f16.gguf",            # what the KL divergence is measured against
     "text": "flores200-dev",                    # evaluation text
     "languages": {"tha_Thai": {"kld_mean": 0.021, "kld_p99": 0.31, "top1": 0.962,
                                "ppl": 12.1, "ppl_ref": 11.9, "tokens_per_char": 0.41}, ...}}

A missing report is normal (the card then has no quality table); a report that exists but
cannot be read is an error, because publishing a card without the numbers the publisher
meant to show would be worse than stopping.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from seachat.convert.errors import UserError

REPORT_SUFFIX = ".eval.json"
METRICS = ("kld_mean", "kld_p99", "top1", "ppl", "ppl_ref", "tokens_per_char")


@dataclass(frozen=True)
class LanguageQuality:
    code: str
    kld_mean: float | None = None
    kld_p99: float | None = None
    top1: float | None = None  # fraction of positions where the top token agrees (0..1)
    ppl: float | None = None
    ppl_ref: float | None = None
    tokens_per_char: float | None = None


@dataclass(frozen=True)
class EvalReport:
    path: Path
    reference: str | None
    text: str | None
    languages: dict[str, LanguageQuality]

    def worst(self, metric: str = "kld_mean") -> LanguageQuality | None:
        scored = [q for q in self.languages.values() if getattr(q, metric) is not None]
        return max(scored, key=lambda q: getattr(q, metric)) if scored else None


def report_path(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + REPORT_SUFFIX)


def _number(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} is {value!r}, not a number")
    if not math.isfinite(value):
        return None
    return float(value)


def read_report(gguf: Path) -> EvalReport | None:
    path = report_path(gguf)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("languages"), dict):
            raise ValueError('no "languages" object')
        languages: dict[str, LanguageQuality] = {}
        for code, metrics in data["languages"].items():
            if not isinstance(metrics, dict):
                raise ValueError(f"languages.{code} is not an object")
            values = {m: _number(metrics.get(m), f"languages.{code}.{m}") for m in METRICS}
            top1 = values["top1"]
            if top1 is not None and top1 > 1.0:  # written as a percentage
                values["top1"] = top1 / 100.0
            languages[str(code)] = LanguageQuality(str(code), **values)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise UserError(
            f"{path}: not a readable evaluation report ({exc}); re-run `seachat eval` or "
            "delete the file to publish without quality numbers."
        ) from exc
    ref = data.get("reference")
    text = data.get("text") or data.get("eval_text")
    return EvalReport(path, str(ref) if ref else None, str(text) if text else None, languages)
