"""`seachat pull`: from a Hub repository name to a verified GGUF in the library.

The network is treated as unreliable by default. The first contact with the Hub uses a short
connect timeout and is not retried on connection failures: if the Hub cannot be reached we say
so at once and fall back to what the library already holds. Once the Hub has answered, the
transfer itself retries with backoff (see hub_download), because a link that worked a second
ago is worth waiting for.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seachat.app.hub import download as hub_download
from seachat.app.hub.repo import (
    PullSpec,
    RepoGGUF,
    all_ggufs_in,
    choose,
    ggufs_in,
    split_parts,
)
from seachat.app.library.catalog import (
    ModelSource,
    find_gguf_files,
    read_source,
    write_source,
)
from seachat.convert.errors import UserError
from seachat.convert.units import human_bytes


class HubUnreachable(Exception):
    """The Hub could not be asked (offline mode, no network, DNS, timeouts, 5xx)."""


@dataclass
class PullOptions:
    revision: str = "main"
    offline: bool = False
    token: str | bool | None = None
    endpoint: str | None = None
    # Budget for each request's connection and for the Hub's answers to listing and metadata
    # calls: what being offline costs at most before we say so.
    connect_timeout: float = 5.0
    # How long a transfer may stall mid-file before we reconnect and continue with Range.
    read_timeout: float = 20.0
    retries: int = 8
    base_wait: float = 1.0
    force: bool = False
    block_size: int = hub_download.CHECKPOINT_BLOCK


@dataclass
class PullOutcome:
    paths: list[Path]
    status: str  # "downloaded", "up-to-date", "offline-local"
    results: list[hub_download.DownloadResult] = field(default_factory=list)
    message: str = ""


@dataclass(frozen=True)
class RepoListing:
    repo_id: str
    commit: str | None
    files: list[RepoGGUF]  # model GGUFs (no projectors)
    every_gguf: list[RepoGGUF]


def quiet_hub() -> None:
    """Keep huggingface-hub from making network calls of its own before ours.

    Unless the user chose otherwise, its telemetry stays off: with telemetry on, the first
    request of a process also fetches an "agent harness" registry from the Hub with a 3-second
    timeout — 3 extra seconds of waiting on a dead link before we can say we are offline.
    """
    import os

    from huggingface_hub import constants

    if "HF_HUB_DISABLE_TELEMETRY" not in os.environ:
        constants.HF_HUB_DISABLE_TELEMETRY = True


def hub_endpoint(options: PullOptions) -> str:
    from huggingface_hub import constants

    return (options.endpoint or constants.ENDPOINT).rstrip("/")


def offline_reason(options: PullOptions) -> str | None:
    from huggingface_hub import constants

    if options.offline:
        return "--offline was given"
    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    return None


def _is_unreachable(exc: BaseException) -> bool:
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled

    return isinstance(
        exc, (httpx2.ConnectError, httpx2.TimeoutException, httpx2.ProxyError, OfflineModeIsEnabled)
    )


def list_repo(spec: PullSpec, options: PullOptions, note: Callable[[str], None]) -> RepoListing:
    """One call to the model-info API with file sizes and LFS sha256 (files_metadata=True).

    Server trouble (429/5xx, a connection reset after connecting) is retried a few times;
    failure to connect at all is not — that is what being offline looks like.
    """
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = HfApi(endpoint=hub_endpoint(options), token=options.token)
    timeout = httpx2.Timeout(options.connect_timeout)  # connect, and the Hub's answer
    attempts = min(options.retries, 3) + 1
    for attempt in range(1, attempts + 1):
        try:
            info = api.model_info(
                spec.repo_id,
                revision=options.revision,
                files_metadata=True,
                timeout=timeout,  # type: ignore[arg-type]  # httpx2 takes a Timeout object
            )
            break
        except GatedRepoError as exc:
            raise _gated(spec, options) from exc
        except RevisionNotFoundError as exc:
            raise UserError(
                f"{spec.repo_id} has no revision {options.revision!r}; check --revision."
            ) from exc
        except RepositoryNotFoundError as exc:
            raise UserError(
                f"{spec.repo_id}: no such model repository on the Hub (if it is private, log "
                "in with `hf auth login` or set HF_TOKEN)."
            ) from exc
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status is not None and status not in hub_download.RETRY_STATUS:
                raise UserError(
                    f"{spec.repo_id}: the Hub refused the request (HTTP {status}); check the "
                    "repository name and your token (behind a captive portal or proxy, sign in "
                    "to the network first)."
                ) from exc
            if attempt == attempts:
                raise HubUnreachable(f"the Hub answered HTTP {status}") from exc
            note(f"the Hub answered HTTP {status}; retrying ({attempt}/{attempts - 1})")
        except Exception as exc:
            if _is_unreachable(exc):
                raise HubUnreachable(_short(exc)) from exc
            if isinstance(exc, (ValueError, KeyError, TypeError)):
                # 200 with a web page or odd JSON: a captive portal or proxy answered.
                raise HubUnreachable(
                    "the answer was not from the Hub; behind a captive portal or proxy, sign "
                    "in to the network first"
                ) from exc
            if isinstance(exc, httpx2.TransportError) and attempt < attempts:
                note(f"{_short(exc)}; retrying ({attempt}/{attempts - 1})")
            elif isinstance(exc, httpx2.TransportError):
                raise HubUnreachable(_short(exc)) from exc
            else:
                raise
        time.sleep(options.base_wait * 2 ** (attempt - 1))
    siblings = []
    for s in info.siblings or []:
        sha = s.lfs.sha256 if s.lfs else None
        size = s.lfs.size if s.lfs else s.size
        siblings.append((s.rfilename, size, sha))
    return RepoListing(spec.repo_id, info.sha, ggufs_in(siblings), all_ggufs_in(siblings))


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{name}: {text}" if text else name


# --------------------------------------------------------------------------- local copies


def local_copies(spec: PullSpec, models: Path) -> list[tuple[Path, ModelSource | None]]:
    """Library files that satisfy `spec` without the network: files pulled from the same
    repository (matched like a remote listing), or a file named exactly as the selector."""
    from_repo: list[tuple[Path, ModelSource]] = []
    by_name: list[tuple[Path, ModelSource | None]] = []
    for path in find_gguf_files(models):
        src = read_source(path)
        if src is not None and src.repo_id.casefold() == spec.repo_id.casefold():
            from_repo.append((path, src))
        elif spec.selector and path.name.casefold() == Path(spec.selector).name.casefold():
            by_name.append((path, src))
    if from_repo:
        files = [RepoGGUF(src.filename, src.size, src.sha256) for _, src in from_repo]
        try:
            picked = choose(spec, files, files)
        except UserError:
            picked = None
        if picked is not None:
            return [(p, s) for p, s in from_repo if s.filename == picked.filename]
    return by_name


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- the command's core


def pull(
    spec: PullSpec,
    models: Path,
    options: PullOptions,
    *,
    note: Callable[[str], None],
    progress_factory: Callable[[str, int | None, int], Any] | None = None,
) -> PullOutcome:
    quiet_hub()
    reason = offline_reason(options)
    listing: RepoListing | None = None
    if reason is None:
        try:
            listing = list_repo(spec, options, note)
        except HubUnreachable as exc:
            reason = f"cannot reach {hub_endpoint(options)} ({exc})"
    if listing is None:
        return _pull_offline(spec, models, str(reason))

    choice = choose(spec, listing.files, listing.every_gguf)  # Ambiguous lists the choices
    parts = split_parts(choice, listing.every_gguf)
    outcome = PullOutcome(paths=[], status="up-to-date")
    for part in parts:
        path, result = _pull_one(spec, part, listing, models, options, note, progress_factory)
        outcome.paths.append(path)
        if result is not None:
            outcome.results.append(result)
            outcome.status = "downloaded"
    return outcome


def _pull_offline(spec: PullSpec, models: Path, reason: str) -> PullOutcome:
    copies = local_copies(spec, models)
    if len(copies) == 1:
        path, src = copies[0]
        origin = f"from {src.repo_id}, sha256 verified {src.downloaded[:10]}" if src else ""
        return PullOutcome(
            paths=[path],
            status="offline-local",
            message=f"offline ({reason}): using the copy already in the library: {path}"
            + (f" ({origin})" if origin else ""),
        )
    if len(copies) > 1:
        names = ", ".join(p.name for p, _ in copies)
        raise UserError(
            f"offline ({reason}): several local files match {spec}: {names}; name one exactly."
        )
    partial = _partial_hint(spec, models)
    raise UserError(
        f"offline ({reason}): {spec} is not in the library ({models}) and the Hub cannot be "
        f"asked.{partial} Connect to the network (or unset HF_HUB_OFFLINE) and run "
        f"`seachat pull {spec}` again; `seachat models` lists what is available offline."
    )


def _partial_hint(spec: PullSpec, models: Path) -> str:
    from seachat.app.library.catalog import list_partials

    for p in list_partials(models):
        if p.repo_id and p.repo_id.casefold() == spec.repo_id.casefold():
            pct = f" ({p.percent:.0f}%)" if p.percent is not None else ""
            return f" A partial download{pct} is kept at {p.part} and will resume."
    return ""


def _gated(spec: PullSpec, options: PullOptions) -> UserError:
    return UserError(
        f"{spec.repo_id} is gated: accept its terms at {hub_endpoint(options)}/"
        f"{spec.repo_id}, then log in with `hf auth login` (or set HF_TOKEN)."
    )


def _pull_one(
    spec: PullSpec,
    file: RepoGGUF,
    listing: RepoListing,
    models: Path,
    options: PullOptions,
    note: Callable[[str], None],
    progress_factory: Callable[[str, int | None, int], Any] | None,
) -> tuple[Path, hub_download.DownloadResult | None]:
    """One file into the library, unless the copy already there is this very file."""
    final = models / file.basename
    remote = _resolve(spec, file, listing, options)
    if final.exists() and _already_here(final, spec, remote, listing, options, note):
        return final, None
    state = hub_download.read_state(final)
    if state is not None and state.repo_id.casefold() != spec.repo_id.casefold():
        raise UserError(
            f"{hub_download.part_path(final)}: this partial download is from {state.repo_id}, "
            f"not {spec.repo_id}; resume it with `seachat pull {state.repo_id}:{state.filename}` "
            f"or remove it with `seachat rm {hub_download.part_path(final).name}`."
        )
    note(
        f"downloading {spec.repo_id}/{file.filename} ({human_bytes(remote.size or 0)}) "
        f"into {models}"
    )
    result = _download(spec, remote, final, options, note, progress_factory)
    _record(final, remote, listing, options)
    return final, result


def _resolve(
    spec: PullSpec, file: RepoGGUF, listing: RepoListing, options: PullOptions
) -> hub_download.RemoteFile:
    """The file's sha256, size and commit as the Hub vouches for them now."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    try:
        return hub_download.resolve_remote_file(
            spec.repo_id,
            file.filename,
            options.revision,
            commit=listing.commit,
            endpoint=hub_endpoint(options),
            token=options.token,
            timeout=options.connect_timeout,
            expected_sha256=file.sha256,
            expected_size=file.size,
        )
    except GatedRepoError as exc:
        raise _gated(spec, options) from exc
    except HfHubHTTPError as exc:
        raise UserError(
            f"{spec.repo_id}/{file.filename}: the Hub refused it ({_short(exc)})"
        ) from exc
    except Exception as exc:
        if _is_unreachable(exc) or type(exc).__module__.startswith("httpx2"):
            raise UserError(
                f"{spec.repo_id}/{file.filename}: lost the connection to the Hub ({_short(exc)}); "
                "run the command again."
            ) from exc
        raise


def _already_here(
    final: Path,
    spec: PullSpec,
    remote: hub_download.RemoteFile,
    listing: RepoListing,
    options: PullOptions,
    note: Callable[[str], None],
) -> bool:
    """Whether the library file at `final` is `remote` already (then nothing is downloaded).

    A file of another origin under the same name is replaced only with --force, unless its
    bytes turn out to be the Hub's (then its source record is written and it is kept).
    """
    src = read_source(final)
    same_origin = src is not None and (src.repo_id, src.filename) == (
        spec.repo_id,
        remote.filename,
    )
    if same_origin and src.sha256 == remote.sha256 and src.size == final.stat().st_size:
        note(f"{final.name} is already in the library and up to date")
        return True
    if not same_origin and not options.force:
        if remote.size == final.stat().st_size and remote.sha256:
            note(f"{final.name} is already in the library; checking its sha256")
            if _sha256_of(final) == remote.sha256:
                _record(final, remote, listing, options)
                return True
        raise UserError(
            f"{final}: a different file with this name is already in the library; remove it "
            f"(seachat rm {final.name}) or pass --force to replace it."
        )
    if same_origin:
        note(f"the Hub has a newer {final.name}; the current copy stays until it is replaced")
    return False


def _download(
    spec: PullSpec,
    remote: hub_download.RemoteFile,
    final: Path,
    options: PullOptions,
    note: Callable[[str], None],
    progress_factory: Callable[[str, int | None, int], Any] | None,
) -> hub_download.DownloadResult:
    """hub_download.download, with its refusals and disk errors said as what to do next."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    try:
        return hub_download.download(
            remote,
            final,
            token=options.token,
            retries=options.retries,
            base_wait=options.base_wait,
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
            block_size=options.block_size,
            progress_factory=progress_factory,
            note=note,
        )
    except GatedRepoError as exc:
        raise _gated(spec, options) from exc
    except HfHubHTTPError as exc:
        raise UserError(
            f"{final.name}: the server refused the download ({_short(exc)}); what was "
            f"downloaded is kept in {hub_download.part_path(final)} — run the command again."
        ) from exc
    except OSError as exc:  # disk full, permissions, a vanished folder
        raise UserError(
            f"{hub_download.part_path(final)}: cannot write ({exc.strerror or exc}); fix that "
            "(free space, permissions) and run the command again to resume."
        ) from exc


def _record(
    final: Path, remote: hub_download.RemoteFile, listing: RepoListing, options: PullOptions
) -> None:
    from datetime import datetime, timezone

    write_source(
        final,
        ModelSource(
            repo_id=remote.repo_id,
            filename=remote.filename,
            revision=options.revision,
            commit=remote.commit or listing.commit,
            sha256=remote.sha256,
            size=final.stat().st_size,
            downloaded=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            endpoint=hub_endpoint(options),
        ),
    )
