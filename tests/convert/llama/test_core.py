"""The one llama.cpp layer with real llama.cpp: one log sink for the process, the thread count,
vocabulary-only loading, tokenize and piece."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import llama_cpp
import pytest

from seachat.convert.errors import UserError
from seachat.convert.llama.core import LlamaLog, Model, default_threads, log_sink, piece


def current_log_callback() -> int | None:
    """The address of the callback llama.cpp logs through right now."""
    callback = llama_cpp.llama_log_callback()
    user_data = ctypes.c_void_p()
    llama_cpp.llama_log_get(ctypes.byref(callback), ctypes.byref(user_data))
    return ctypes.cast(callback, ctypes.c_void_p).value


def test_log_sink_stays_installed_when_models_close(smollm2_gguf: Path) -> None:
    sink = log_sink()
    ours = ctypes.cast(sink.callback, ctypes.c_void_p).value
    assert current_log_callback() == ours
    first = Model(smollm2_gguf, vocab_only=True)
    second = Model(smollm2_gguf, vocab_only=True)
    first.close()
    assert current_log_callback() == ours  # closing restores nothing
    with LlamaLog() as log:
        Model(smollm2_gguf, vocab_only=True).close()
    assert "llama_model_loader" in log.tail(50)  # the load still logged to our sink
    assert "control token" not in log.tail(400)  # debug chatter is filtered out
    assert second.tokenize("Hello", add_special=False)
    second.close()
    assert log_sink() is sink and current_log_callback() == ours


def test_chat_runtime_logs_to_the_same_sink(smollm2_gguf: Path) -> None:
    from seachat.app.chat.runtime import Runtime

    ours = ctypes.cast(log_sink().callback, ctypes.c_void_p).value
    Runtime(smollm2_gguf, n_ctx=256, n_threads=1).close()
    assert current_log_callback() == ours


def test_load_errors_carry_llama_cpp_detail(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 10)
    with pytest.raises(UserError) as exc:
        Model(bad, vocab_only=True)
    assert "no detail" not in str(exc.value) and "\n" not in str(exc.value)


def test_tokens_give_back_their_bytes(smollm2_gguf: Path) -> None:
    text = "Hello, สวัสดี world"
    with Model(smollm2_gguf, vocab_only=True) as vocab:
        tokens = vocab.tokenize(text, add_special=False)
        assert b"".join(piece(vocab.vocab, t) for t in tokens) == text.encode()
        assert vocab.tokenize(text)[0] == vocab.bos or not vocab.add_bos


def test_default_threads_fit_the_cpus_this_process_may_use() -> None:
    n = default_threads()
    assert 1 <= n <= 8
    assert n <= len(os.sched_getaffinity(0))
