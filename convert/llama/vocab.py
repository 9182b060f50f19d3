"""llama.cpp's tokenizer on a GGUF file, loaded vocabulary-only (no weights).

Parity is judged against what llama.cpp itself does with the file we wrote, so we call its C API
directly: load with vocab_only, tokenize with explicit add_special / parse_special flags.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from types import TracebackType

import llama_cpp

from seachat.convert.errors import UserError

_log_lock = threading.Lock()
_log_callback = None


def silence_llama_logs() -> None:
    """llama.cpp logs every tensor and key to stderr; converters and tests don't want that.
    Errors still surface through return codes and our own messages."""
    global _log_callback
    with _log_lock:
        if _log_callback is None:

            @llama_cpp.llama_log_callback
            def _drop(level, text, user_data):  # noqa: ANN001
                return None

            _log_callback = _drop
            llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


class LlamaVocab:
    def __init__(self, path: Path) -> None:
        silence_llama_logs()
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self.path = path
        self._model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self._model:
            raise UserError(f"{path}: llama.cpp could not load the vocabulary of this GGUF")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)

    @property
    def n_tokens(self) -> int:
        return int(llama_cpp.llama_vocab_n_tokens(self._vocab))

    def tokenize(
        self, text: str, add_special: bool = True, parse_special: bool = False
    ) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), buf, capacity, add_special, parse_special
            )
            if n >= 0:
                return list(buf[:n])
            capacity = -n

    def piece(self, token: int, special: bool = True) -> bytes:
        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[: max(n, 0)]

    def close(self) -> None:
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> LlamaVocab:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
