"""Which GGUF in a Hub repository the user means.

`seachat pull REPO[:WHICH]`: WHICH may be an exact file name, a llama.cpp quantization
(`Q4_K_M`), a seachat profile (`sea-q4`) or any other part of the file name between
separators. Matching is on normalized name tokens, so `q4_k_m`, `Q4-K-M` and `Q4_K_M` agree,
and `Q4_K` alone is reported as ambiguous between `Q4_K_M` and `Q4_K_S` instead of guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from seachat.convert.errors import UserError
from seachat.convert.units import human_bytes

# Files that end in .gguf but are not a chat model on their own.
_NOT_A_MODEL = re.compile(r"(?i)(mmproj|imatrix|vocab|draft-)")
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
# A seachat profile (sea-q4) or a llama.cpp type (Q4_K_M, IQ4_XS, Q8_0, BF16). "tiny-sea-Q4_K_M"
# is a Q4_K_M file of a model named "tiny-sea": a profile must not run into an underscore.
_QUANT_LABEL = re.compile(
    r"(?i)(?<![a-z0-9])(sea-q\d+(?:-[a-z]+)?(?![a-z0-9_])|(?:I?Q\d+(?:_[A-Z0-9]+)*|TQ\d_\d|BF16|F16|FP16|F32)(?![a-z0-9]))"
)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")


@dataclass(frozen=True)
class PullSpec:
    repo_id: str
    selector: str | None

    def __str__(self) -> str:
        return f"{self.repo_id}:{self.selector}" if self.selector else self.repo_id


@dataclass(frozen=True)
class RepoGGUF:
    filename: str  # path inside the repository
    size: int | None
    sha256: str | None

    @property
    def basename(self) -> str:
        return PurePosixPath(self.filename).name

    @property
    def label(self) -> str:
        """The quantization or profile name read from the file name, '' if none is visible."""
        matches = _QUANT_LABEL.findall(PurePosixPath(self.filename).stem)
        return matches[-1] if matches else ""


def parse_spec(text: str) -> PullSpec:
    """`owner/repo`, `owner/repo:Q4_K_M`, `hf.co/owner/repo:file.gguf`, or a Hub URL."""
    raw = text.strip()
    for prefix in ("https://", "http://"):
        raw = raw.removeprefix(prefix)
    for host in ("huggingface.co/", "hf.co/", "www.huggingface.co/"):
        raw = raw.removeprefix(host)
    selector: str | None = None
    # A pasted file URL: owner/repo/blob/main/path/file.gguf or .../resolve/main/...
    m = re.match(r"^([^/]+/[^/]+)/(?:blob|resolve)/[^/]+/(.+)$", raw)
    if m:
        raw, selector = m.group(1), m.group(2)
    elif ":" in raw:
        raw, selector = raw.split(":", 1)
        selector = selector.strip() or None
    raw = raw.strip("/")
    if not _REPO_ID.match(raw):
        raise UserError(
            f"{text!r} is not a Hub repository id; write it as OWNER/NAME, e.g. "
            "seachat pull bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M"
        )
    return PullSpec(raw, selector)


def _norm(name: str) -> str:
    name = name.casefold().removesuffix(".gguf")
    return re.sub(r"[-_.\s]+", "-", name).strip("-")


def ggufs_in(siblings: list[tuple[str, int | None, str | None]]) -> list[RepoGGUF]:
    """The model files among a repository's files (name, size, LFS sha256)."""
    out = [
        RepoGGUF(name, size, sha)
        for name, size, sha in siblings
        if name.lower().endswith(".gguf") and not _NOT_A_MODEL.search(PurePosixPath(name).name)
    ]
    return sorted(out, key=lambda g: (g.size or 0, g.filename))


def all_ggufs_in(siblings: list[tuple[str, int | None, str | None]]) -> list[RepoGGUF]:
    """Every .gguf, including projectors and imatrix files (for exact-name requests)."""
    return [RepoGGUF(n, s, h) for n, s, h in siblings if n.lower().endswith(".gguf")]


def split_parts(choice: RepoGGUF, files: list[RepoGGUF]) -> list[RepoGGUF]:
    """All shards of a split GGUF (`-00001-of-00003.gguf`), in order; [choice] otherwise."""
    m = _SPLIT.search(choice.filename)
    if not m:
        return [choice]
    prefix = choice.filename[: m.start()]
    count = m.group(2)
    parts = [
        f
        for f in files
        if f.filename.startswith(prefix)
        and (pm := _SPLIT.search(f.filename))
        and pm.start() == len(prefix)
        and pm.group(2) == count
    ]
    return sorted(parts, key=lambda f: f.filename)


class Ambiguous(UserError):
    """The request names no file or several; `choices` are what the user may pick from."""

    def __init__(
        self, message: str, choices: list[RepoGGUF], every_gguf: list[RepoGGUF] | None = None
    ) -> None:
        super().__init__(message)
        self.choices = choices
        self.every_gguf = every_gguf if every_gguf is not None else choices


def choose(spec: PullSpec, files: list[RepoGGUF], every_gguf: list[RepoGGUF]) -> RepoGGUF:
    """The one file `spec` names. Raises Ambiguous (with the candidates) or UserError."""
    first_shards = [f for f in files if not (_SPLIT.search(f.filename)) or _is_first_shard(f)]
    if not every_gguf:
        raise UserError(f"{spec.repo_id}: this repository has no .gguf files")
    if spec.selector is None:
        if len(first_shards) == 1:
            return first_shards[0]
        raise Ambiguous(
            f"{spec.repo_id} has {len(first_shards)} GGUF files; pick one, e.g. "
            f"seachat pull {spec.repo_id}:{_example(first_shards)}",
            first_shards,
            every_gguf,
        )
    sel = spec.selector
    # 1. Exact file name or path, as written, then ignoring case.
    for same in (lambda a, b: a == b, lambda a, b: a.casefold() == b.casefold()):
        exact = [f for f in every_gguf if same(f.filename, sel) or same(f.basename, sel)]
        if len(exact) == 1:
            return exact[0]
    # 2. Name tokens: the selector must sit between separators in the file name.
    wanted = _norm(PurePosixPath(sel).name)
    pattern = re.compile(rf"(?:^|-){re.escape(wanted)}(?:-|$)")
    hits = [f for f in first_shards if pattern.search(_norm(f.basename))]
    if len(hits) > 1:
        ending = [f for f in hits if _norm(_SPLIT.sub("", f.basename)).endswith(wanted)]
        label = [f for f in hits if _norm(f.label) == wanted]
        for narrowed in (label, ending):
            if len(narrowed) == 1:
                return narrowed[0]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise Ambiguous(
            f"{spec.repo_id}: {sel!r} matches {len(hits)} files; name one of them exactly",
            hits,
            every_gguf,
        )
    raise Ambiguous(
        f"{spec.repo_id}: no GGUF file matches {sel!r}; available: "
        + ", ".join(f.label or f.basename for f in first_shards),
        first_shards,
        every_gguf,
    )


def _is_first_shard(f: RepoGGUF) -> bool:
    m = _SPLIT.search(f.filename)
    return bool(m) and int(m.group(1)) == 1


def _example(files: list[RepoGGUF]) -> str:
    for f in files:
        if f.label.upper() == "Q4_K_M" or f.label.lower() == "sea-q4":
            return f.label
    f = files[len(files) // 2]
    return f.label or f.basename


def choices_table(choices: list[RepoGGUF], all_files: list[RepoGGUF]) -> str:
    """Plain text: quant label, size and file name of each choice (split sets summed)."""
    rows = []
    for c in choices:
        parts = split_parts(c, all_files)
        size = sum(p.size or 0 for p in parts) if all(p.size for p in parts) else None
        note = f" ({len(parts)} parts)" if len(parts) > 1 else ""
        rows.append((c.label or "-", human_bytes(size) if size else "?", c.filename + note))
    w0 = max([len("QUANT")] + [len(r[0]) for r in rows])
    w1 = max([len("SIZE")] + [len(r[1]) for r in rows])
    lines = [f"  {'QUANT'.ljust(w0)}  {'SIZE'.rjust(w1)}  FILE"]
    lines += [f"  {a.ljust(w0)}  {b.rjust(w1)}  {c}" for a, b, c in rows]
    return "\n".join(lines)
