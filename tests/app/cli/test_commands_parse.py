"""Every `seachat …` command we show people parses: the welcome screen's and README.md's.

A command that a user copies and click rejects (a renamed option, an argument that became
`REPO:FILE`) is a bug in the docs. Each command is parsed by click as `seachat` would parse it
(the real group, the real subcommand, `resilient_parsing=False`) but never run. Paths that the
command requires to exist are created, empty, in a scratch folder first.
"""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import click
import pytest

from seachat.app.cli import cli
from seachat.app.tui.screens import WELCOME_COMMANDS
from tests.conftest import REPO_ROOT

# Sample values for the <placeholders> of the welcome screen's commands.
SAMPLES = {
    "owner/repo": "bartowski/SmolLM2-135M-Instruct-GGUF",
    "file.gguf": "SmolLM2-135M-Instruct-Q4_K_M.gguf",
    "checkpoint-dir": "./SeaLLM-7B-v2.5",
    "profile": "sea-q4",
    "model.gguf": "model-sea-q4.gguf",
}
SHELL_OPERATORS = {"&&", "||", "|", ";"}


def fill_placeholders(command: str) -> str:
    def sample(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in SAMPLES, f"no sample value for <{name}> in {command!r}: add one to SAMPLES"
        return SAMPLES[name]

    return re.sub(r"<([^<>]+)>", sample, command)


def readme_commands() -> list[str]:
    """The `seachat …` command lines of README.md's ```sh blocks (comments dropped)."""
    commands: list[str] = []
    in_sh = False
    for line in (REPO_ROOT / "README.md").read_text("utf-8").splitlines():
        if line.startswith("```"):
            in_sh = line.strip() == "```sh"
            continue
        if not in_sh:
            continue
        tokens = shlex.split(line, comments=True)
        if "seachat" not in tokens:
            continue
        tokens = tokens[tokens.index("seachat") :]
        end = next((i for i, t in enumerate(tokens) if t in SHELL_OPERATORS), len(tokens))
        commands.append(shlex.join(tokens[:end]))
    return commands


def expand_optional(tokens: list[str]) -> list[list[str]]:
    """Every variant of a usage line's `[…]` groups: left out, or each alternative written out.

    `[--json -|--beside]` is `--json -` or `--beside`; in `[--calibration DIR|FILE]` an
    alternative that is not an option replaces the last word: `--calibration FILE`.
    """
    choices: list[list[list[str]]] = []
    i = 0
    while i < len(tokens):
        if not tokens[i].startswith("["):
            choices.append([[tokens[i]]])
            i += 1
            continue
        j = next(k for k in range(i, len(tokens)) if tokens[k].endswith("]"))
        alternatives: list[list[str]] = []
        for alt in " ".join(tokens[i : j + 1])[1:-1].split("|"):
            words = alt.split()
            if alternatives and not words[0].startswith("-"):
                words = alternatives[-1][:-1] + words
            alternatives.append(words)
        choices.append([[], *alternatives])
        i = j + 1
    return [[w for part in combo for w in part] for combo in itertools.product(*choices)]


def create_required_paths(command: click.Command, ctx: click.Context, args: list[str]) -> None:
    """Create, empty, the paths among `args` that `command` requires to exist."""
    opts, _, _ = command.make_parser(ctx).parse_args(list(args))
    for param in command.params:
        kind, raw = param.type, opts.get(param.name)
        if not (isinstance(kind, click.Path) and kind.exists) or raw is None:
            continue
        for value in raw if isinstance(raw, (list, tuple)) else [raw]:
            path = Path(value)
            if value == "-" or path.exists():
                continue
            if not kind.file_okay or value.endswith("/"):
                path.mkdir(parents=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()


def parse(command_line: str) -> None:
    """Parse `command_line` as the `seachat` executable would, without running it."""
    words = shlex.split(command_line)
    assert words[0] == "seachat", command_line
    args = words[1:]
    with cli.make_context("seachat", list(args), resilient_parsing=False) as group_ctx:
        name, command, rest = cli.resolve_command(group_ctx, list(args))
        assert command is not None and name is not None, command_line
        probe = click.Context(command, info_name=name, parent=group_ctx)
        create_required_paths(command, probe, rest)
        command.make_context(name, list(rest), parent=group_ctx, resilient_parsing=False)


@pytest.mark.parametrize("command", WELCOME_COMMANDS)
def test_welcome_screen_commands_parse(command: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    parse(fill_placeholders(command))


README_COMMANDS = readme_commands()


def test_readme_shows_seachat_commands() -> None:
    assert len(README_COMMANDS) >= 20  # the collector finds the blocks (a heading renamed…)


@pytest.mark.parametrize("command", README_COMMANDS)
def test_readme_commands_parse(command: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for variant in expand_optional(shlex.split(command)):
        parse(shlex.join(variant))
