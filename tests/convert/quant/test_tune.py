"""`seachat tune`: grouping, the worst-language allocation (checked against brute force) and a
real measurement run on the tiny model that writes a loadable profile."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from seachat.convert.errors import UserError
from seachat.convert.gguf_file.reader import read_gguf_header
from seachat.convert.quant.profiles import load_profile_file, profile_from_dict
from seachat.convert.quant.quantize import plan_for_header
from seachat.convert.quant.tune.allocate import Allocation, allocate
from seachat.convert.quant.tune.groups import Group, make_groups
from seachat.convert.quant.tune.profile_toml import profile_toml


def test_groups_of_the_tiny_model(tiny_llama: Path):
    groups, fixed = make_groups(read_gguf_header(tiny_llama), n_ranges=2)
    keys = {g.key for g in groups}
    assert "output" in keys and "token_embd" in keys  # untied model: two embedding groups
    assert "attn_v@0-1/2" in keys and "ffn_down@1/2-1" in keys
    down = next(g for g in groups if g.key == "ffn_down@0-1/2")
    assert (
        down.row == 640 and down.ladder[0] == "iq4_nl" and down.ladder[-1] == "f16"
    )  # 32-block ladder
    q = next(g for g in groups if g.key == "attn_q@0-1/2")
    assert q.ladder[:3] == ["q2_k", "q3_k", "q4_k"] and q.tensors == [
        "blk.0.attn_q.weight",
        "blk.1.attn_q.weight",
    ]
    assert q.nbytes["q4_k"] < q.nbytes["q8_0"] < q.nbytes["f16"]
    assert fixed > 0  # norms


def _synthetic(rng: np.random.Generator, n_groups: int, n_langs: int) -> tuple[list[Group], dict]:
    ladder = ["a", "b", "c", "src"]
    groups, delta = [], {}
    for gi in range(n_groups):
        size = int(rng.integers(50, 200))
        g = Group(
            f"g{gi}",
            "attn_q",
            None,
            [f"t{gi}"],
            size,
            32,
            ladder,
            "src",
            {"a": size * 4, "b": size * 6, "c": size * 9, "src": size * 16},
        )
        groups.append(g)
        base = rng.uniform(0.01, 1.0, size=n_langs)
        for scale, ty in ((1.0, "a"), (0.4, "b"), (0.1, "c")):
            delta[f"g{gi}|{ty}"] = {
                f"L{i}": float(base[i] * scale * rng.uniform(0.5, 1.5)) for i in range(n_langs)
            }
    return groups, delta


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_allocation_matches_brute_force(seed: int):
    rng = np.random.default_rng(seed)
    groups, delta = _synthetic(rng, 5, 4)
    langs = [f"L{i}" for i in range(4)]
    budget = sum(g.nbytes["b"] for g in groups) + 100
    alloc = allocate(groups, delta, langs, budget, fixed_bytes=100)
    assert alloc.n_bytes <= budget
    best = None
    for combo in itertools.product(range(4), repeat=len(groups)):
        size = 100 + sum(g.nbytes[g.ladder[j]] for g, j in zip(groups, combo, strict=True))
        if size > budget:
            continue
        k = np.zeros(4)
        for g, j in zip(groups, combo, strict=True):
            if g.ladder[j] != "src":
                k += [delta[f"{g.key}|{g.ladder[j]}"][lang] for lang in langs]
        if best is None or k.max() < best:
            best = k.max()
    assert alloc.worst[1] <= best * 1.02 + 1e-12  # the minimax optimum (within 2%)


def test_allocation_respects_the_budget_and_rejects_impossible_ones():
    rng = np.random.default_rng(5)
    groups, delta = _synthetic(rng, 8, 6)
    langs = [f"L{i}" for i in range(6)]
    cheapest = sum(g.nbytes["a"] for g in groups)
    with pytest.raises(UserError, match="budget"):
        allocate(groups, delta, langs, cheapest - 1, fixed_bytes=0)
    generous = sum(g.nbytes["src"] for g in groups)
    alloc = allocate(groups, delta, langs, generous, fixed_bytes=0)
    assert alloc.worst[1] == 0.0  # everything may stay unquantized
    tight = allocate(groups, delta, langs, cheapest, fixed_bytes=0)
    assert set(tight.choice.values()) == {"a"}


def test_worst_language_is_protected_not_the_average():
    """Two groups, two languages: the allocator spends on the group the worst language needs,
    even though the other choice has the lower mean."""
    g1 = Group("g1", "attn_q", None, ["x"], 100, 32, ["lo", "src"], "src", {"lo": 100, "src": 300})
    g2 = Group("g2", "attn_k", None, ["y"], 100, 32, ["lo", "src"], "src", {"lo": 100, "src": 300})
    delta = {"g1|lo": {"eng": 0.50, "mya": 0.10}, "g2|lo": {"eng": 0.05, "mya": 0.30}}
    alloc = allocate([g1, g2], delta, ["eng", "mya"], 400, fixed_bytes=0)
    # keeping g1 unquantized: eng 0.05, mya 0.30 (worst 0.30, mean 0.175)
    # keeping g2 unquantized: eng 0.50, mya 0.10 (worst 0.50, mean 0.30)
    assert alloc.choice == {"g1": "src", "g2": "lo"}


@pytest.mark.slow
def test_tune_writes_a_profile_that_loads_and_fits(tiny_llama: Path, tmp_path: Path):
    from seachat.app.cli import main

    out = tmp_path / "tiny-tuned.toml"
    main(
        [
            "tune",
            str(tiny_llama),
            "--budget",
            "q4_k_m",
            "--text",
            str(Path(__file__).parents[3] / "convert" / "data" / "eval"),
            "--languages",
            "tha_Thai,mya_Mymr,eng_Latn",
            "--ranges",
            "1",
            "--tokens",
            "48",
            "--batch",
            "8",
            "--name",
            "tiny-tuned",
            "-o",
            str(out),
            "--calibration",
            str(Path(__file__).parent / "data" / "imatrix-text.tha_Thai.txt"),
            "-t",
            "2",
        ]
    )
    prof = load_profile_file(out)
    assert prof.name == "tiny-tuned" and prof.imatrix
    # measured as sea-q4 (the base) quantizes the output, and written so
    assert (
        prof.output_without_imatrix
        == load_profile_file(
            Path(__file__).parents[3] / "quant_profiles" / "sea-q4.toml"
        ).output_without_imatrix
        == ("q6_k",)
    )
    assert "tiny-llama" in prof.tuned["model"] and prof.tuned["budget"].startswith("size of q4_k_m")
    header = read_gguf_header(tiny_llama)
    assert (
        plan_for_header(prof, header).n_bytes
        <= plan_for_header(
            load_profile_file(Path(__file__).parents[3] / "quant_profiles" / "q4_k_m.toml"), header
        ).n_bytes
    )
    data = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert len(data["delta"]) == sum(len(g["ladder"]) - 1 for g in data["groups"])
    for entry in data["delta"].values():
        assert set(entry) == {"tha_Thai", "mya_Mymr", "eng_Latn"} and all(
            v >= 0 for v in entry.values()
        )
    alloc = data["allocations"]["tiny-tuned"]
    assert alloc["bytes"] <= alloc["budget_bytes"]


def test_profile_toml_round_trips_through_the_parser():
    g = Group(
        "attn_v@0-1/2",
        "attn_v",
        "0-1/2",
        ["blk.0.attn_v.weight"],
        10,
        256,
        ["q4_k", "q8_0", "f16"],
        "f16",
        {"q4_k": 6, "q8_0": 11, "f16": 20},
    )
    g2 = Group(
        "attn_v@1/2-1",
        "attn_v",
        "1/2-1",
        ["blk.1.attn_v.weight"],
        10,
        256,
        ["q4_k", "q8_0", "f16"],
        "f16",
        {"q4_k": 6, "q8_0": 11, "f16": 20},
    )
    out = Group(
        "output",
        "output",
        None,
        ["token_embd.weight"],
        10,
        256,
        ["q5_0", "q8_0", "f16"],
        "f16",
        {"q5_0": 7, "q8_0": 11, "f16": 20},
    )
    alloc = Allocation(
        {"attn_v@0-1/2": "q8_0", "attn_v@1/2-1": "q8_0", "output": "q8_0"}, 33, {"eng": 0.1}, 40
    )
    text = profile_toml(
        name="x",
        summary="s",
        groups=[out, g, g2],
        allocation=alloc,
        n_params=30,
        calibration={"mix": {"tha_Thai": 1}},
        tuned={"model": "m"},
    )
    import tomllib

    prof = profile_from_dict(tomllib.loads(text), "x.toml")
    assert prof.output_type.name == "q8_0"
    assert len(prof.rules) == 1 and prof.rules[0].layers is None  # the two halves merged into "all"
