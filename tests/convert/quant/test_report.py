"""The evaluation report's one schema: what the evaluator writes reads back unchanged, and
hand-written reports are read leniently (missing metrics, percentages) or refused clearly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from seachat.convert.errors import UserError
from seachat.convert.quant.report import EvalReport, LanguageResult, read_report, report_path


def _report() -> EvalReport:
    langs = {
        code: LanguageResult(code, 100, kld, kld * 9, kld / 2, top1, 10.0, 10.5, 0.4)
        for code, kld, top1 in (("tha_Thai", 0.03, 0.95), ("eng_Latn", 0.01, 0.98))
    }
    return EvalReport("m.gguf", "ref.gguf", langs, {"reference_type": "F16"}, "held-out")


def test_round_trip(tmp_path: Path):
    report = _report()
    path = report_path(tmp_path / "m.gguf")
    path.write_text(json.dumps(report.to_json()), encoding="utf-8")
    back = read_report(tmp_path / "m.gguf")
    assert back == report
    assert back.to_json() == report.to_json()
    assert back.worst().language == "tha_Thai"
    assert "worst tha_Thai 0.0300" in back.summary_line()


def test_lenient_reading_of_hand_written_reports():
    back = EvalReport.from_json(
        {
            "eval_text": "flores",
            "languages": {
                "mya_Mymr": {"kld_mean": 0.04, "top1": 93.1},
                "lao_Laoo": {"top1": 0.9, "kld_p99": float("nan")},
            },
        }
    )
    assert back.reference is None and back.text == "flores"
    assert math.isclose(back.languages["mya_Mymr"].top1, 0.931)
    assert back.languages["lao_Laoo"].kld_mean is None
    assert back.languages["lao_Laoo"].kld_p99 is None
    assert back.worst().language == "mya_Mymr"  # languages without the metric are skipped


def test_unreadable_report_is_an_error_naming_the_file(tmp_path: Path):
    assert read_report(tmp_path / "none.gguf") is None
    report_path(tmp_path / "bad.gguf").write_text(
        '{"languages": {"tha_Thai": {"kld_mean": "low"}}}', encoding="utf-8"
    )
    with pytest.raises(UserError, match=r"bad\.gguf\.eval\.json: .*languages\.tha_Thai\.kld_mean"):
        read_report(tmp_path / "bad.gguf")
