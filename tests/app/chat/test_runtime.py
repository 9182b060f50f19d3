"""The llama.cpp runtime with real models: determinism, stopping, context, scripts, errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from seachat.app.chat.runtime import Runtime, SamplingParams, system_backend
from seachat.app.text.segment import grapheme_boundaries
from seachat.convert.errors import UserError
from tests.app.scripts import ALL

GREEDY = SamplingParams(temperature=0.0, max_tokens=48, repeat_penalty=1.0)


def ask(rt: Runtime, text: str, params: SamplingParams = GREEDY, stop=None) -> str:
    msgs = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": text}]
    tokens = rt.tokenize_chat(msgs)
    return "".join(rt.stream(tokens, params, stop))


def test_backend_comes_from_llama_cpp_system_info(smollm):
    name, gpu, info = system_backend()
    assert "CPU" in info
    assert smollm.backend.name == (name if gpu and smollm.backend.layers_offloaded else "CPU")
    assert smollm.backend.n_threads == 2
    assert "2 threads" in smollm.backend.label


def test_greedy_answers_are_reproducible_and_cached_prefix_is_reused(smollm):
    first = ask(smollm, "What is the capital of Thailand?")
    assert "Bangkok" in first
    assert ask(smollm, "What is the capital of Thailand?") == first
    stats = smollm.last_stats
    assert stats.prompt_evaluated < stats.prompt_tokens  # the KV cache kept the prompt
    assert stats.stop_reason == "eos" and stats.gen_tokens > 0 and stats.gen_tps > 0


def test_seeded_sampling_is_reproducible(smollm):
    params = SamplingParams(temperature=0.9, seed=1234, max_tokens=24)
    assert ask(smollm, "Tell me a word.", params) == ask(smollm, "Tell me a word.", params)


def test_max_tokens_limits_the_answer(smollm):
    ask(smollm, "Write a long poem about rivers.", SamplingParams(temperature=0, max_tokens=5))
    assert smollm.last_stats.gen_tokens == 5 and smollm.last_stats.stop_reason == "length"


def test_stop_between_tokens_keeps_the_partial_answer(smollm):
    stop = threading.Event()
    tokens = smollm.tokenize_chat([{"role": "user", "content": "Write a long story about a dog."}])
    seen = []
    for piece in smollm.stream(tokens, SamplingParams(temperature=0, max_tokens=400), stop):
        seen.append(piece)
        if len(seen) == 5:
            stop.set()
    assert smollm.last_stats.stop_reason == "stopped"
    assert smollm.last_stats.gen_tokens <= 6  # within one token of the request


def test_stop_during_long_prompt_evaluation_returns_within_a_second(smollm):
    # ~1800 tokens take several seconds to evaluate on 2 cores; the abort callback must cut
    # llama_decode short instead of waiting for the whole prompt.
    long_text = " ".join(f"Line {i}: the river runs past the old mill." for i in range(120))
    tokens = smollm.tokenize_chat([{"role": "user", "content": long_text}])
    assert len(tokens) > 1500
    smollm.llm.reset()  # nothing cached
    stop = threading.Event()
    result: dict[str, float] = {}

    def run():
        out = "".join(smollm.stream(tokens, SamplingParams(temperature=0, max_tokens=10), stop))
        result["done"] = time.perf_counter()
        result["text"] = out

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.5)
    pressed = time.perf_counter()
    stop.set()
    worker.join(timeout=10)
    assert not worker.is_alive()
    latency = result["done"] - pressed
    assert latency < 1.0, f"stop took {latency:.2f} s"
    assert smollm.last_stats.stop_reason == "stopped" and result["text"] == ""
    # The runtime is still usable afterwards, with consistent cache state.
    assert "Bangkok" in ask(smollm, "What is the capital of Thailand?")


def test_context_full_stops_generation(smollm_small):
    tokens = smollm_small.tokenize_chat(
        [{"role": "user", "content": "Count from one to one thousand."}]
    )
    out = "".join(smollm_small.stream(tokens, SamplingParams(temperature=0, max_tokens=0)))
    stats = smollm_small.last_stats
    assert out and stats.stop_reason in ("context", "eos")
    assert stats.prompt_tokens + stats.gen_tokens <= smollm_small.n_ctx


@pytest.fixture(scope="module")
def smollm_small(smollm2_gguf):
    rt = Runtime(smollm2_gguf, n_ctx=256, n_threads=2)
    yield rt
    rt.close()


@pytest.mark.parametrize("lang", list(ALL))
def test_complex_script_streaming_has_no_broken_text(gemma, lang):
    """Gemma's byte-fallback tokens come one byte at a time for rare characters."""
    tokens = gemma.tokenize_chat([{"role": "user", "content": ALL[lang]}])
    params = SamplingParams(temperature=0.8, seed=7, max_tokens=40)
    full = ""
    for piece in gemma.stream(tokens, params):
        assert "\ufffd" not in piece
        full += piece
        # Every piece ends on a cluster boundary of the final text so far.
        assert len(full) in grapheme_boundaries(full)
    assert full


def test_byte_tokens_are_decoded_whole(gemma):
    """Force raw byte tokens (<0xE1> …) through the decoder: no U+FFFD, whole characters."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(gemma.llm.model)
    texts = {i: llama_cpp.llama_vocab_get_text(vocab, i) for i in range(gemma.llm.n_vocab())}
    byte_token = {t.decode(): i for i, t in texts.items() if t.startswith(b"<0x")}
    ids = [byte_token[f"<0x{b:02X}>"] for b in "ខ្ញុំ".encode()]
    assert b"".join(gemma.piece(i) for i in ids) == "ខ្ញុំ".encode()
    from seachat.app.text.stream import StreamText

    stream = StreamText()
    shown = [stream.feed(gemma.piece(i)) for i in ids]
    assert all(s == "" for s in shown)  # nothing until the cluster is known to be complete
    assert stream.finish() == "ខ្ញុំ"


def test_bad_gguf_gives_one_line_error(tmp_path: Path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 10)
    with pytest.raises(UserError) as exc:
        Runtime(bad, n_threads=1)
    assert "\n" not in str(exc.value) and str(bad) in str(exc.value)
    with pytest.raises(UserError, match="no such model"):
        Runtime(tmp_path / "missing.gguf")


def test_close_during_generation_stops_it_first(smollm2_gguf):
    """Quitting mid-answer must not free llama.cpp under a running decode (a segfault)."""
    rt = Runtime(smollm2_gguf, n_ctx=512, n_threads=2)
    tokens = rt.tokenize_chat([{"role": "user", "content": "Write a long story about a boat."}])
    pieces: list[str] = []
    started = threading.Event()

    def run():
        for piece in rt.stream(tokens, SamplingParams(temperature=0, max_tokens=400)):
            pieces.append(piece)
            started.set()

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(60)
    rt.close()  # from another thread, as the UI does on exit
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert rt.last_stats.stop_reason == "stopped" and pieces
    assert list(rt.stream(tokens, SamplingParams(max_tokens=5))) == []  # closed: nothing runs
