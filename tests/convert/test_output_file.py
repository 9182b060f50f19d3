"""The finished GGUF is an ordinary file of the user's: permissions from the umask, no
temporary files left beside it."""

from __future__ import annotations

import os
import stat

from seachat.convert import pipeline


def test_converted_gguf_honours_the_umask(tiny_dir, tmp_path) -> None:
    out = tmp_path / "ภาษาไทย-f16.gguf"
    old = os.umask(0o022)
    try:
        pipeline.convert(str(tiny_dir("llama-spm")), out, "f16")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # mkstemp alone would give 0600
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
