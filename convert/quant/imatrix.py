"""Importance matrices: per input column of every weight matrix, the sum of squared
activations that reached it, collected by running the model through llama.cpp itself.

This is what llama-imatrix computes (tools/imatrix/imatrix.cpp): the eval callback is asked
about every graph node; for each MUL_MAT whose weight lives in a block (`blk.*`, plus
`output.weight` when asked) and whose activation batch has at least 16 rows, the
activations (src[1]) are read back and x² is summed per column, with a count of rows. For
MUL_MAT_ID (mixture of experts) the sums go to the expert each row was routed to. Every
chunk starts with BOS, as llama-imatrix does: Gemma puts huge activations on position 0 and
leaving them out would change the matrix.

Sums and counts (not means) are kept, so matrices from several runs add up exactly, and the
GGUF imatrix format llama.cpp reads and writes (seachat.convert.quant.imatrix_file) round-trips.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import llama_cpp as L
import numpy as np

from seachat.convert.errors import UserError
from seachat.convert.llama.core import Context, Model
from seachat.convert.llama.ggml_ctypes import GGML_TYPE_F32, GGMLTensor, ggml

MIN_ROWS = 16  # llama-imatrix ignores smaller activation batches


@dataclass
class ImatrixEntry:
    sums: np.ndarray  # float64, shape (n_mat, n_cols): n_mat = 1, or the number of experts
    counts: np.ndarray  # int64, shape (n_mat,): activation rows summed into each matrix

    def mean(self) -> np.ndarray:
        """What the quantizer takes: per-column mean of x² (1.0 where nothing was seen, as
        llama-quantize does), flattened over experts. Computed exactly as llama-quantize does
        from the file (float32 sums / float32 count), so a matrix used in memory and the same
        matrix written and read back quantize to identical bytes."""
        out = np.ones(self.sums.shape, dtype=np.float32)
        seen = self.counts > 0
        sums32 = self.sums[seen].astype(np.float32).astype(np.float64)
        counts32 = self.counts[seen].astype(np.float32).astype(np.float64)
        out[seen] = (sums32 / counts32[:, None]).astype(np.float32)
        return out.reshape(-1)


@dataclass
class Imatrix:
    entries: dict[str, ImatrixEntry] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0

    def means(self) -> dict[str, np.ndarray]:
        return {name: e.mean() for name, e in sorted(self.entries.items())}

    def merge(self, other: Imatrix) -> None:
        for name, e in other.entries.items():
            mine = self.entries.get(name)
            if mine is None:
                self.entries[name] = ImatrixEntry(e.sums.copy(), e.counts.copy())
            elif mine.sums.shape != e.sums.shape:
                raise UserError(
                    f"importance matrices disagree on the shape of {name}: {mine.sums.shape} vs {e.sums.shape}"
                )
            else:
                mine.sums += e.sums
                mine.counts += e.counts
        self.datasets.extend(other.datasets)
        self.chunk_count += other.chunk_count
        self.chunk_size = self.chunk_size or other.chunk_size

    @property
    def n_tokens(self) -> int:
        return max((int(e.counts.max()) for e in self.entries.values()), default=0)


class ImatrixCollector:
    """The cb_eval callback. Keeps a reference to its C function pointer (`self.callback`)
    so that it outlives the llama_context that calls it."""

    def __init__(self, process_output: bool = False) -> None:
        self.g = ggml()
        self.process_output = process_output
        self.stats: dict[str, ImatrixEntry] = {}
        self.error: BaseException | None = None
        self.callback = L.ggml_backend_sched_eval_callback(self._on_node)

    def _wanted(self, name: str) -> bool:
        # process_output: the output projection too — output.weight, or token_embd.weight
        # when the embedding is tied to the output (Gemma): then its matmul is the output's
        return name.startswith("blk.") or (
            self.process_output and name in ("output.weight", "token_embd.weight")
        )

    def _on_node(self, t_ptr: int, ask: bool, user_data: int) -> bool:
        try:
            t = ctypes.cast(t_ptr, ctypes.POINTER(GGMLTensor)).contents
            op = t.op
            if op != self.g.op_mul_mat and op != self.g.op_mul_mat_id:
                return False
            src0 = t.src[0].contents
            src1 = t.src[1].contents
            name = _filter_name(src0.name.decode("utf-8", errors="replace"))
            if ask:
                if op == self.g.op_mul_mat_id:
                    return True
                if src1.ne[1] < MIN_ROWS or src1.type != GGML_TYPE_F32:
                    return False
                return self._wanted(name)
            if op == self.g.op_mul_mat_id:
                self._collect_mul_mat_id(name, t, src0, src1)
            else:
                self._collect_mul_mat(name, src0, src1)
            return True
        except BaseException as exc:  # noqa: BLE001 - never raise into C; re-raised after decode
            if self.error is None:
                self.error = exc
            return not ask  # ask: say "not interested"; after compute: keep going

    def _entry(self, name: str, n_mat: int, n_cols: int) -> ImatrixEntry:
        e = self.stats.get(name)
        if e is None:
            e = ImatrixEntry(
                np.zeros((n_mat, n_cols), dtype=np.float64), np.zeros(n_mat, dtype=np.int64)
            )
            self.stats[name] = e
        elif e.sums.shape != (n_mat, n_cols):
            raise UserError(
                f"inconsistent activation shape for {name}: {e.sums.shape} vs {(n_mat, n_cols)}"
            )
        return e

    def _collect_mul_mat(self, name: str, src0: GGMLTensor, src1: GGMLTensor) -> None:
        x = self.g.read(src1).astype(np.float64)  # (ne3, ne2, ne1, ne0)
        n_mat = int(src0.ne[2] * src0.ne[3])
        e = self._entry(name, n_mat, int(src1.ne[0]))
        sq = x * x
        if n_mat == 1:
            e.sums[0] += sq.sum(axis=(0, 1, 2))
        else:  # 3-D weights: activations of batch i2 go to matrix (i3 % ne3, i2 % ne2)
            ne2, ne3 = int(src0.ne[2]), int(src0.ne[3])
            for i3 in range(sq.shape[0]):
                for i2 in range(sq.shape[1]):
                    e.sums[(i3 % ne3) * ne2 + (i2 % ne2)] += sq[i3, i2].sum(axis=0)
        rows = int(src1.ne[1] * src1.ne[2] * src1.ne[3])
        e.counts += rows // n_mat
        if not np.all(np.isfinite(e.sums)):
            raise UserError(f"non-finite activations in {name}; the model or its input is broken")

    def _collect_mul_mat_id(
        self, name: str, t: GGMLTensor, src0: GGMLTensor, src1: GGMLTensor
    ) -> None:
        # ids: [n_expert_used, n_tokens] (int32); src1: [cols, n_expert_used or 1, n_tokens]
        ids = self.g.read(t.src[2].contents, np.int32)[0, 0]  # (n_tokens, n_ids)
        x = self.g.read(src1).astype(np.float64)[0]  # (n_tokens, ne1, cols)
        n_as = int(src0.ne[2])
        e = self._entry(name, n_as, int(src1.ne[0]))
        n_tokens, n_ids = ids.shape
        ne1 = x.shape[1]
        for idx in range(n_ids):
            rows = x[:, idx % ne1, :]
            experts = ids[:, idx]
            if np.any((experts < 0) | (experts >= n_as)):
                raise UserError(f"expert id out of range in {name}")
            np.add.at(e.sums, experts, rows * rows)
            np.add.at(e.counts, experts, 1)


def _filter_name(name: str) -> str:
    """'CUDA0#blk.0.attn_k.weight#0' -> 'blk.0.attn_k.weight' (as llama-imatrix does)."""
    if "#" in name:
        rest = name.split("#", 1)[1]
        return rest.split("#", 1)[0]
    return name


def llama_imatrix_chunks(
    tokens: Sequence[int], n_ctx: int, bos: int, add_bos: bool = True
) -> list[list[int]]:
    """llama-imatrix's chunking of one tokenized text: whole chunks of n_ctx tokens, the first
    token of each replaced by BOS when the model adds one, the remainder dropped."""
    out = []
    for i in range(len(tokens) // n_ctx):
        chunk = list(tokens[i * n_ctx : (i + 1) * n_ctx])
        if add_bos:
            chunk[0] = bos
        out.append(chunk)
    return out


def compute_imatrix(
    model_path: str | Path,
    chunks: Iterable[Sequence[int]],
    *,
    n_ctx: int = 512,
    n_batch: int = 128,
    threads: int | None = None,
    process_output: bool = False,
    datasets: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
    total_tokens: int | None = None,
    n_gpu_layers: int = 0,
) -> Imatrix:
    """Run every chunk (already starting with BOS) through the model with the collector on.

    Logits are requested for every token, as llama-imatrix does, so the last layer computes
    all rows; n_batch bounds how many logits rows llama.cpp holds at once."""
    chunks = [list(c) for c in chunks]
    if not chunks:
        raise UserError("no calibration text left to compute an importance matrix from")
    longest = max(len(c) for c in chunks)
    collector = ImatrixCollector(process_output=process_output)
    done = 0
    total = total_tokens or sum(len(c) for c in chunks)
    with (
        Model(model_path, n_gpu_layers=n_gpu_layers) as model,
        Context(
            model,
            n_ctx=max(n_ctx, longest),
            n_batch=min(n_batch, max(n_ctx, longest)),
            n_threads=threads,
            cb_eval=collector.callback,
        ) as ctx,
    ):
        for chunk in chunks:
            ctx.clear()
            # even batches: a short last batch (< 16 rows) would be skipped, as in llama-imatrix
            step = math.ceil(len(chunk) / math.ceil(len(chunk) / ctx.n_batch))
            for s in range(0, len(chunk), step):
                part = chunk[s : s + step]
                ctx.decode(part, s, logits=True)
                if collector.error is not None:
                    raise collector.error
                done += len(part)
                if progress is not None:
                    progress(done, total)
    return Imatrix(
        entries=collector.stats,
        datasets=list(datasets),
        chunk_count=len(chunks),
        chunk_size=n_ctx,
    )
