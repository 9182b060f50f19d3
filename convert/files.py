"""Temporary files beside their destination, renamed into place when complete.

tempfile.mkstemp creates files readable by their owner only (0600); a finished GGUF, profile
or report should carry the permissions any other file the user creates gets (their umask),
so the temporary file is given those before anything is written to it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_beside(path: Path, tag: str = "tmp") -> Path:
    """An empty temporary file in path's folder (same filesystem, so os.replace is atomic)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{tag}.tmp", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path, "text")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
