"""`seachat publish DIR --repo ID`: GGUF files plus a generated card, in one Hub commit.

One `create_commit` with every file, so the repository never shows a card describing files
that are not there yet (or the reverse). The card is written to DIR/README.md first — also on
`--dry-run`, which is the way to read it before anything leaves the machine — but never over a
README.md that seachat did not write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from seachat.app.hub.card import (
    GENERATED_MARKER,
    CardFacts,
    CardOverrides,
    load_files,
    render_card,
    resolve_facts,
)
from seachat.convert.errors import UserError
from seachat.convert.files import write_text_atomic
from seachat.convert.quant.report import report_path
from seachat.convert.units import human_bytes


@dataclass(frozen=True)
class Upload:
    local: Path
    path_in_repo: str
    size: int


def _check_repo_id(repo_id: str) -> None:
    from seachat.app.hub.card import hub_id

    if hub_id(repo_id) != repo_id:
        raise UserError(f"--repo {repo_id!r} is not a Hub repository id; write OWNER/NAME.")


def find_ggufs(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.name.endswith(".gguf") and not p.name.startswith(".")
    )


def write_card(card_path: Path, text: str) -> None:
    """Atomically, and only over a card seachat wrote before."""
    if card_path.exists():
        existing = card_path.read_text(encoding="utf-8", errors="replace")
        if GENERATED_MARKER not in existing:
            raise UserError(
                f"{card_path}: this README.md was not written by seachat and would be replaced; "
                "move it elsewhere (its content can go in the card by hand after publishing)."
            )
    write_text_atomic(card_path, text)


def plan_uploads(directory: Path, ggufs: list[Path], card_path: Path) -> list[Upload]:
    uploads = [Upload(p, p.name, p.stat().st_size) for p in ggufs]
    for p in ggufs:
        report = report_path(p)
        if report.exists():
            uploads.append(Upload(report, report.name, report.stat().st_size))
    uploads.append(Upload(card_path, "README.md", card_path.stat().st_size))
    return uploads


def publish(
    directory: Path,
    repo_id: str,
    *,
    overrides: CardOverrides,
    dry_run: bool,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    echo: Callable[[str], None] = print,
) -> list[Upload]:
    _check_repo_id(repo_id)
    ggufs = find_ggufs(directory)
    if not ggufs:
        raise UserError(
            f"{directory}: no .gguf files to publish; write them there first "
            "(seachat convert … -o DIR/model.gguf)."
        )
    files = load_files(ggufs)
    facts = resolve_facts(files, overrides)
    card_path = directory / "README.md"
    write_card(card_path, render_card(repo_id, files, facts))
    uploads = plan_uploads(directory, ggufs, card_path)
    _tell_plan(facts, uploads, repo_id, card_path, dry_run, echo)
    if dry_run:
        echo("Dry run: nothing was uploaded.")
        return uploads
    message = commit_message or f"seachat publish: {', '.join(p.name for p in ggufs)}"
    commit_url = _upload(repo_id, uploads, card_path, private, token, message)
    echo(f"Published: {commit_url}")
    return uploads


def _tell_plan(
    facts: CardFacts,
    uploads: list[Upload],
    repo_id: str,
    card_path: Path,
    dry_run: bool,
    echo: Callable[[str], None],
) -> None:
    """Where each card fact came from, what is missing, and what will be sent."""
    for name, origin in sorted(facts.origins.items()):
        echo(f"  {name}: from {origin}")
    if not facts.base_models:
        echo("  warning: no base model in the metadata; pass --base-model OWNER/NAME")
    if not facts.languages:
        echo("  warning: no languages in the metadata; pass --language CODE (repeatable)")
    if not facts.license:
        echo("  warning: no license in the metadata; pass --license ID")

    total = sum(u.size for u in uploads)
    verb = "Would upload" if dry_run else "Uploading"
    echo(f"{verb} {len(uploads)} files ({human_bytes(total)}) to {repo_id}:")
    for u in uploads:
        echo(f"  {u.path_in_repo}  {human_bytes(u.size)}")
    echo(f"Card written to {card_path}")


def _upload(
    repo_id: str,
    uploads: list[Upload],
    card_path: Path,
    private: bool,
    token: str | None,
    message: str,
) -> str:
    """Every upload in one Hub commit; returns the commit's URL."""
    import httpx2
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    from seachat.app.hub.pull import quiet_hub

    quiet_hub()
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.create_commit(
            repo_id,
            [
                CommitOperationAdd(path_in_repo=u.path_in_repo, path_or_fileobj=str(u.local))
                for u in uploads
            ],
            commit_message=message,
            repo_type="model",
        )
    except LocalTokenNotFoundError as exc:
        raise UserError(
            f"{repo_id}: publishing needs a Hub token with write access; log in with "
            "`hf auth login` or set HF_TOKEN."
        ) from exc
    except (OfflineModeIsEnabled, httpx2.TransportError) as exc:
        raise UserError(
            f"{repo_id}: cannot reach the Hub ({type(exc).__name__}); nothing was published — "
            "run the command again when online (the card is already written)."
        ) from exc
    except ValueError as exc:
        if "Invalid metadata in README.md" not in str(exc):
            raise
        raise UserError(
            f"{card_path}: the Hub rejected the card's metadata ({' '.join(str(exc).split())}); "
            "fix the value given by flag or metadata and publish again."
        ) from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise UserError(
            f"{repo_id}: the Hub refused the upload (HTTP {status}); log in with "
            "`hf auth login` using a token with write access (or set HF_TOKEN)."
        ) from exc
    return info.commit_url
