"""The `seachat` command: one module per group of subcommands (chat, convert, quant, library).

Nothing else imports the CLI: it parses arguments, calls the layers below and prints results.

Subcommands are loaded lazily from a table so that `seachat chat` does not pay for importing
the converter (and vice versa): start-up time is felt on every launch.
"""

from __future__ import annotations

import importlib
import sys

import click

# name -> (module under seachat.app, attribute, one-line help shown in `seachat --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "chat": ("cli.chat", "chat", "Chat with a GGUF model in the terminal."),
    "convert": ("cli.convert", "convert", "Convert a Hugging Face checkpoint to GGUF."),
    "quantize": ("cli.quant", "quantize", "Quantize an F16/BF16/F32 GGUF with a profile."),
    "profiles": ("cli.quant", "profiles", "List the shipped quantization profiles."),
    "eval": ("cli.quant", "evaluate", "Per-language KL divergence of a model against a reference."),
    "imatrix": ("cli.quant", "imatrix", "Compute an importance matrix from script-balanced text."),
    "tune": ("cli.quant", "tune", "Search per-tensor types that protect the worst language."),
    "models": ("cli.library", "models", "List the GGUF models in the library."),
    "rm": ("cli.library", "rm", "Remove a model from the library."),
    "pull": ("cli.library", "pull", "Download a GGUF from the Hugging Face Hub (resumable)."),
    "publish": ("cli.library", "publish", "Upload GGUF files with a generated model card."),
    "share": ("cli.share", "share", "Serve the library's models read-only to other laptops."),
    "export": ("cli.share", "export_cmd", "Copy a model with a manifest to a folder (USB stick)."),
    "import": ("cli.share", "import_cmd", "Bring exported models into the library, verified."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr, _ = entry
        module = importlib.import_module(f"seachat.app.{module_name}")
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="seachat")
def cli() -> None:
    """seachat: offline chat with multilingual models, and GGUF conversion that keeps
    Thai, Khmer, Lao, Burmese, Arabic and other scripts intact."""


def main(argv: list[str] | None = None) -> None:
    from seachat.convert.errors import UserError

    try:
        rv = cli.main(args=argv, prog_name="seachat", standalone_mode=False)
    except UserError as exc:
        click.echo(f"seachat: error: {' '.join(str(exc).split())}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("seachat: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("seachat: interrupted", err=True)
        sys.exit(130)
    if isinstance(rv, int) and rv != 0:
        sys.exit(rv)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
