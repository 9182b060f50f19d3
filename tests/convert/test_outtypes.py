"""f16, bf16 and q8_0 outputs: right tensor types, loadable, logits close to the original."""

from __future__ import annotations

import gguf
import pytest

from seachat.convert import pipeline
from seachat.convert.gguf_file.reader import read_gguf_header
from seachat.convert.parity.logits import compare_logits

# (file type, weight tensor type, min top-1 agreement, max |Δlogit| as a share of the logit
# range). The tiny random model has many near-tied logits, so bf16's 8-bit mantissa and Q8_0
# flip some top-1 choices (on the CPU llama.cpp also quantizes activations to 8 bits for Q8_0
# matmuls); a wrong encoding would give differences of the size of the whole logit range.
OUTTYPES = {
    "f16": (gguf.LlamaFileType.MOSTLY_F16, "F16", 0.99, 0.005),
    "bf16": (gguf.LlamaFileType.MOSTLY_BF16, "BF16", 0.90, 0.03),
    "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, "Q8_0", 0.85, 0.08),
}


@pytest.mark.parametrize("outtype", sorted(OUTTYPES))
def test_outtype(tiny_dir, tmp_path, outtype: str) -> None:
    src = tiny_dir("llama-spm")
    out = tmp_path / f"tiny-{outtype}.gguf"
    pipeline.convert(str(src), out, outtype)
    ftype, weight_type, min_top1, max_rel = OUTTYPES[outtype]
    header = read_gguf_header(out)
    assert header.get("general.file_type") == ftype
    types = {t.name: t.type_name for t in header.tensors}
    assert types["blk.0.attn_q.weight"] == weight_type
    assert types["blk.0.attn_norm.weight"] == "F32"
    report = compare_logits(src, out)
    assert report.top1 >= min_top1, report.summary()
    for row in report.rows:
        assert row.max_abs_diff <= max_rel * row.logit_range, (row, report.summary())


def test_q8_0_falls_back_where_rows_are_not_multiples_of_32(tiny_dir, tmp_path) -> None:
    """Q8_0 blocks hold 32 values: tensors whose rows are shorter stay F16 instead of failing."""
    from seachat.convert.checkpoint.tensor_plan import choose_type

    assert choose_type("q8_0", (10, 48)) == gguf.GGMLQuantizationType.F16
    assert choose_type("q8_0", (10, 64)) == gguf.GGMLQuantizationType.Q8_0
    assert choose_type("q8_0", (64,)) == gguf.GGMLQuantizationType.F32
