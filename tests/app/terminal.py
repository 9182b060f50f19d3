"""Running `seachat chat` in a real terminal (tmux) for end-to-end tests."""

from __future__ import annotations

import ctypes
import locale
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest


def require_tmux() -> str:
    tmux = shutil.which("tmux")
    if tmux is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is not installed: .ci/run must install it (apt-get install -y tmux)")
        pytest.skip("tmux is not installed (apt-get install tmux)")
    return tmux


def terminal_width(text: str) -> int:
    """Columns a wcwidth-following terminal uses for `text` (what tmux itself counts)."""
    locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
    libc = ctypes.CDLL("libc.so.6")
    libc.wcswidth.argtypes = [ctypes.c_wchar_p, ctypes.c_size_t]
    return libc.wcswidth(text, len(text))


class Terminal:
    """A detached tmux session of a fixed size running one command."""

    def __init__(
        self, command: list[str], env: dict[str, str], width: int = 80, height: int = 24
    ) -> None:
        self.tmux = require_tmux()
        self.name = f"seachat-test-{uuid.uuid4().hex[:8]}"
        self.socket = f"seachat-{uuid.uuid4().hex[:8]}"  # a private tmux server per test
        env_args = [f"{k}={v}" for k, v in env.items()]
        shell = "exec env " + " ".join(_quote(a) for a in [*env_args, *command])
        self._tmux("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), shell)

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.tmux, "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            check=check,
            env={**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
        )

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", self.name, "-l", text)

    def key(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.name).stdout

    def pid(self) -> int:
        return int(
            self._tmux("display-message", "-p", "-t", self.name, "#{pane_pid}").stdout.strip()
        )

    def alive(self) -> bool:
        return self._tmux("has-session", "-t", self.name, check=False).returncode == 0

    def wait_for(self, condition, timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen() if self.alive() else ""
            if condition(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; screen:\n{screen}")
            time.sleep(0.2)

    def close(self) -> None:
        self._tmux("kill-server", check=False)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def seachat_command(*args: str) -> list[str]:
    exe = Path(sys.executable).parent / "seachat"
    if exe.exists():
        return [str(exe), *args]
    return [sys.executable, "-m", "seachat.app", *args]
