"""Temporary files beside their destination, renamed into place when complete.

This is the one module that makes temporary files for atomic writes, so every file seachat
writes follows the same two rules:

- Permissions: tempfile.mkstemp creates files readable by their owner only (0600); a finished
  GGUF, profile, report, card or chat export should carry the permissions any other file the
  user creates gets (their umask), so the temporary file is given those before anything is
  written to it.
- Durability: `write_text_atomic` flushes and fsyncs the temporary file before renaming it.
  Without that, a power cut soon after the rename can leave the new name pointing at an empty
  or partial file on file systems that delay allocation (ext4, XFS), which is the very thing
  writing atomically is meant to rule out. The folder is not fsynced: after a crash the rename
  may be lost, leaving the previous file (or none), never a torn one. A caller that fills a
  `temp_beside` file itself (a GGUF writer, llama.cpp's quantizer) follows the same rule when
  the data matters, and one that needs the rename itself to survive a crash (a finished
  download) syncs the folder too.

Text is written as UTF-8 with "\\n" line ends on every platform.
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
    """`path` holds `text` afterwards, or is untouched if anything failed on the way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path, "text")
    try:
        with open(tmp, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
