"""Downloads from the Hugging Face Hub that survive dropped links, Ctrl-C and reboots.

huggingface-hub resumes a broken transfer only inside one call; a new process starts from
zero. Here the bytes go to `<name>.gguf.part` in the models directory with a JSON sidecar
(`<name>.gguf.part.json`) naming the remote file (commit, sha256/etag, size) and a
checkpoint: how many bytes are durably on disk and the sha256 of every 16 MiB block of them.
A later run re-reads the part, keeps every block whose hash still matches (after a power cut
the tail of a file can hold zeros), and asks the server for the rest with an HTTP Range
request. The finished file is checked against the Hub's sha256 and only then renamed into
place, so a wrong or half-written file never appears under the model's name.

Built on huggingface-hub's own pieces: `hf_hub_url` and `get_hf_file_metadata` for the URL and
the sha256/size the Hub vouches for, `build_hf_headers` for the token, and its shared
`httpx2` client (`get_session()`) for the transfer itself, so proxies, certificates and client
factories configured for huggingface-hub apply here too and no second HTTP stack is pulled in.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seachat.convert.errors import UserError
from seachat.convert.files import write_text_atomic
from seachat.convert.units import human_bytes

PART_SUFFIX = ".part"
STATE_SUFFIX = ".part.json"
LOCK_SUFFIX = ".part.lock"
STATE_VERSION = 1

# Durable checkpoint granularity: a hard crash (power cut) re-downloads at most this much.
CHECKPOINT_BLOCK = 16 * 1024 * 1024

# Retry these: the server or a proxy is overloaded or restarting, not refusing us.
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")


class DownloadError(UserError):
    """The transfer failed for good (after retries); the partial file is kept for resuming."""


class VerificationError(UserError):
    """The finished bytes are not what the Hub published; they were discarded."""


class DownloadInterrupted(KeyboardInterrupt):
    """Ctrl-C during a download. The partial file and its checkpoint are saved."""

    def __init__(self, part: Path, have: int, total: int | None) -> None:
        super().__init__(str(part))
        self.part = part
        self.have = have
        self.total = total


@dataclass(frozen=True)
class RemoteFile:
    """One file on the Hub, pinned to a commit, with what the Hub says its bytes hash to."""

    repo_id: str
    filename: str  # path inside the repository
    revision: str  # what the user asked for (branch, tag or commit)
    commit: str | None
    url: str  # resolve URL, pinned to `commit` when known
    size: int | None
    sha256: str | None  # LFS files: the Hub's sha256 of the content
    etag: str | None  # normalized ETag (sha256 for LFS, git blob sha1 otherwise)

    @property
    def identity(self) -> str:
        """What must not change between runs for a partial download to stay valid."""
        return self.sha256 or self.etag or f"{self.commit}:{self.size}"


@dataclass
class DownloadResult:
    path: Path
    size: int
    sha256: str
    fetched: int  # bytes received over the network by this run
    resumed_from: int  # bytes already on disk (and re-verified) when this run started
    retries: int
    notes: list[str] = field(default_factory=list)


def part_path(final: Path) -> Path:
    return final.with_name(final.name + PART_SUFFIX)


def state_path(final: Path) -> Path:
    return final.with_name(final.name + STATE_SUFFIX)


def lock_path(final: Path) -> Path:
    return final.with_name(final.name + LOCK_SUFFIX)


# --------------------------------------------------------------------------- remote metadata


def resolve_remote_file(
    repo_id: str,
    filename: str,
    revision: str,
    *,
    commit: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    timeout: float = 10.0,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
) -> RemoteFile:
    """HEAD the file's resolve URL (huggingface-hub's get_hf_file_metadata): sha256 via
    X-Linked-Etag, size via X-Linked-Size, commit via X-Repo-Commit.

    `expected_*` come from the repo listing (model_info with files_metadata); when both are
    known and disagree the Hub is mid-update, and we refuse rather than guess.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    pinned = commit or revision
    url = hf_hub_url(repo_id, filename, revision=pinned, endpoint=endpoint)
    meta = get_hf_file_metadata(
        url, token=token, timeout=timeout, endpoint=endpoint, retry_on_errors=True
    )
    etag = (meta.etag or "").lower() or None
    sha256 = expected_sha256.lower() if expected_sha256 else None
    if etag and _SHA256_RE.match(etag):
        if sha256 and sha256 != etag:
            raise DownloadError(
                f"{repo_id}/{filename}: the Hub reports two different sha256 values "
                f"({sha256[:12]}… in the listing, {etag[:12]}… for the file); it is probably "
                "being updated — try again in a minute."
            )
        sha256 = etag
    size = meta.size if meta.size is not None else expected_size
    if expected_size is not None and meta.size is not None and expected_size != meta.size:
        raise DownloadError(
            f"{repo_id}/{filename}: the Hub reports two sizes ({expected_size} and {meta.size} "
            "bytes); it is probably being updated — try again in a minute."
        )
    resolved_commit = meta.commit_hash or commit
    if resolved_commit and resolved_commit != pinned:
        url = hf_hub_url(repo_id, filename, revision=resolved_commit, endpoint=endpoint)
    return RemoteFile(
        repo_id=repo_id,
        filename=filename,
        revision=revision,
        commit=resolved_commit,
        url=url,
        size=size,
        sha256=sha256,
        etag=etag,
    )


# --------------------------------------------------------------------------- sidecar state


@dataclass
class Checkpoint:
    """Bytes [0, size) of the part file are on disk and hash to `blocks` (+ `tail_sha256`)."""

    size: int = 0
    block_size: int = CHECKPOINT_BLOCK
    blocks: list[str] = field(default_factory=list)
    tail_sha256: str = hashlib.sha256(b"").hexdigest()


@dataclass
class PartState:
    repo_id: str
    filename: str
    revision: str
    commit: str | None
    url: str
    size: int | None
    sha256: str | None
    etag: str | None
    identity: str
    started: str
    updated: str
    checkpoint: Checkpoint
    version: int = STATE_VERSION

    @classmethod
    def new(cls, remote: RemoteFile, block_size: int) -> PartState:
        now = _now()
        return cls(
            repo_id=remote.repo_id,
            filename=remote.filename,
            revision=remote.revision,
            commit=remote.commit,
            url=remote.url,
            size=remote.size,
            sha256=remote.sha256,
            etag=remote.etag,
            identity=remote.identity,
            started=now,
            updated=now,
            checkpoint=Checkpoint(block_size=block_size),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartState:
        data = dict(data)
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown state version {data.get('version')!r}")
        data["checkpoint"] = Checkpoint(**data["checkpoint"])
        return cls(**data)


def read_state(final: Path) -> PartState | None:
    """The sidecar of an interrupted download of `final`, or None if absent or unreadable."""
    try:
        return PartState.from_dict(json.loads(state_path(final).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def discard_partial(final: Path) -> None:
    for p in (part_path(final), state_path(final)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


# --------------------------------------------------------------------------- hashing


class _Hashes:
    """Running hashes of the part file: the whole content, the current checkpoint block, and a
    git blob sha1 when the Hub gave us only a git etag (small, non-LFS files)."""

    def __init__(self, block_size: int, git_size: int | None) -> None:
        self.block_size = block_size
        self.full = hashlib.sha256()
        self.block = hashlib.sha256()
        self.block_fill = 0
        self.blocks: list[str] = []
        self.git = None
        if git_size is not None:
            self.git = hashlib.sha1(usedforsecurity=False)
            self.git.update(f"blob {git_size}\0".encode())

    def update(self, data: bytes | memoryview) -> None:
        self.full.update(data)
        if self.git is not None:
            self.git.update(data)
        view = memoryview(data)
        while view:
            room = self.block_size - self.block_fill
            piece = view[:room]
            self.block.update(piece)
            self.block_fill += len(piece)
            view = view[len(piece) :]
            if self.block_fill == self.block_size:
                self.blocks.append(self.block.hexdigest())
                self.block = hashlib.sha256()
                self.block_fill = 0

    def checkpoint(self, size: int) -> Checkpoint:
        return Checkpoint(size, self.block_size, list(self.blocks), self.block.copy().hexdigest())


def _verify_existing(
    part: Path, cp: Checkpoint, hashes: _Hashes, progress_note: Callable[[str], None]
) -> int:
    """Re-hash the part file against its checkpoint; return how many bytes are good.

    Blocks are checked in order and the first bad one ends the good prefix. Bytes past the
    checkpoint were written but never made durable (a crash came first): they are dropped.
    """
    try:
        on_disk = part.stat().st_size
    except FileNotFoundError:
        return 0
    good = 0
    with open(part, "rb") as f:
        for expected in cp.blocks:
            data = f.read(cp.block_size)
            if len(data) < cp.block_size or hashlib.sha256(data).hexdigest() != expected:
                progress_note(
                    f"partial file damaged after {human_bytes(good)}; keeping the good part"
                )
                return good
            hashes.update(data)
            good += len(data)
        tail_len = cp.size - good
        if tail_len > 0:
            data = f.read(tail_len)
            if len(data) == tail_len and hashlib.sha256(data).hexdigest() == cp.tail_sha256:
                hashes.update(data)
                good += tail_len
            else:
                progress_note(
                    f"the last {human_bytes(tail_len)} of the partial file are damaged; "
                    "fetching them again"
                )
    if on_disk > cp.size:
        progress_note(
            f"dropping {human_bytes(on_disk - cp.size)} written after the last checkpoint "
            "(the previous run did not stop cleanly)"
        )
    return good


# --------------------------------------------------------------------------- the transfer


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{name}: {text}" if text else name


@dataclass(frozen=True)
class _Settings:
    """How `download` was asked to behave; one object so the transfer's stages can share it."""

    token: str | bool | None
    retries: int
    base_wait: float
    max_wait: float
    connect_timeout: float
    read_timeout: float
    block_size: int
    progress_factory: Callable[[str, int | None, int], Any] | None
    sleep: Callable[[float], None]


def download(
    remote: RemoteFile,
    final: Path,
    *,
    token: str | bool | None = None,
    retries: int = 8,
    base_wait: float = 1.0,
    max_wait: float = 60.0,
    connect_timeout: float = 5.0,
    read_timeout: float = 20.0,
    block_size: int = CHECKPOINT_BLOCK,
    progress_factory: Callable[[str, int | None, int], Any] | None = None,
    note: Callable[[str], None] = lambda _msg: None,
    sleep: Callable[[float], None] = time.sleep,
) -> DownloadResult:
    """Download `remote` into `final` (atomically), resuming any partial left by earlier runs.

    `retries` bounds consecutive failures without progress; every byte received resets it,
    so a link that drops every minute still finishes while a dead one gives up.
    """
    import filelock

    settings = _Settings(
        token=token,
        retries=retries,
        base_wait=base_wait,
        max_wait=max_wait,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        block_size=block_size,
        progress_factory=progress_factory,
        sleep=sleep,
    )
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(lock_path(final)), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise DownloadError(
            f"{part_path(final)}: another seachat pull is downloading this file right now; "
            "wait for it to finish (or stop it) and run again."
        ) from None
    try:
        return _Transfer(remote, final, settings, note).run()
    finally:
        lock.release()
        if not part_path(final).exists():
            with contextlib.suppress(OSError):
                lock_path(final).unlink()


def _expected_digest(remote: RemoteFile) -> tuple[str, str] | None:
    if remote.sha256:
        return ("sha256", remote.sha256)
    if remote.etag and _GIT_SHA1_RE.match(remote.etag) and remote.size is not None:
        return ("git-sha1", remote.etag)
    return None


class _Transfer:
    """One download of `remote` into `final`, run while holding its lock.

    The stages (keep what an earlier run left, check the disk, fetch, verify, install) are
    methods sharing the open part file, the running hashes and the byte counts. Closing the
    file and the progress line, and saving a checkpoint when the transfer stops early, are
    registered once on an ExitStack, so every way out of the fetch cleans up the same way.
    """

    file: io.FileIO  # the part file, open while fetching
    state: PartState
    hashes: _Hashes

    def __init__(
        self, remote: RemoteFile, final: Path, settings: _Settings, note: Callable[[str], None]
    ) -> None:
        self.remote, self.final, self.settings, self.note = remote, final, settings, note
        self.part, self.sidecar = part_path(final), state_path(final)
        self.notes: list[str] = []
        self.expected = _expected_digest(remote)
        self.git_size = remote.size if self.expected and self.expected[0] == "git-sha1" else None
        self.block_size = settings.block_size
        self.progress: Any = None
        self.offset = self.resumed_from = self.last_cp = 0
        self.fetched = self.failures = self.total_retries = 0

    def tell(self, msg: str) -> None:
        """A note the caller sees now and that the result keeps."""
        self.notes.append(msg)
        self.note(msg)

    def run(self) -> DownloadResult:
        self._keep_verified_prefix()
        self._check_free_space()
        self.state.url, self.state.commit = self.remote.url, self.remote.commit
        self._write_state()
        try:
            with contextlib.ExitStack() as stack:
                self._open(stack)
                self._fetch()
                self.file.flush()
                os.fsync(self.file.fileno())
            self._verify()
        except VerificationError:
            discard_partial(self.final)
            raise
        except KeyboardInterrupt:
            raise DownloadInterrupted(self.part, self.offset, self.remote.size) from None
        return self._install()

    # ----------------------------------------------------------------------- before the transfer

    def _keep_verified_prefix(self) -> None:
        """Decide what, if anything, of an earlier run we keep: the prefix that still hashes
        to its checkpoint, of a partial download of this very file."""
        state = read_state(self.final)
        if self.part.exists() and state is None:
            self.tell("found a partial file without its checkpoint; starting over")
            discard_partial(self.final)
        elif state is not None and (
            state.identity != self.remote.identity or state.size != self.remote.size
        ):
            self.tell("the file on the Hub changed since the partial download; starting over")
            discard_partial(self.final)
            state = None
        if state is None:
            state = PartState.new(self.remote, self.settings.block_size)
        self.state = state
        self.block_size = state.checkpoint.block_size  # a resumed part keeps its block size
        self.hashes = _Hashes(self.block_size, self.git_size)
        if self.part.exists() and self.part.stat().st_size > 64 * 1024 * 1024:
            self.note(f"checking the {human_bytes(self.part.stat().st_size)} downloaded before")
        offset = 0
        if self.part.exists():
            offset = _verify_existing(self.part, state.checkpoint, self.hashes, self.tell)
        if offset != state.checkpoint.size:
            # Keep only the verified prefix; the hashes object already holds exactly that prefix.
            state.checkpoint = self.hashes.checkpoint(offset)
        self.offset = self.resumed_from = self.last_cp = offset
        if offset:
            self.tell(f"resuming at {human_bytes(offset)} of {human_bytes(self.remote.size or 0)}")

    def _check_free_space(self) -> None:
        """Room on disk for the rest (a full disk mid-transfer is a worse way to learn it)."""
        if self.remote.size is None:
            return
        need = self.remote.size - self.offset
        free = shutil.disk_usage(self.final.parent).free
        if need > free:
            raise DownloadError(
                f"{self.final.parent}: not enough free disk space for {self.final.name} "
                f"(needs {human_bytes(need)} more, {human_bytes(free)} free); free some space "
                "or choose another --models-dir."
            )

    def _write_state(self) -> None:
        self.state.updated = _now()
        write_text_atomic(self.sidecar, self.state.to_json())

    def _open(self, stack: contextlib.ExitStack) -> None:
        """Open the progress line and the part file, to be closed (in that order reversed) by
        `stack`, which also checkpoints what is on disk if the fetch stops early."""
        factory = self.settings.progress_factory
        if factory is not None:
            self.progress = factory(self.final.name, self.remote.size, self.offset)
            stack.callback(self.progress.close)
        # Unbuffered: `offset` counts only bytes the OS took, so when a write fails (disk full,
        # file size limit) the checkpoint saved on the way out covers exactly what is in the file.
        mode = "r+b" if self.part.exists() else "w+b"
        self.file = stack.enter_context(open(self.part, mode, buffering=0))  # noqa: SIM115
        stack.push(self._checkpoint_on_error)
        self.file.truncate(self.offset)
        self.file.seek(self.offset)

    def _checkpoint_on_error(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        """However the fetch stops early, the bytes on disk stay resumable — unless they are
        known to be wrong, and are about to be discarded."""
        if exc is not None and not isinstance(exc, VerificationError):
            with contextlib.suppress(Exception):
                self._save_checkpoint()

    def _save_checkpoint(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.state.checkpoint = self.hashes.checkpoint(self.offset)
        self._write_state()
        self.last_cp = self.offset

    # ----------------------------------------------------------------------- the transfer

    def _fetch(self) -> None:
        """GET the rest of the file, reconnecting with a Range request after every failure."""
        import httpx2
        from huggingface_hub.utils import build_hf_headers

        headers = build_hf_headers(token=self.settings.token)
        headers["Accept-Encoding"] = "identity"  # Range offsets must be in bytes of the file
        timeout = httpx2.Timeout(self.settings.read_timeout, connect=self.settings.connect_timeout)
        while self.remote.size is None or self.offset < self.remote.size:
            try:
                self._fetch_once(headers, timeout)
                return
            except (httpx2.TransportError, _Transient) as exc:
                self._back_off(exc)

    def _fetch_once(self, headers: dict[str, str], timeout: Any) -> None:
        """One GET from `offset` on; raises _Transient when it ends before the file does."""
        from huggingface_hub import get_session

        req_headers = dict(headers)
        if self.offset:
            req_headers["Range"] = f"bytes={self.offset}-"
        with get_session().stream(
            "GET", self.remote.url, headers=req_headers, timeout=timeout
        ) as resp:
            if not self._accept(resp):
                return
            self._write_body(resp)
        if self.remote.size is not None and self.offset < self.remote.size:
            raise _Transient("the connection ended before the end of the file")

    def _accept(self, resp: Any) -> bool:
        """Whether the response carries bytes to write; raises for statuses worth retrying
        (_Transient) and for refusals (huggingface-hub's HTTP errors)."""
        from huggingface_hub.utils import hf_raise_for_status

        status = resp.status_code
        if status in RETRY_STATUS:
            raise _Transient(f"HTTP {status} from the server", _retry_after(resp.headers))
        if status == 416 and self.remote.size is not None:
            return False  # our Range starts at or past the end: nothing more to fetch
        if status >= 400:
            resp.read()
            hf_raise_for_status(resp)
        if self.offset and status == 200:
            self.tell("the server ignored the Range request; downloading from the start")
            self.offset = self.last_cp = 0
            self.file.seek(0)
            self.file.truncate(0)
            self.hashes = _Hashes(self.block_size, self.git_size)
            if self.progress is not None:
                self.progress.restart(0)
        elif self.offset and status == 206:
            start = _content_range_start(resp.headers.get("Content-Range"))
            if start != self.offset:
                raise _Transient(
                    f"server answered Range {self.offset}- with {resp.headers.get('Content-Range')}"
                )
        return True

    def _write_body(self, resp: Any) -> None:
        size = self.remote.size
        # Chunks as they arrive (no re-chunking buffer): nothing is lost on a drop.
        for chunk in resp.iter_bytes():
            if not chunk:
                continue
            if size is not None and self.offset + len(chunk) > size:
                raise VerificationError(
                    f"{self.final.name}: the server sent more than the {size} bytes the Hub "
                    f"announced for {self.remote.repo_id}/{self.remote.filename}; nothing was "
                    "installed — run the command again."
                )
            view = memoryview(chunk)
            while view:  # a raw write may take only part of the chunk
                n = self.file.write(view) or 0
                self.hashes.update(view[:n])
                self.offset += n
                self.fetched += n
                view = view[n:]
            self.failures = 0
            if self.progress is not None:
                self.progress.update(len(chunk))
            if self.offset - self.last_cp >= self.block_size:
                self._save_checkpoint()

    def _back_off(self, exc: Exception) -> None:
        """Checkpoint, then wait before the next attempt — or give up after `retries` failures
        in a row without progress."""
        retries = self.settings.retries
        self.failures += 1
        self.total_retries += 1
        reason = _describe(exc)
        if self.failures > retries:
            self._save_checkpoint()
            raise DownloadError(
                f"{self.final.name}: giving up after {retries} retries without progress "
                f"({reason}); {human_bytes(self.offset)} of "
                f"{human_bytes(self.remote.size or 0)} are kept in {self.part} — run the same "
                "command again to resume."
            ) from exc
        retry_after = exc.retry_after if isinstance(exc, _Transient) else None
        wait = min(self.settings.max_wait, self.settings.base_wait * 2 ** (self.failures - 1))
        wait = wait * (0.5 + random.random() / 2)  # jitter: clients don't retry in step
        if retry_after is not None:
            wait = min(max(wait, retry_after), self.settings.max_wait)
        self._save_checkpoint()
        self.tell(
            f"{reason}; retrying in {wait:.1f}s (attempt {self.failures}/{retries}), "
            f"{human_bytes(self.offset)} kept"
        )
        self.settings.sleep(wait)

    # ----------------------------------------------------------------------- after the transfer

    def _verify(self) -> None:
        """The size and digest the Hub published, or VerificationError (the caller discards)."""
        if self.remote.size is not None and self.offset != self.remote.size:
            raise VerificationError(
                f"{self.final.name}: got {self.offset} bytes, the Hub announced "
                f"{self.remote.size}; the download was discarded and nothing was installed — "
                "run the command again."
            )
        if self.expected is None:
            self.tell("the Hub gave no checksum for this file: only its size was checked")
            return
        kind, want = self.expected
        digest = self.hashes.full if kind == "sha256" else self.hashes.git  # set for git-sha1
        got = digest.hexdigest()  # type: ignore[union-attr]
        if got != want:
            raise VerificationError(
                f"{self.final.name}: downloaded bytes do not match the Hub's {kind} "
                f"(expected {want[:16]}…, got {got[:16]}…); the download was discarded and "
                "nothing was installed — run the command again to download it afresh."
            )

    def _install(self) -> DownloadResult:
        os.replace(self.part, self.final)
        _fsync_dir(self.final.parent)
        with contextlib.suppress(FileNotFoundError):
            self.sidecar.unlink()
        return DownloadResult(
            path=self.final,
            size=self.offset,
            sha256=self.hashes.full.hexdigest(),
            fetched=self.fetched,
            resumed_from=self.resumed_from,
            retries=self.total_retries,
            notes=self.notes,
        )


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value or "")
    return int(m.group(1)) if m else None


def _fsync_dir(path: Path) -> None:
    """Make the rename durable (POSIX); Windows has no directory handles to sync."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
