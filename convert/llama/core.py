"""Thin, explicit wrappers over llama.cpp's C API (through llama-cpp-python's ctypes bindings):
the process's log sink, the thread count, model/context/vocabulary loading, tokenize and piece.

The high-level `llama_cpp.Llama` hides what the quantization tools need (the eval callback for
the importance matrix, per-batch logits of a 262k vocabulary without keeping them all), and the
converter's parity check must call llama.cpp's tokenizer with explicit add_special /
parse_special flags. Every object here owns its C handle and frees it in close(); llama.cpp's
log is captured instead of printed, and its tail is put into error messages.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import llama_cpp as L
import numpy as np
import psutil

from seachat.convert.errors import UserError

# enum ggml_log_level of the llama.cpp that llama-cpp-python 0.3.36 vendors (ggml.h); the
# comment in llama_cpp/_logger.py lists an older numbering.
_LOG_DEBUG = 1
_LOG_CONT = 5  # continues the previous message, at its level

MAX_THREADS = 8


class LogSink:
    """llama.cpp's log callback for the whole process: keeps the recent lines, prints nothing.

    The callback is process-wide and set without a lock, so it is set once (`log_sink()`)
    and never restored: a scoped set-and-restore races with other threads' llama.cpp calls
    and, when one closes, silently puts back llama-cpp-python's printing default. Debug lines
    (per-token loader chatter) are dropped; the rest is kept for error messages and `echo`s.
    """

    def __init__(self, keep: int = 400) -> None:
        self._lines: deque[tuple[int, str]] = deque(maxlen=keep)  # (sequence number, line)
        self.count = 0  # lines kept so far; the next line's sequence number
        self._partial = ""
        self._level = 0
        self._echoes: list[Callable[[str], None]] = []
        self._lock = threading.Lock()
        self.callback = L.llama_log_callback(self._on_log)

    def _on_log(self, level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        with contextlib.suppress(Exception):  # a log line must never raise into C
            self._take(level, text.decode("utf-8", errors="replace"))

    def _take(self, level: int, text: str) -> None:
        with self._lock:
            if level != _LOG_CONT:
                self._level = level
            if self._level == _LOG_DEBUG:
                return
            *done, self._partial = (self._partial + text).split("\n")
            for line in done:
                self._lines.append((self.count, line))
                self.count += 1
            echoes = list(self._echoes)
        for line in done:
            for echo in echoes:
                echo(line)

    def lines(self, start: int, end: int | None = None) -> list[str]:
        """The kept lines numbered start.. (before `end`); older ones may have been dropped."""
        with self._lock:
            return [s for n, s in self._lines if n >= start and (end is None or n < end)]

    def add_echo(self, echo: Callable[[str], None]) -> None:
        with self._lock:
            self._echoes.append(echo)

    def remove_echo(self, echo: Callable[[str], None]) -> None:
        with self._lock:
            self._echoes.remove(echo)


_init_lock = threading.Lock()
_sink: LogSink | None = None
_backend_ready = False


def log_sink() -> LogSink:
    """The process's sink, made llama.cpp's log callback on first use (and never replaced)."""
    global _sink
    with _init_lock:
        if _sink is None:
            _sink = LogSink()
            L.llama_log_set(_sink.callback, ctypes.c_void_p(0))
        return _sink


def backend_init() -> None:
    """Ready llama.cpp for this process: the log sink first, so nothing reaches the terminal."""
    global _backend_ready
    log_sink()
    with _init_lock:
        if not _backend_ready:
            L.llama_backend_init()
            _backend_ready = True


class LlamaLog:
    """A window on the log sink: the lines llama.cpp logs while this is active (from any
    thread), for error messages; `echo` sees each line as it comes (quantizer progress)."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self._echo = echo
        self._end: int | None = None

    def __enter__(self) -> LlamaLog:
        self._sink = log_sink()
        self._start = self._sink.count
        if self._echo is not None:
            self._sink.add_echo(self._echo)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._echo is not None:
            self._sink.remove_echo(self._echo)
        self._end = self._sink.count

    def tail(self, n: int = 5, match: str | None = None) -> str:
        """The last n non-blank lines (containing `match`, in any case), joined on one line."""
        want = match.lower() if match is not None else None
        lines = [
            x.strip()
            for x in self._sink.lines(self._start, self._end)
            if x.strip() and (want is None or want in x.lower())
        ]
        return " | ".join(lines[-n:])


def default_threads() -> int:
    """Threads for llama.cpp: the physical cores this process may run on, at most 8.

    CPUs outside the affinity set (taskset, cgroup cpusets, CI runners) only time-share the
    allowed ones; a hyper-thread sibling shares its core's SIMD units, so a second thread per
    core adds contention, not speed (llama.cpp's own tools default to physical cores too).
    Beyond about 8 threads generation is bound by memory bandwidth, and more threads only
    starve the UI and everything else on the machine.
    """
    return max(1, min(_usable_cores(), MAX_THREADS))


def _usable_cores() -> int:
    """Physical cores in the affinity set: hyper-thread siblings share one topology entry."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # macOS, Windows: no affinity mask to honour
        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(topology.read_text().strip())  # one entry per physical core
        except OSError:  # no sysfs topology (some containers): bound by the core count
            return min(len(cpus), psutil.cpu_count(logical=False) or len(cpus))
    return len(cores)


def tokenize(vocab: object, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
    """llama.cpp's token IDs for `text` with `vocab` (a llama_vocab pointer)."""
    data = text.encode("utf-8")
    cap = len(data) + 16
    buf = (L.llama_token * cap)()
    n = L.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
    if n < 0:  # buffer too small: -n is the size needed
        cap = -n
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
    if n < 0:
        raise UserError("llama.cpp failed to tokenize the text")
    return list(buf[:n])


def piece(vocab: object, token: int, *, special: bool = False) -> bytes:
    """The bytes of one token; control tokens give none unless `special`."""
    buf = ctypes.create_string_buffer(64)
    n = L.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
    if n < 0:  # buffer too small: -n is the size needed
        buf = ctypes.create_string_buffer(-n)
        n = L.llama_token_to_piece(vocab, token, buf, -n, 0, special)
    return buf.raw[: max(n, 0)]


class Model:
    """A loaded llama_model (weights memory-mapped), or only its vocabulary with `vocab_only`:
    the tokenizer without the weights, which is all the converter's parity check needs."""

    def __init__(
        self, path: str | Path, *, vocab_only: bool = False, n_gpu_layers: int = 0
    ) -> None:
        backend_init()
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such model file")
        params = L.llama_model_default_params()
        params.vocab_only = vocab_only
        params.n_gpu_layers = n_gpu_layers
        with LlamaLog() as log:
            handle = L.llama_model_load_from_file(str(self.path).encode(), params)
        if not handle:
            raise UserError(
                f"{self.path}: llama.cpp cannot load this model ({log.tail(2) or 'no detail'}); check that it is a complete GGUF"
            )
        self.handle = handle
        self.vocab = L.llama_model_get_vocab(handle)
        self.n_vocab = int(L.llama_vocab_n_tokens(self.vocab))
        self.bos = int(L.llama_vocab_bos(self.vocab))
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.vocab))

    def close(self) -> None:
        if getattr(self, "handle", None):
            L.llama_model_free(self.handle)
            self.handle = None

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(4096)
        n = L.llama_model_meta_val_str(self.handle, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace") if n >= 0 else None

    def tokenize(
        self, text: str, add_special: bool = True, parse_special: bool = False
    ) -> list[int]:
        return tokenize(self.vocab, text, add_special=add_special, parse_special=parse_special)


class Context:
    """A llama_context for batched evaluation with logits for every token of a batch.

    n_batch bounds memory: llama.cpp keeps logits for at most n_batch tokens at a time
    (n_batch x n_vocab floats), so a 262k vocabulary costs 1 MiB per token of batch."""

    def __init__(
        self,
        model: Model,
        *,
        n_ctx: int = 512,
        n_batch: int = 128,
        n_threads: int | None = None,
        cb_eval: object | None = None,
    ) -> None:
        self.model = model
        params = L.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = 1
        threads = n_threads or default_threads()
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        if cb_eval is not None:
            params.cb_eval = cb_eval
            params.cb_eval_user_data = None
        self._cb_eval = cb_eval  # keep the C callback alive as long as the context
        with LlamaLog() as log:
            handle = L.llama_init_from_model(model.handle, params)
        if not handle:
            raise UserError(
                f"{model.path}: llama.cpp cannot create a context ({log.tail(2) or 'no detail'})"
            )
        self.handle = handle
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self._batch = L.llama_batch_init(n_batch, 0, 1)

    def close(self) -> None:
        if getattr(self, "handle", None):
            L.llama_batch_free(self._batch)
            L.llama_free(self.handle)
            self.handle = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def clear(self) -> None:
        L.llama_memory_clear(L.llama_get_memory(self.handle), True)

    def decode(
        self, tokens: Sequence[int], start_pos: int, *, logits: bool = True
    ) -> np.ndarray | None:
        """Decode tokens at positions start_pos.. (len <= n_batch) in sequence 0; returns a
        read-only view of their logits (len x n_vocab), valid until the next decode."""
        n = len(tokens)
        if n > self.n_batch:
            raise ValueError(f"batch of {n} tokens exceeds n_batch={self.n_batch}")
        b = self._batch
        b.n_tokens = n
        for k, tok in enumerate(tokens):
            b.token[k] = tok
            b.pos[k] = start_pos + k
            b.n_seq_id[k] = 1
            b.seq_id[k][0] = 0
            b.logits[k] = 1 if logits else 0
        if not logits:
            b.logits[n - 1] = 1
        with LlamaLog() as log:
            rc = L.llama_decode(self.handle, b)
        if rc != 0:
            raise UserError(
                f"{self.model.path}: llama.cpp decode failed (code {rc}: {log.tail(2) or 'no detail'})"
            )
        if not logits:
            return None
        ptr = L.llama_get_logits(self.handle)
        arr = np.ctypeslib.as_array(ptr, shape=(n, self.model.n_vocab))
        arr.flags.writeable = False
        return arr
