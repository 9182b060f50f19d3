"""Helpers shared by the library tests (importable: tests/app is put on sys.path by
its conftest): GGUF writing, multi-script names, and running `seachat` as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Titles in the scripts seachat is for, used wherever a name is shown.
THAI_NAME = "โมเดลภาษาไทย"
KHMER_NAME = "គំរូភាសាខ្មែរ"
LAO_NAME = "ແບບຈໍາລອງພາສາລາວ"
BURMESE_NAME = "မြန်မာဘာသာစကားမော်ဒယ်"
ARABIC_NAME = "نموذج اللغة العربية"


def write_gguf(
    path: Path,
    *,
    name: str = "Tiny Test",
    arch: str = "llama",
    n_bytes: int = 1 << 20,
    seed: int = 0,
    profile: str | None = None,
    file_type: int | None = 15,  # Q4_K_M, as a label (tensors are F32 for simplicity)
    languages: list[str] | None = None,
    license: str | None = None,
    source_url: str | None = None,
    base_model: tuple[str, str] | None = None,  # (organization, name)
    imatrix_dataset: str | None = None,
    extra: dict[str, str] | None = None,
    block_count: int = 2,
    embedding_length: int = 64,
    head_count: int = 4,
    context_length: int = 2048,
) -> Path:
    """A real, loadable-by-header GGUF (gguf-py's writer) with random tensor bytes, so that
    every file has a distinct sha256 and a size close to `n_bytes`."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_block_count(block_count)
    w.add_embedding_length(embedding_length)
    w.add_head_count(head_count)
    w.add_context_length(context_length)
    if file_type is not None:
        w.add_file_type(file_type)
    if profile:
        w.add_string("seachat.quant.profile", profile)
    if languages:
        w.add_languages(languages)
    if license:
        w.add_license(license)
    if source_url:
        w.add_source_url(source_url)
    if base_model:
        w.add_base_model_count(1)
        w.add_base_model_organization(0, base_model[0])
        w.add_base_model_name(0, base_model[1])
    if imatrix_dataset:
        w.add_string("quantize.imatrix.dataset", imatrix_dataset)
        w.add_uint32("quantize.imatrix.chunks_count", 128)
    for k, v in (extra or {}).items():
        w.add_string(k, v)
    rng = np.random.default_rng(seed)
    n_floats = max(64, n_bytes // 4)
    rows = n_floats // 64
    w.add_tensor("token_embd.weight", rng.standard_normal((rows, 64), dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def spawn_seachat(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "seachat.app", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
