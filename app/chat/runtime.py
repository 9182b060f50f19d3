"""The llama.cpp side of chat: load a GGUF, turn messages into tokens, stream an answer.

Everything here blocks (model load, prompt evaluation, sampling), so the TUI calls it from a
thread worker. Stopping is cooperative and fast: between tokens a flag is checked, and while a
long prompt is being evaluated llama.cpp's abort callback (checked between graph nodes) lets
the same flag cut `llama_decode` short.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

from seachat.app.chat.template import ChatTemplate, TemplateError, choose_template
from seachat.app.text.stream import StreamText
from seachat.convert.errors import UserError
from seachat.convert.gguf_file.keys import NORMALIZER_KEY

DEFAULT_CTX = 4096


def _keep_descriptors() -> None:
    """With verbose=False, llama-cpp-python silences model loading by pointing the process's
    stdout/stderr file descriptors at /dev/null. The TUI draws on stdout from another thread
    meanwhile, and those frames would vanish. The log sink (convert/llama/core.py) already
    keeps llama.cpp quiet, so the descriptors are left alone."""
    import llama_cpp._internals as internals_module
    import llama_cpp.llama as llama_module

    llama_module.suppress_stdout_stderr = _descriptors_untouched
    internals_module.suppress_stdout_stderr = _descriptors_untouched


def _descriptors_untouched(disable: bool = True) -> contextlib.nullcontext[None]:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class BackendInfo:
    """What llama.cpp runs on, from its own system info."""

    name: str  # CPU, CUDA, Metal, Vulkan, ...
    gpu_offload: bool  # whether this llama.cpp build can offload layers at all
    layers_offloaded: int
    n_layers: int  # repeating layers + the output layer
    n_threads: int
    system_info: str

    @classmethod
    def detect(cls, n_layer: int, n_gpu_layers: int, threads: int) -> BackendInfo:
        """Where a model of n_layer repeating layers runs when n_gpu_layers are asked for
        (-1: all): only a build that can offload puts any on the accelerator."""
        name, gpu, sysinfo = system_backend()
        total_layers = n_layer + 1
        if not gpu or n_gpu_layers == 0:
            offloaded = 0
        elif n_gpu_layers < 0:
            offloaded = total_layers
        else:
            offloaded = min(n_gpu_layers, total_layers)
        return cls(name if offloaded else "CPU", gpu, offloaded, total_layers, threads, sysinfo)

    @property
    def label(self) -> str:
        if self.name == "CPU":
            return f"CPU {self.n_threads} threads"
        return (
            f"{self.name} {self.layers_offloaded}/{self.n_layers} layers, {self.n_threads} threads"
        )


def system_backend() -> tuple[str, bool, str]:
    """(backend name, GPU offload supported, raw system info) of the loaded llama.cpp."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    names = [part.split(":")[0].strip() for part in info.split("|") if " : " in part]
    accelerators = [n for n in names if n and n.upper() != "CPU"]
    name = accelerators[0] if (gpu and accelerators) else "CPU"
    return name, gpu, info.strip()


@dataclass
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 0.95
    min_p: float = 0.05
    top_k: int = 40
    repeat_penalty: float = 1.1
    max_tokens: int = 1024
    seed: int | None = None

    def generate_kwargs(self) -> dict[str, float | int]:
        """The sampler settings in llama-cpp-python's `Llama.generate` names."""
        return {
            "top_k": self.top_k,
            "top_p": self.top_p,
            "min_p": self.min_p,
            "temp": self.temperature,
            "repeat_penalty": self.repeat_penalty,
        }


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    prompt_evaluated: int = 0  # after reusing the cached prefix of the last turn
    prompt_seconds: float = 0.0
    gen_tokens: int = 0
    gen_seconds: float = 0.0  # from the first sampled token to the last
    stop_reason: str = ""  # eos | length | stopped | context | stop_string
    context_used: int = 0

    @property
    def prompt_tps(self) -> float:
        return self.prompt_evaluated / self.prompt_seconds if self.prompt_seconds > 0 else 0.0

    @property
    def gen_tps(self) -> float:
        n = self.gen_tokens - 1
        return n / self.gen_seconds if self.gen_seconds > 0 and n > 0 else 0.0


class Runtime:
    """One loaded model and its context."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        n_ctx: int = DEFAULT_CTX,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        n_batch: int = 512,
    ) -> None:
        from seachat.app.library.model_info import GGUFFormatError, read_model_info

        path = Path(model_path)
        if not path.is_file():
            raise UserError(f"{path}: no such model file; pick one with `seachat models`")
        try:
            self.info = read_model_info(path)
        except GGUFFormatError as exc:
            raise UserError(
                f"{exc}; it is not a usable GGUF model, re-download or re-convert it"
            ) from exc
        import llama_cpp
        from llama_cpp import Llama

        from seachat.convert.llama.core import LlamaLog, backend_init, default_threads

        backend_init()
        _keep_descriptors()
        self.path = path
        threads = n_threads or default_threads()
        train_ctx = self.info.context_length or n_ctx
        n_ctx = max(256, min(n_ctx, train_ctx)) if n_ctx > 0 else train_ctx
        try:
            with LlamaLog() as log:
                self.llm = Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_batch=min(n_batch, n_ctx),
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_gpu_layers=n_gpu_layers,
                    verbose=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            why = log.tail(1, match="error") or str(exc)
            raise UserError(
                f"{path}: llama.cpp cannot load this model ({why}); re-download or re-convert it"
            ) from exc
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._adds_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.n_ctx = self.llm.n_ctx()
        self.n_threads = threads
        meta = self.llm.metadata
        arch = meta.get("general.architecture", self.info.architecture)
        n_layer = int(meta.get(f"{arch}.block_count", 0) or 0)
        self.backend = BackendInfo.detect(n_layer, n_gpu_layers, threads)
        self.model_name = self.info.name
        # Unicode normalization the original tokenizer applied (recorded by seachat convert);
        # llama.cpp cannot, so user text is normalized here before it is tokenized.
        self.normalizer: str | None = meta.get(NORMALIZER_KEY) or None
        self._piece_cache: dict[int, bytes] = {}
        self._eog_cache: dict[int, bool] = {}
        self.template: ChatTemplate = choose_template(
            meta.get("tokenizer.chat_template"),
            arch,
            self._token_text(self.llm.token_bos()),
            self._token_text(self.llm.token_eos()),
            self._is_control_token,
        )
        self._abort_cb = None
        self._lock = threading.Lock()
        self._closed = False
        self._active_stop: threading.Event | None = None
        self.last_stats = GenerationStats()

    # -- tokens ---------------------------------------------------------------------------
    def _token_text(self, token: int) -> str:
        import llama_cpp

        if token < 0:
            return ""
        return llama_cpp.llama_vocab_get_text(self._vocab, token).decode("utf-8")

    def _tokenize(self, text: str, special: bool) -> list[int]:
        """No BOS: the chat prompt adds it once, in front of all pieces."""
        from seachat.convert.llama.core import tokenize

        return tokenize(self._vocab, text, add_special=False, parse_special=special)

    def _is_control_token(self, text: str) -> bool:
        return len(self._tokenize(text, special=True)) == 1

    def _normalized(self, text: str) -> str:
        return unicodedata.normalize(self.normalizer, text) if self.normalizer else text

    def tokenize_text(self, text: str) -> list[int]:
        """Plain text: any control-token lookalikes stay text."""
        return self._tokenize(self._normalized(text), special=False)

    def tokenize_chat(
        self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True
    ) -> list[int]:
        """The prompt for `messages`: template text may hold control tokens, content never."""
        try:
            pieces = self.template.render_pieces(messages, add_generation_prompt)
        except TemplateError as exc:
            raise UserError(f"{self.path}: {exc}") from exc
        tokens: list[int] = []
        for piece in pieces:
            text = piece.text if piece.special else self._normalized(piece.text)
            tokens += self._tokenize(text, special=piece.special)
        bos = self.llm.token_bos()
        if self._adds_bos and bos >= 0 and (not tokens or tokens[0] != bos):
            tokens.insert(0, bos)
        return tokens

    def piece(self, token: int) -> bytes:
        """The bytes of one token (control tokens give none)."""
        cached = self._piece_cache.get(token)
        if cached is None:
            from seachat.convert.llama.core import piece

            cached = self._piece_cache[token] = piece(self._vocab, token, special=False)
        return cached

    def is_eog(self, token: int) -> bool:
        import llama_cpp

        hit = self._eog_cache.get(token)
        if hit is None:
            hit = bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))
            self._eog_cache[token] = hit
        return hit

    def cached_prefix(self, tokens: Sequence[int]) -> int:
        """How many leading tokens of `tokens` are already in the KV cache."""
        llm = self.llm
        n = 0
        for a, b in zip(llm.input_ids[: llm.n_tokens], tokens, strict=False):
            if a != b:
                break
            n += 1
        return n

    # -- abort ----------------------------------------------------------------------------
    def _arm_abort(self, stop: threading.Event) -> None:
        import llama_cpp

        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: stop.is_set())
        llama_cpp.llama_set_abort_callback(self.llm.ctx, self._abort_cb, None)

    def _disarm_abort(self) -> None:
        # Between tokens the stop flag is checked in Python; a callback per graph node
        # would only cost generation speed.
        if self._abort_cb is None:
            return
        import llama_cpp

        llama_cpp.llama_set_abort_callback(self.llm.ctx, llama_cpp.ggml_abort_callback(), None)
        self._abort_cb = None

    # -- generation -----------------------------------------------------------------------
    def stream(
        self,
        tokens: Sequence[int],
        params: SamplingParams,
        stop: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield the answer as text that is always safe to show (whole clusters, no U+FFFD).

        `self.last_stats` describes the run when the iterator ends.
        """
        stop = stop or threading.Event()
        with self._lock:
            if self._closed:
                self.last_stats = GenerationStats(prompt_tokens=len(tokens), stop_reason="stopped")
                return
            self._active_stop = stop
            try:
                yield from self._stream_locked(list(tokens), params, stop)
            finally:
                self._active_stop = None

    def _stream_locked(
        self, tokens: list[int], params: SamplingParams, stop: threading.Event
    ) -> Iterator[str]:
        llm = self.llm
        stats = GenerationStats(prompt_tokens=len(tokens))
        self.last_stats = stats
        room = self.n_ctx - len(tokens)
        max_new = min(params.max_tokens, room) if params.max_tokens > 0 else room
        if max_new <= 0 or not tokens:
            stats.stop_reason = "context"
            return
        stats.prompt_evaluated = len(tokens) - max(
            0, min(self.cached_prefix(tokens), len(tokens) - 1)
        )
        llm.set_seed(params.seed if params.seed is not None else random.randrange(2**31))
        text = StreamText()
        stop_strings = self.template.stop_strings
        held = ""  # text that might be the start of a stop string
        self._arm_abort(stop)
        start = perf_counter()
        first = last = start
        gen = llm.generate(tokens, **params.generate_kwargs(), reset=True)
        try:
            if stop.is_set():
                stats.stop_reason = "stopped"
                return
            for token in gen:
                last = perf_counter()
                if stats.gen_tokens == 0:
                    first = last
                    stats.prompt_seconds = first - start
                    self._disarm_abort()
                if self.is_eog(token):
                    stats.stop_reason = "eos"
                    break
                stats.gen_tokens += 1
                out = text.feed(self.piece(token))
                if stop_strings and out:
                    held += out
                    cut, done = _check_stops(held, stop_strings)
                    out, held = held[:cut], held[cut:]
                    if done:
                        stats.stop_reason = "stop_string"
                        held = ""
                        if out:
                            yield out
                        break
                if out:
                    yield out
                if stop.is_set():
                    stats.stop_reason = "stopped"
                    break
                if stats.gen_tokens >= max_new:
                    stats.stop_reason = "length" if max_new < room else "context"
                    break
        except RuntimeError as exc:
            if not stop.is_set():
                raise UserError(f"{self.path}: generation failed ({exc})") from exc
            stats.stop_reason = "stopped"  # llama_decode aborted by the callback
            if stats.gen_tokens == 0:
                stats.prompt_seconds = perf_counter() - start
        finally:
            self._disarm_abort()
            gen.close()
            stats.gen_seconds = max(last - first, 0.0)
            stats.context_used = llm.n_tokens
        if stats.stop_reason != "stop_string":
            tail = _cut_at_stop(held + text.finish(), stop_strings)
            if tail:
                yield tail

    def close(self) -> None:
        """Free the model; a generation in progress is stopped and waited for first.

        Freeing llama.cpp under a running decode crashes the process, and the app can be
        closed at any moment (window closed, Ctrl+Q, an error), so this is the one way out.
        """
        active = self._active_stop
        if active is not None:
            active.set()  # also trips the abort callback during a long prompt
        with self._lock:
            if self._closed:
                return
            self._closed = True
            llm = getattr(self, "llm", None)
            if llm is not None:
                llm.close()


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first stop string in it, if any."""
    cut, found = _check_stops(text, stops)
    return text[:cut] if found else text


def _check_stops(text: str, stops: Sequence[str]) -> tuple[int, bool]:
    """(how much of `text` is safe to show, whether a stop string was found)."""
    best = None
    for s in stops:
        i = text.find(s)
        if i >= 0 and (best is None or i < best):
            best = i
    if best is not None:
        return best, True
    keep = len(text)
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                keep = min(keep, len(text) - n)
                break
    return keep, False


@dataclass
class LoadOptions:
    """What the command line asked for; kept so the model picker can reload with the same."""

    n_ctx: int = DEFAULT_CTX
    n_threads: int | None = None
    n_gpu_layers: int = 0
    extra: dict[str, str] = field(default_factory=dict)
