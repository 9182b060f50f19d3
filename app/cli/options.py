"""Options that several commands take, declared once so that their names, defaults and help
agree everywhere (`--models-dir` for the library and chat; `--threads`/`--gpu-layers` for
every command that runs a model)."""

from __future__ import annotations

from pathlib import Path

import click

models_dir_option = click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Models directory (default: $SEACHAT_MODELS_DIR, else the seachat data directory).",
)


def llama_compute_options(command):
    """--gpu-layers and --threads, the same for every command that runs the model."""
    command = click.option(
        "--threads",
        "-t",
        type=click.IntRange(min=1),
        help="CPU threads for llama.cpp (default: one per CPU core, at most 8).",
    )(command)
    return click.option(
        "--gpu-layers",
        type=int,
        default=0,
        show_default=True,
        help="Layers to offload to the GPU (-1 = all; needs a CUDA/Metal build of llama-cpp-python).",
    )(command)


def imatrix_option(help_text: str):
    return click.option(
        "--imatrix", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=help_text
    )


def calibration_option(help_text: str):
    return click.option(
        "--calibration", type=click.Path(exists=True, path_type=Path), help=help_text
    )


def eval_text_option(help_text: str):
    """A folder of <language>.txt (or, for `eval`, one file); default the shipped text."""
    return click.option("--eval-text", type=click.Path(exists=True, path_type=Path), help=help_text)
