"""`seachat models`, `rm`, `pull` and `publish`: the model library on disk and on the Hub.

Kept thin: listing lives in app/library/catalog.py, downloading in app/hub/pull.py and
download.py, the model card in app/hub/card.py and uploading in app/hub/publish.py. Imports
of huggingface-hub happen inside the commands so that `seachat models` starts in a blink.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from seachat.app.cli.options import models_dir_option
from seachat.convert.errors import UserError

if TYPE_CHECKING:
    from seachat.app.hub.pull import PullOptions
    from seachat.app.hub.repo import PullSpec
    from seachat.app.library.catalog import BrokenModel, PartialDownload
    from seachat.app.library.model_info import ModelInfo
    from seachat.app.text.progress import TransferProgress

# --------------------------------------------------------------------------- models


def _languages_label(langs: tuple[str, ...], limit: int = 5) -> str:
    from seachat.app.text.languages import iso_codes

    codes = iso_codes(langs)
    if len(codes) > limit:
        return ", ".join(codes[:limit]) + f" +{len(codes) - limit}"
    return ", ".join(codes) or "-"


@click.command()
@models_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
@click.option(
    "--ctx",
    "n_ctx",
    type=click.IntRange(min=256),
    default=None,
    help="Context length to plan RAM for (default 4096).",
)
@click.option("--from", "peer", metavar="URL", help="List what a `seachat share` peer offers.")
@click.option("--token", default=None, help="With --from: the token the peer's share needs.")
def models(
    models_dir: Path | None, as_json: bool, n_ctx: int | None, peer: str | None, token: str | None
) -> None:
    """List the GGUF models in the library, unreadable files, and unfinished downloads."""
    if peer:
        return _peer_models(peer, token, as_json)
    from seachat.app.library.catalog import list_models, list_partials
    from seachat.app.library.model_info import PLANNING_CONTEXT, available_ram
    from seachat.app.paths import models_dir as resolve_dir
    from seachat.convert.units import human_bytes

    root = resolve_dir(models_dir)
    good, broken = list_models(directory=root)
    partials = list_partials(root)
    free = available_ram()
    ctx = n_ctx or PLANNING_CONTEXT

    if as_json:
        click.echo(
            json.dumps(
                _listing_json(root, good, broken, partials, free, ctx), indent=2, ensure_ascii=False
            )
        )
        return

    click.echo(f"Models in {root} (free RAM {human_bytes(free)}, planned for {ctx} tokens)")
    if not good and not broken and not partials:
        click.echo(
            "  none yet: `seachat pull OWNER/REPO:Q4_K_M` downloads one, or copy .gguf files here."
        )
        return
    if good:
        click.echo(_models_table(good, free, ctx))
    if broken:
        click.echo("\nUnreadable (not listed above; remove with `seachat rm FILE`):")
        for b in broken:
            reason = b.reason.removeprefix(f"{b.path}: ")
            click.echo(f"  {b.path.name}  broken: {reason}")
    if partials:
        click.echo("\nUnfinished downloads:")
        for p in partials:
            have = human_bytes(p.have)
            of = f" of {human_bytes(p.total)} ({p.percent:.0f}%)" if p.total else ""
            hint = f"resume: {p.resume_command}" if p.resume_command else "no resume record"
            click.echo(f"  {p.part.name}  {have}{of}  {hint}")


def _peer_models(url: str, token: str | None, as_json: bool) -> None:
    from seachat.app.share.peer import peer_index
    from seachat.app.text.table import render
    from seachat.convert.units import human_bytes

    index = peer_index(url, token)
    if as_json:
        click.echo(json.dumps(index, indent=2, ensure_ascii=False))
        return
    click.echo(f"Models shared by {url}:")
    rows = [[m["name"], m["file"], human_bytes(m["size"])] for m in index]
    click.echo(render(["name", "file", "size"], rows))
    if index:
        click.echo(f"\npull one: seachat pull --from {url} {index[0]['file']}")


def _listing_json(
    root: Path,
    good: list[ModelInfo],
    broken: list[BrokenModel],
    partials: list[PartialDownload],
    free: int,
    ctx: int,
) -> dict[str, object]:
    """`seachat models --json`: every field a script needs, the RAM plan for `ctx` included."""
    from seachat.app.library.catalog import read_source

    return {
        "models_dir": str(root),
        "available_ram": free,
        "models": [
            {
                "file": info.path.name,
                "path": str(info.path),
                "name": info.name,
                "architecture": info.architecture,
                "parameters": info.n_params,
                "size_label": info.params_label,
                "quantization": info.quantization,
                "profile": info.profile,
                "size": info.file_size,
                "languages": list(info.languages),
                "ram_needed": info.ram_needed(ctx),
                "fits_in_ram": info.fits_in_ram(ctx, free),
                "source": (
                    {"repo_id": src.repo_id, "filename": src.filename, "commit": src.commit}
                    if (src := read_source(info.path))
                    else None
                ),
            }
            for info in good
        ],
        "broken": [{"path": str(b.path), "reason": b.reason} for b in broken],
        "partial_downloads": [
            {
                "path": str(p.part),
                "have": p.have,
                "total": p.total,
                "repo_id": p.repo_id,
                "filename": p.filename,
                "resume": p.resume_command,
            }
            for p in partials
        ],
    }


def _models_table(good: list[ModelInfo], free: int, ctx: int) -> str:
    from seachat.app.text.table import render
    from seachat.convert.units import human_bytes

    rows = []
    for info in good:
        quant = f"{info.profile} ({info.quantization})" if info.profile else info.quantization
        need = info.ram_needed(ctx)
        fits = "yes" if need <= free else f"no, needs {human_bytes(need)}"
        rows.append(
            [
                info.name,
                info.architecture,
                info.params_label,
                quant,
                human_bytes(info.file_size),
                _languages_label(info.languages),
                fits,
                info.path.name,
            ]
        )
    return render(
        ["NAME", "ARCH", "PARAMS", "QUANT", "SIZE", "LANGUAGES", "FITS", "FILE"],
        rows,
        max_widths=[32, 12, 8, 26, 10, 28, 24, 60],
        right=[False, False, True, False, True, False, False, False],
        indent="  ",
    )


# --------------------------------------------------------------------------- rm


@click.command()
@click.argument("name")
@models_dir_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def rm(name: str, models_dir: Path | None, yes: bool) -> None:
    """Remove a model (or an unfinished download) from the library.

    NAME is a file name as `seachat models` shows it (with or without .gguf), a model's name,
    or FILE.gguf.part for an unfinished download.
    """
    from seachat.app.hub.download import lock_path, state_path
    from seachat.app.library.catalog import model_files, remove_source
    from seachat.app.paths import models_dir as resolve_dir
    from seachat.convert.units import human_bytes

    root = resolve_dir(models_dir)
    targets = _match_for_rm(name, root)
    if not targets:
        raise UserError(f"{name}: no such model in {root}; `seachat models` lists what is there.")
    if len(targets) > 1:
        names = ", ".join(t.name for t in targets)
        raise UserError(f"{name} matches several files ({names}); give the exact file name.")
    target = targets[0]
    files = [target] if target.name.endswith(".part") else model_files(target)
    files = [f for f in files if f.exists()]
    size = sum(f.stat().st_size for f in files)
    what = f"{target}" if len(files) == 1 else f"{target} and {len(files) - 1} more parts"
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(
                f"{target}: not removed — confirmation needs a terminal; pass --yes to remove it."
            )
        if not click.confirm(f"Remove {what} ({human_bytes(size)})?", default=False):
            click.echo("Kept.")
            return
    for f in files:
        f.unlink()
        if f.name.endswith(".part"):
            final = f.with_name(f.name[: -len(".part")])
            for extra in (state_path(final), lock_path(final)):
                extra.unlink(missing_ok=True)
        else:
            remove_source(f)
    click.echo(f"Removed {what} ({human_bytes(size)}).")


def _match_for_rm(name: str, root: Path) -> list[Path]:
    from seachat.app.library.catalog import find_gguf_files, list_models

    resolved_root = root.resolve()
    p = Path(name).expanduser()
    if p.is_absolute() or len(p.parts) > 1:
        if p.is_file():
            if resolved_root not in p.resolve().parents:
                raise UserError(
                    f"{p}: not in the library ({root}); seachat rm only removes library files."
                )
            return [p]
        return []
    files = find_gguf_files(root) + sorted(root.glob("*.gguf.part"))
    wanted = name.casefold()
    exact = [f for f in files if f.name.casefold() in (wanted, wanted + ".gguf")]
    if exact:
        return exact
    good, _ = list_models(directory=root)
    return [info.path for info in good if info.name.casefold() == wanted]


# --------------------------------------------------------------------------- pull


@click.command()
@click.argument("spec", metavar="REPO[:PROFILE_OR_FILE]")
@models_dir_option
@click.option("--revision", default="main", show_default=True, help="Branch, tag or commit.")
@click.option("--offline", is_flag=True, help="Do not use the network (also: HF_HUB_OFFLINE=1).")
@click.option("--list", "list_only", is_flag=True, help="List the repository's GGUF files.")
@click.option("--token", default=None, help="Hub token (default: HF_TOKEN or `hf auth login`).")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=8,
    show_default=True,
    help="Retries in a row without progress before giving up.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the Hub to connect and answer before working offline.",
)
@click.option("--force", is_flag=True, help="Replace a different file of the same name.")
@click.option(
    "--from",
    "peer",
    metavar="URL",
    help="Pull from a laptop running `seachat share` (SPEC: a file or model name it lists).",
)
def pull(
    spec: str,
    models_dir: Path | None,
    revision: str,
    offline: bool,
    list_only: bool,
    token: str | None,
    retries: int,
    timeout: float,
    force: bool,
    peer: str | None,
) -> None:
    """Download a GGUF from the Hugging Face Hub (or a `seachat share` peer) into the library.

    REPO is OWNER/NAME; after a colon, name the file by its quantization (Q4_K_M), its
    seachat profile (sea-q4) or its exact file name. Interrupted downloads resume where they
    stopped, and every file is checked against the Hub's sha256 before it is used.
    """
    from seachat.app.hub import pull as pull_mod
    from seachat.app.hub.download import DownloadInterrupted
    from seachat.app.hub.repo import Ambiguous, choices_table, parse_spec
    from seachat.app.paths import models_dir as resolve_dir
    from seachat.app.share.peer import pull_from_peer
    from seachat.convert.units import human_bytes

    parsed = None if peer else parse_spec(spec)
    root = resolve_dir(models_dir)
    options = pull_mod.PullOptions(
        revision=revision,
        offline=offline,
        token=token,
        connect_timeout=timeout,
        retries=retries,
        force=force,
    )
    bars = _Bars()
    if list_only and parsed:
        _list_repo_files(parsed, options, bars.note)
        return
    try:
        if parsed is None:
            outcome = pull_from_peer(peer, spec, root, options, bars.note, bars.new)
        else:
            outcome = pull_mod.pull(
                parsed, root, options, note=bars.note, progress_factory=bars.new
            )
    except Ambiguous as exc:
        click.echo(f"GGUF files at {peer or parsed.repo_id}:")
        click.echo(choices_table(exc.choices, exc.every_gguf))
        raise
    except DownloadInterrupted as exc:
        of = f" of {human_bytes(exc.total)}" if exc.total else ""
        bars.note(
            f"\nInterrupted: {human_bytes(exc.have)}{of} kept in {exc.part}.\n"
            f"Run `seachat pull {f'--from {peer} {spec}' if peer else parsed}` again to resume "
            "where it stopped."
        )
        raise

    if outcome.message:
        bars.note(outcome.message)
    for result, bar in zip(outcome.results, bars.made, strict=False):
        resumed = f", resumed at {human_bytes(result.resumed_from)}" if result.resumed_from else ""
        bars.note(f"{result.path.name}: sha256 verified, {bar.summary()}{resumed}")
    if outcome.paths:  # the model's path (for a split GGUF, its first part is what loads it)
        click.echo(str(outcome.paths[0]))


class _Bars:
    """The progress lines of one `seachat pull`, and notes printed without tearing them."""

    def __init__(self) -> None:
        self.made: list[TransferProgress] = []

    def new(self, label: str, total: int | None, initial: int) -> TransferProgress:
        from seachat.app.text.progress import TransferProgress

        bar = TransferProgress(label, total, initial)
        self.made.append(bar)
        return bar

    def note(self, msg: str) -> None:
        live = [bar for bar in self.made if not bar.closed]
        if live:
            live[-1].interject(msg)
        else:
            click.echo(msg, err=True)


def _list_repo_files(parsed: PullSpec, options: PullOptions, note: Callable[[str], None]) -> None:
    """`seachat pull --list`: the repository's GGUF files (split files by their first part)."""
    from seachat.app.hub import pull as pull_mod
    from seachat.app.hub.repo import choices_table

    pull_mod.quiet_hub()
    if (reason := pull_mod.offline_reason(options)) is not None:
        raise UserError(f"offline ({reason}): listing {parsed.repo_id} needs the Hub.")
    try:
        listing = pull_mod.list_repo(parsed, options, note)
    except pull_mod.HubUnreachable as exc:
        raise UserError(
            f"cannot reach {pull_mod.hub_endpoint(options)} ({exc}); listing needs the Hub."
        ) from exc
    choices = [f for f in listing.files if "-of-" not in f.filename or "00001-of" in f.filename]
    click.echo(f"GGUF files in {parsed.repo_id}:")
    click.echo(choices_table(choices, listing.every_gguf))


# --------------------------------------------------------------------------- publish


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repo", "repo_id", required=True, help="Hub repository to upload to (OWNER/NAME).")
@click.option("--dry-run", is_flag=True, help="Write the card and list the upload; send nothing.")
@click.option(
    "--base-model", default=None, help="Hub id of the original model (default: GGUF metadata)."
)
@click.option("--license", "license_id", default=None, help="License id (default: GGUF metadata).")
@click.option(
    "--language",
    "languages",
    multiple=True,
    help="Language code for the card; repeat for several (default: GGUF metadata).",
)
@click.option("--calibration", default=None, help="Describe the calibration text used.")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--token", default=None, help="Hub token (default: HF_TOKEN or `hf auth login`).")
@click.option("--message", default=None, help="Commit message.")
def publish(
    directory: Path,
    repo_id: str,
    dry_run: bool,
    base_model: str | None,
    license_id: str | None,
    languages: tuple[str, ...],
    calibration: str | None,
    private: bool,
    token: str | None,
    message: str | None,
) -> None:
    """Upload the GGUF files in DIRECTORY to the Hub with a generated model card (README.md)."""
    from seachat.app.hub.card import CardOverrides
    from seachat.app.hub.publish import publish as do_publish

    overrides = CardOverrides(
        base_model=base_model,
        license=license_id,
        languages=list(languages) or None,
        calibration=calibration,
    )
    do_publish(
        directory,
        repo_id,
        overrides=overrides,
        dry_run=dry_run,
        private=private,
        token=token,
        commit_message=message,
        echo=click.echo,
    )
