"""`seachat share`, `export` and `import`: models between laptops without the internet."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from seachat.app.cli.options import models_dir_option

LAN_WARNING = (
    "listening on every network interface: anyone on this network can download these models"
)


def _note(message: str) -> None:
    click.echo(message, err=True)


@click.command()
@click.argument("names", nargs=-1, metavar="[MODEL]...")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: the whole LAN).",
)
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port (0: any free one).",
)
@click.option(
    "--limit-rate",
    default=None,
    metavar="RATE",
    help="Cap on bytes/s for all clients together, e.g. 800K or 5M.",
)
@click.option("--token", default=None, help="Require this token on every request.")
@models_dir_option
def share(names, host, port, limit_rate, token, models_dir) -> None:
    """Serve the library's complete models (or the ones named) read-only over HTTP."""
    from seachat.app.paths import models_dir as resolve_models_dir
    from seachat.app.share.offer import build_offer
    from seachat.app.share.server import RateLimit, ShareConfig, make_server, parse_rate
    from seachat.convert.errors import UserError

    limit = RateLimit(parse_rate(limit_rate)) if limit_rate else None
    models = resolve_models_dir(models_dir)
    offer = build_offer(models, names, note=_note)
    if not offer:
        raise UserError(
            f"{models}: no complete models to share; `seachat pull` or `seachat import` one first."
        )
    server = make_server(ShareConfig(offer, token=token, limit=limit), host, port)
    try:
        _announce(offer, models, host, server.server_address[1], token)
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        click.echo("seachat: stopped sharing", err=True)
    finally:
        server.server_close()


def _announce(offer, models, host: str, port: int, token: str | None) -> None:
    """What is shared, every address it is reachable at, and the command a peer runs."""
    from seachat.app.share.server import addresses
    from seachat.convert.units import human_bytes

    total = sum(f.size for f in offer.values())
    click.echo(f"sharing {len(offer)} files ({human_bytes(total)}) from {models}")
    for f in offer.values():
        click.echo(f"  {f.name}  {human_bytes(f.size)}  {f.model}")
    if host in ("0.0.0.0", ""):
        click.echo(f"warning: {LAN_WARNING}", err=True)
    urls = addresses(host, port)
    for url in urls:
        click.echo(f"listening on {url}")
    token_arg = f" --token {token}" if token else ""
    click.echo(f"on another laptop: seachat pull --from {urls[0]}{token_arg} {next(iter(offer))}")
    click.echo("Ctrl-C stops sharing.", err=True)
    sys.stdout.flush()


@click.command("export")
@click.argument("name")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@models_dir_option
def export_cmd(name, directory, models_dir) -> None:
    """Copy a model with a manifest to DIRECTORY (a USB stick, say); resumable."""
    from seachat.app.paths import models_dir as resolve_models_dir
    from seachat.app.share.carry import export_model

    folder = export_model(name, directory, resolve_models_dir(models_dir), _note)
    click.echo(f"exported to {folder}; on the other laptop: seachat import {folder}")


@click.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@models_dir_option
def import_cmd(directory, models_dir) -> None:
    """Bring exported models into the library, after checking every byte; resumable."""
    from seachat.app.paths import models_dir as resolve_models_dir
    from seachat.app.share.carry import export_folders, import_model

    models = resolve_models_dir(models_dir)
    for folder in export_folders(directory):
        manifest = import_model(folder, models, _note)
        click.echo(f"imported {manifest.model} ({len(manifest.files)} files) into {models}")
