"""The one GGUF header reader: it agrees with gguf-py on a real 262k-token vocabulary while
skipping its arrays, and the metadata editor rewrites headers from the byte spans it records."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gguf import GGUFReader

from seachat.convert.errors import UserError
from seachat.convert.gguf_file.kv_edit import set_metadata
from seachat.convert.gguf_file.reader import GGUFFormatError, read_gguf_header


def test_header_matches_gguf_py_on_gemma(gemma3_gguf: Path):
    start = time.monotonic()
    header = read_gguf_header(gemma3_gguf)
    elapsed = time.monotonic() - start
    ref = GGUFReader(gemma3_gguf)
    assert header.array_lengths["tokenizer.ggml.tokens"] == 262144  # skipped, not decoded
    assert "tokenizer.ggml.tokens" not in header.metadata
    assert header.get("general.architecture") == "gemma3"
    assert [t.name for t in header.tensors] == [t.name for t in ref.tensors]
    assert header.data_offset == ref.data_offset
    assert [header.data_offset + t.offset for t in header.tensors] == [
        int(t.data_offset) for t in ref.tensors
    ]
    assert set(header.kv_spans) == set(ref.fields) - {
        "GGUF.version",
        "GGUF.tensor_count",
        "GGUF.kv_count",
    }
    assert elapsed < 2.0, f"header read took {elapsed:.2f} s"


def test_metadata_edit_of_a_file_with_a_long_vocabulary(gemma3_gguf: Path, tmp_path: Path):
    out = tmp_path / "edited.gguf"
    set_metadata(gemma3_gguf, out, {"general.name": "edited", "seachat.x": 3, "seachat.y": 0.5})
    before, after = read_gguf_header(gemma3_gguf), read_gguf_header(out)
    assert after.get("general.name") == "edited"
    assert after.get("seachat.x") == 3 and after.get("seachat.y") == 0.5
    assert after.array_lengths == before.array_lengths
    assert [(t.name, t.offset) for t in after.tensors] == [
        (t.name, t.offset) for t in before.tensors
    ]
    with open(gemma3_gguf, "rb") as a, open(out, "rb") as b:
        a.seek(before.data_offset)
        b.seek(after.data_offset)
        assert a.read(1 << 20) == b.read(1 << 20)


def test_not_a_gguf(tmp_path: Path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 4)
    with pytest.raises(GGUFFormatError, match="junk.gguf: not a GGUF file"):
        read_gguf_header(junk)
    with pytest.raises(UserError, match="junk.gguf: not a GGUF file"):
        set_metadata(junk, tmp_path / "out.gguf", {"a": "b"})
