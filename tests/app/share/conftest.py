"""A real `seachat share` process on loopback, and a library with Thai and Khmer model names."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.app.libtest import KHMER_NAME, THAI_NAME, write_gguf

THAI_FILE = "ภาษาไทย-sea-q4.gguf"
KHMER_FILE = "ភាសាខ្មែរ-Q8_0.gguf"
_SENT = re.compile(r"^\S+ GET (?P<name>.+) 20[06] sent (?P<n>\d+) bytes$")


@dataclass
class ShareProcess:
    proc: subprocess.Popen[str]
    url: str
    stdout: list[str] = field(default_factory=list)

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, like a person would; the exit status and everything it wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=30)
        self.log = err
        return self.proc.returncode, err

    def bytes_sent(self, name: str) -> int:
        """Body bytes the server sent for `name`, from its own access log (after stop())."""
        return sum(
            int(m["n"]) for m in map(_SENT.match, self.log.splitlines()) if m and m["name"] == name
        )


@pytest.fixture
def library(models_dir: Path) -> Path:
    write_gguf(models_dir / THAI_FILE, name=THAI_NAME, n_bytes=24 << 20, seed=1, languages=["th"])
    write_gguf(models_dir / KHMER_FILE, name=KHMER_NAME, n_bytes=2 << 20, seed=2, languages=["km"])
    return models_dir


@pytest.fixture
def start_share(
    library_env: dict[str, str], library: Path
) -> Iterator[Callable[..., ShareProcess]]:
    started: list[ShareProcess] = []

    def start(*args: str) -> ShareProcess:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seachat.app", "share", "--port", "0", *args],
            env=library_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            start_new_session=True,  # its own process group: SIGINT is not ignored there
        )
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise AssertionError(f"share exited: {proc.communicate()[1]}")
            lines.append(line.rstrip("\n"))
            if line.startswith("on another laptop:"):
                break
        url = next(x.split()[-1] for x in lines if x.startswith("listening on "))
        share = ShareProcess(proc, url, lines)
        started.append(share)
        return share

    yield start
    for share in started:
        if share.proc.poll() is None:
            os.killpg(share.proc.pid, signal.SIGKILL)
            share.proc.wait()
