"""A download progress line: bytes, percent, rate and ETA.

Written by hand rather than with tqdm/rich because the rate must count only the bytes of this
run (a resumed download starts at 60 % but its speed is what the link does now), and because
off a terminal (logs, CI, pipes) it has to print a few plain lines instead of redrawing one.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from seachat.convert.units import human_bytes

# The rate is averaged over this many seconds: short enough to follow a link that changes
# speed, long enough that the ETA does not jump on every chunk.
RATE_WINDOW_S = 8.0


def human_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class TransferProgress:
    """Feed it byte counts with `update()`; it draws at most every `interval` seconds."""

    def __init__(
        self,
        label: str,
        total: int | None,
        initial: int = 0,
        stream: TextIO | None = None,
        is_tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.done = initial
        self.initial = initial
        self.stream = stream if stream is not None else sys.stderr
        self.is_tty = self.stream.isatty() if is_tty is None else is_tty
        # Redraw a terminal line 10 times a second; a log gets a line every 5 s.
        self.interval = 0.1 if self.is_tty else 5.0
        self.clock = clock
        self.started = clock()
        self._samples: deque[tuple[float, int]] = deque([(self.started, initial)])
        self._last_draw = float("-inf")
        self._width = 0
        self.closed = False

    def update(self, n: int) -> None:
        self.done += n
        now = self.clock()
        self._samples.append((now, self.done))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        if now - self._last_draw >= self.interval:
            self._draw(now)

    def restart(self, initial: int = 0) -> None:
        """The server ignored our Range request: we start over from `initial` bytes."""
        self.done = self.initial = initial
        self._samples = deque([(self.clock(), initial)])

    def rate(self) -> float | None:
        """Bytes per second over the recent window, None until there is something to measure."""
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        if t1 - t0 < 0.2 or b1 <= b0:
            return None
        return (b1 - b0) / (t1 - t0)

    def line(self) -> str:
        parts = [self.label]
        if self.total:
            pct = 100.0 * self.done / self.total
            parts.append(f"{human_bytes(self.done)} / {human_bytes(self.total)} ({pct:.0f}%)")
        else:
            parts.append(human_bytes(self.done))
        rate = self.rate()
        if rate:
            parts.append(f"{human_bytes(rate)}/s")
            if self.total and self.total > self.done:
                parts.append(f"ETA {human_duration((self.total - self.done) / rate)}")
        elif self.total and self.done < self.total:
            parts.append("ETA --")
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        self._last_draw = now
        text = self.line()
        if self.is_tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def interject(self, message: str) -> None:
        """Print a message without tearing the progress line (a retry notice, say)."""
        if self.is_tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(message + "\n")
        if self.is_tty and not self.closed:
            self._draw(self.clock())
        self.stream.flush()

    def close(self, final_note: str = "") -> None:
        """Draw the last state (so logs show where it ended) and end the line."""
        if self.closed:
            return
        self.closed = True
        self._draw(self.clock())
        if self.is_tty:
            self.stream.write("\n")
        if final_note:
            self.stream.write(final_note + "\n")
        self.stream.flush()

    def summary(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        fetched = self.done - self.initial
        return f"{human_bytes(fetched)} in {human_duration(elapsed)} ({human_bytes(fetched / elapsed)}/s)"
