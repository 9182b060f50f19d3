"""Finding the checkpoint: a local folder, or a Hugging Face Hub repository id.

Only the files a conversion needs are fetched (safetensors, configs, tokenizer, model card),
through huggingface-hub's cache, so a second conversion of the same repo is offline-safe.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from seachat.convert.errors import UserError

NEEDED_PATTERNS = (
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "README.md",
)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Source:
    model_dir: Path
    repo_id: str | None  # set when the checkpoint came from the Hub

    @property
    def label(self) -> str:
        return self.repo_id or str(self.model_dir)


def offline_requested() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_source(src: str, revision: str | None = None) -> Source:
    path = Path(src).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{path}: expected a checkpoint folder (with config.json), got a file")
        return Source(path, None)
    if not _REPO_ID.match(src):
        raise UserError(f"{src}: no such folder, and not a Hub repo id (owner/name)")
    return Source(_download(src, revision), src)


def _download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = offline_requested()
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(NEEDED_PATTERNS),
            local_files_only=offline,
        )
    except LocalEntryNotFoundError as exc:
        if offline:
            raise UserError(
                f"{repo_id}: HF_HUB_OFFLINE is set and this repo is not in the local Hugging Face "
                "cache; unset HF_HUB_OFFLINE to download it, or pass a local folder"
            ) from exc
        raise UserError(
            f"{repo_id}: cannot reach the Hugging Face Hub and the repo is not cached; connect "
            "to the network or pass a local checkpoint folder"
        ) from exc
    except GatedRepoError as exc:
        raise UserError(
            f"{repo_id}: gated repository; accept its licence on huggingface.co and log in "
            "with `hf auth login`"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise UserError(f"{repo_id}: no such repository on the Hub (or it is private)") from exc
    except RevisionNotFoundError as exc:
        raise UserError(f"{repo_id}: revision {revision!r} not found") from exc
    except OSError as exc:
        raise UserError(f"{repo_id}: download failed ({exc})") from exc
    return Path(folder)
