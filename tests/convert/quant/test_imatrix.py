"""Importance matrix: computed through llama.cpp's eval callback it matches llama-imatrix, and
it moves both ways through llama.cpp's file formats."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from seachat.convert.errors import UserError
from seachat.convert.llama.core import Model
from seachat.convert.quant.calibration import (
    build_calibration,
    parse_chat,
    read_text_sources,
    render_chat,
)
from seachat.convert.quant.imatrix import (
    Imatrix,
    ImatrixEntry,
    compute_imatrix,
    llama_imatrix_chunks,
)
from seachat.convert.quant.imatrix_file import read_imatrix, write_imatrix
from tests.convert.quant.conftest import CALIBRATION_LANGUAGES

DATA = Path(__file__).parent / "data"
REFERENCE = (
    DATA / "tiny-llama-v1.tha_Thai.llama-imatrix.gguf"
)  # llama-imatrix -c 256 --no-ppl (llama.cpp of llama-cpp-python 0.3.36)
TEXT = DATA / "imatrix-text.tha_Thai.txt"


@pytest.fixture(scope="module")
def tiny_imatrix(tiny_llama: Path) -> Imatrix:
    with Model(tiny_llama, vocab_only=True) as m:
        chunks = llama_imatrix_chunks(
            m.tokenize(TEXT.read_text(encoding="utf-8"), add_special=True), 256, m.bos, m.add_bos
        )
    return compute_imatrix(tiny_llama, chunks, n_ctx=256, threads=2, datasets=[str(TEXT)])


def test_matches_llama_imatrix_on_the_same_text(tiny_imatrix: Imatrix):
    """The file in data/ was written by llama.cpp's own llama-imatrix on this model and text."""
    ref = read_imatrix(REFERENCE)
    assert ref.chunk_count == tiny_imatrix.chunk_count == 26 and ref.chunk_size == 256
    assert set(ref.entries) == set(tiny_imatrix.entries)
    assert len(ref.entries) == 4 * 7  # q, k, v, output, gate, up, down in 4 blocks
    worst = 0.0
    for name, e in ref.entries.items():
        mine = tiny_imatrix.entries[name]
        np.testing.assert_array_equal(mine.counts, e.counts)
        rel = np.abs(mine.mean() - e.mean()) / np.abs(e.mean())
        worst = max(worst, float(rel.max()))
    # llama-imatrix sums in float32, seachat in float64, and the activations themselves come
    # from SIMD kernels whose float32 rounding differs between CPUs: 1.5e-4 where the
    # reference was written, 5.4e-4 on an AMD EPYC. A wrong chunking or a missing BOS is > 1e-2.
    assert worst < 1e-3, worst


def test_bos_starts_every_chunk_and_the_collector_sees_it(tiny_llama: Path):
    """Replacing the first token by BOS changes the sums: the collector really reads position 0."""
    with Model(tiny_llama, vocab_only=True) as m:
        toks = m.tokenize(TEXT.read_text(encoding="utf-8")[:2000], add_special=True)
        with_bos = llama_imatrix_chunks(toks, 128, m.bos, True)
        without = llama_imatrix_chunks(toks, 128, m.bos, False)
    assert all(c[0] == m.bos for c in with_bos)
    a = compute_imatrix(tiny_llama, with_bos[:2], n_ctx=128, threads=2)
    b = compute_imatrix(tiny_llama, without[:2], n_ctx=128, threads=2)
    name = "blk.0.attn_q.weight"
    assert not np.allclose(a.entries[name].sums, b.entries[name].sums)


def test_gguf_round_trip_is_exact(tiny_imatrix: Imatrix, tmp_path: Path):
    path = write_imatrix(tiny_imatrix, tmp_path / "im.gguf")
    back = read_imatrix(path)
    assert back.datasets == tiny_imatrix.datasets
    assert (back.chunk_count, back.chunk_size) == (
        tiny_imatrix.chunk_count,
        tiny_imatrix.chunk_size,
    )
    for name, e in tiny_imatrix.entries.items():
        np.testing.assert_array_equal(back.entries[name].counts, e.counts)
        np.testing.assert_array_equal(
            back.entries[name].sums, e.sums.astype(np.float32).astype(np.float64)
        )
    # and the llama-imatrix file survives our writer unchanged in content
    ref = read_imatrix(REFERENCE)
    again = read_imatrix(write_imatrix(ref, tmp_path / "again.gguf"))
    for name, e in ref.entries.items():
        np.testing.assert_array_equal(again.entries[name].sums, e.sums)
    assert again.datasets == ref.datasets


def test_written_file_has_llama_cpp_layout(tiny_imatrix: Imatrix, tmp_path: Path):
    from gguf import GGUFReader

    reader = GGUFReader(write_imatrix(tiny_imatrix, tmp_path / "im.gguf"))
    ref = GGUFReader(REFERENCE)
    assert reader.fields["general.type"].contents() == "imatrix"
    assert "general.architecture" not in reader.fields  # llama-imatrix writes none
    mine = {t.name: (tuple(int(x) for x in t.shape), int(t.tensor_type)) for t in reader.tensors}
    theirs = {t.name: (tuple(int(x) for x in t.shape), int(t.tensor_type)) for t in ref.tensors}
    assert mine == theirs
    for key in ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"):
        assert key in reader.fields


def test_legacy_dat_is_read(tmp_path: Path):
    """The .dat format keeps mean(x²)·ncall per entry; reading it gives back the means."""
    values = np.array([1.0, 4.0, 9.0, 0.5], dtype="<f4")
    ncall = 3
    name = b"blk.0.attn_q.weight"
    blob = (
        struct.pack("<i", 1)
        + struct.pack("<i", len(name))
        + name
        + struct.pack("<ii", ncall, values.size)
    )
    blob += (values * ncall).astype("<f4").tobytes()
    blob += struct.pack("<i", 7) + struct.pack("<i", 9) + b"wiki.text"
    path = tmp_path / "old.dat"
    path.write_bytes(blob)
    im = read_imatrix(path)
    np.testing.assert_allclose(im.entries["blk.0.attn_q.weight"].mean(), values, rtol=1e-6)
    assert im.chunk_count == 7 and im.datasets == ["wiki.text"]


def test_damaged_files_are_rejected_with_the_file_name(tmp_path: Path):
    bad = tmp_path / "junk.gguf"
    bad.write_bytes(b"not an imatrix at all, just text" * 4)
    with pytest.raises(UserError, match="junk.gguf"):
        read_imatrix(bad)
    with pytest.raises(UserError, match="no such importance-matrix file"):
        read_imatrix(tmp_path / "missing.gguf")


def test_means_follow_llama_quantize_rules():
    e = ImatrixEntry(np.array([[2.0, 4.0], [0.0, 0.0]]), np.array([2, 0]))
    np.testing.assert_array_equal(e.mean(), np.array([1.0, 2.0, 1.0, 1.0], dtype=np.float32))


def test_merge_adds_sums_and_counts(tiny_imatrix: Imatrix):
    twice = Imatrix()
    twice.merge(tiny_imatrix)
    twice.merge(tiny_imatrix)
    name = "blk.1.ffn_down.weight"
    np.testing.assert_allclose(twice.entries[name].sums, 2 * tiny_imatrix.entries[name].sums)
    np.testing.assert_allclose(
        twice.entries[name].mean(), tiny_imatrix.entries[name].mean(), rtol=1e-6
    )


# ---------------------------------------------------------------------------- calibration


def test_calibration_is_balanced_by_tokens_not_bytes(tiny_llama: Path):
    texts = read_text_sources(None)
    mix = {"tha_Thai": 1.0, "khm_Khmr": 1.0, "eng_Latn": 2.0}
    with Model(tiny_llama, vocab_only=True) as m:
        cset = build_calibration(m, texts, mix=mix, total_tokens=2000, chunk_size=256)
        assert (
            cset.tokens["eng_Latn"] == 1000
            and cset.tokens["tha_Thai"] == cset.tokens["khm_Khmr"] == 500
        )
        # by bytes the same shares would be far apart: Thai costs many more tokens per byte here
        tpb = {
            k: len(m.tokenize(texts[k])) / len(texts[k].encode()) for k in ("tha_Thai", "eng_Latn")
        }
        assert tpb["tha_Thai"] > 2 * tpb["eng_Latn"]
        assert all(len(c) <= 256 and c[0] == m.bos for c in cset.chunks)
        assert sum(len(c) - 1 for c in cset.chunks) == sum(cset.tokens.values())
        # a language that runs out caps the total, the shares hold
        short = {"tha_Thai": texts["tha_Thai"][:300], "eng_Latn": texts["eng_Latn"]}
        cset = build_calibration(
            m, short, mix={"tha_Thai": 1, "eng_Latn": 1}, total_tokens=100000, chunk_size=256
        )
        assert cset.limited_by == "tha_Thai"
        assert cset.tokens["eng_Latn"] == cset.tokens["tha_Thai"]
        with pytest.raises(UserError, match="lacks lao_Laoo"):
            build_calibration(m, short, mix={"lao_Laoo": 1, "eng_Latn": 1}, total_tokens=1000)


def test_shipped_calibration_covers_the_languages_and_chat(tiny_llama: Path):
    texts = read_text_sources(None)
    for lang in CALIBRATION_LANGUAGES:
        assert lang in texts
    convs = parse_chat(texts["chat"])
    assert len(convs) >= 15 and all(
        turn["role"] in ("user", "assistant") for c in convs for turn in c
    )
    with Model(tiny_llama, vocab_only=True) as m:
        template = m.meta("tokenizer.chat_template")
        assert template  # SmolLM2's, copied into the tiny model
        rendered = render_chat(convs[:2], template, "", "")
        assert "<|im_start|>user" in rendered and "ช่วยแนะนำ" in rendered
        toks = m.tokenize(rendered, parse_special=True)
        assert m.tokenize("<|im_start|>", parse_special=True)[0] in toks  # control tokens, not text
    assert "User: " in render_chat(convs[:1], None, "", "")
