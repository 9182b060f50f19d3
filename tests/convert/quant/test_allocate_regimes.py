"""[allocate] across row regimes: each group takes the measurements made on rows of its own
kind (multiples of 256, where k-quants apply, or the 32-element fallback), groups are split
into layers so the budget is spent, and the split keeps what was measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seachat.convert.errors import UserError
from seachat.convert.gguf_file.reader import read_gguf_header
from seachat.convert.quant.tune.groups import Group, make_groups, split_by_layer
from seachat.convert.quant.tune.per_model import transfer_measurements

LANGS = ("khm_Khmr", "tha_Thai")


def _file(row: int, values: dict[str, float]) -> dict:
    """A measurements file with one group attn_q@0-1 measured on rows of `row`."""
    return {
        "settings": {},
        "groups": [{"key": "attn_q@0-1", "row": row}],
        "delta": {f"attn_q@0-1|{ty}": {lang: v for lang in LANGS} for ty, v in values.items()},
    }


def _group(row: int, ladder: list[str]) -> Group:
    nbytes = {ty: 100 * (i + 1) for i, ty in enumerate(ladder)}
    return Group(
        "attn_q@0-1", "attn_q", "0-1", ["blk.0.attn_q.weight"], 100, row, ladder, "f16", nbytes
    )


FALLBACK = _file(640, {"iq4_nl": 0.4, "q5_0": 0.2, "q8_0": 0.01})
KQUANT = _file(768, {"q2_k": 3.0, "q3_k": 1.0, "q4_k": 0.3, "q5_k": 0.12, "q8_0": 0.02})


@pytest.mark.parametrize("order", [(FALLBACK, KQUANT), (KQUANT, FALLBACK)])
def test_each_group_takes_the_measurements_of_its_row_regime(order):
    wide = _group(4096, ["q2_k", "q3_k", "q4_k", "q5_k", "q8_0", "f16"])
    narrow = _group(640, ["iq4_nl", "q5_0", "q8_0", "f16"])
    delta, langs, usable = transfer_measurements([wide], list(order))
    assert langs == sorted(LANGS) and usable == [wide]
    assert delta["attn_q@0-1|q3_k"]["khm_Khmr"] == 1.0  # measured, not interpolated
    assert delta["attn_q@0-1|q2_k"]["tha_Thai"] == 3.0
    delta, _, _ = transfer_measurements([narrow], list(order))
    assert delta["attn_q@0-1|iq4_nl"]["khm_Khmr"] == 0.4


def test_a_regime_nobody_measured_falls_back_to_the_other_and_interpolates():
    wide = _group(4096, ["q2_k", "q3_k", "q4_k", "q5_k", "q8_0", "f16"])
    delta, _, _ = transfer_measurements([wide], [FALLBACK])
    # q5_0 (5.5 bpw) measured 0.2 and q8_0 (8.5) 0.01: q5_k (5.5 bpw) lands on 0.2
    assert delta["attn_q@0-1|q5_k"]["khm_Khmr"] == pytest.approx(0.2)
    assert delta["attn_q@0-1|q2_k"]["khm_Khmr"] > 0.4  # below every measured type: extrapolated up


def test_measurement_files_must_share_languages():
    other = _file(768, {"q4_k": 0.3})
    other["delta"] = {"attn_q@0-1|q4_k": {"eng_Latn": 0.1}}
    with pytest.raises(UserError, match="share no language"):
        transfer_measurements([_group(768, ["q4_k", "f16"])], [FALLBACK, other])


def test_layer_split_keeps_bytes_and_measured_kld(tiny_llama: Path):
    header = read_gguf_header(tiny_llama)
    groups, _ = make_groups(header, n_ranges=2)
    rng = np.random.default_rng(0)
    delta = {
        f"{g.key}|{ty}": {lang: float(rng.uniform(0.01, 1)) for lang in LANGS}
        for g in groups
        for ty in g.ladder[:-1]
    }
    units, unit_delta = split_by_layer(groups, delta, header)
    assert len(units) > len(groups)
    for g in groups:
        parts = [u for u in units if u.kind == g.kind and set(u.tensors) <= set(g.tensors)]
        assert sorted(n for u in parts for n in u.tensors) == sorted(g.tensors)
        for ty in g.ladder:
            assert sum(u.nbytes[ty] for u in parts) == g.nbytes[ty]
        for ty in g.ladder[:-1]:
            for lang in LANGS:
                total = sum(unit_delta[f"{u.key}|{ty}"][lang] for u in parts)
                assert total == pytest.approx(delta[f"{g.key}|{ty}"][lang])
        if g.layers is not None:
            assert all(len({n.split(".")[1] for n in u.tensors}) == 1 for u in parts)
