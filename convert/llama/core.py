"""Thin, explicit wrappers over llama.cpp's C API (through llama-cpp-python's ctypes bindings)
for the quantization tools: load a model, tokenize, decode batches, read logits.

The high-level `llama_cpp.Llama` hides what these tools need (the eval callback for the
importance matrix, per-batch logits of a 262k vocabulary without keeping them all). Every
object here owns its C handle and frees it in close(); llama.cpp's log is captured instead of
printed, and its tail is put into error messages.
"""

from __future__ import annotations

import ctypes
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import llama_cpp as L
import numpy as np

from seachat.convert.errors import UserError

_backend_lock = threading.Lock()
_backend_ready = False


def backend_init() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            L.llama_backend_init()
            _backend_ready = True


class LlamaLog:
    """Collects llama.cpp's log lines while active; the previous handler is restored after."""

    _active: LlamaLog | None = None

    def __init__(self, keep: int = 200, echo: Callable[[str], None] | None = None) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        self._partial = ""
        self._echo = echo
        self._cb = L.llama_log_callback(self._on_log)

    def _on_log(self, level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        try:
            s = self._partial + text.decode("utf-8", errors="replace")
            *done, self._partial = s.split("\n")
            for line in done:
                self.lines.append(line)
                if self._echo is not None:
                    self._echo(line)
        except Exception:  # noqa: BLE001 - never raise into C
            pass

    def tail(self, n: int = 5, match: str | None = None) -> str:
        lines = [x.strip() for x in self.lines if x.strip() and (match is None or match in x)]
        return " | ".join(lines[-n:])

    def __enter__(self) -> LlamaLog:
        self._prev = LlamaLog._active
        LlamaLog._active = self
        L.llama_log_set(self._cb, ctypes.c_void_p(0))
        return self

    def __exit__(self, *exc: object) -> None:
        LlamaLog._active = self._prev
        if self._prev is not None:
            L.llama_log_set(self._prev._cb, ctypes.c_void_p(0))
        else:
            try:
                from llama_cpp import _logger

                L.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
            except Exception:  # noqa: BLE001
                pass


@contextmanager
def quiet_llama() -> Iterator[LlamaLog]:
    with LlamaLog() as log:
        yield log


class Model:
    """A loaded llama_model (weights memory-mapped)."""

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
            with LlamaLog():
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
        self, text: str, *, add_special: bool = False, parse_special: bool = False
    ) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:  # buffer too small: -n is the size needed
            cap = -n
            buf = (L.llama_token * cap)()
            n = L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            raise UserError(f"{self.path}: llama.cpp failed to tokenize the text")
        return list(buf[:n])


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
            with LlamaLog():
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


def default_threads() -> int:
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        n = os.cpu_count() or 1
    return max(1, min(n, 8))
