"""Status lines redrawn in place: any status (LiveLine) and a download's (TransferProgress).

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


# Carriage return, then erase to the end of the line: the next text replaces the old one
# whatever their lengths.
REDRAW = "\r\033[K"


class LiveLine:
    """One line of status on `stream`, redrawn in place on a terminal; off a terminal each
    `show` is a plain line, and `every` (terminal, log) seconds is the pace `due` allows."""

    def __init__(
        self,
        stream: TextIO | None = None,
        is_tty: bool | None = None,
        *,
        every: tuple[float, float] = (0.1, 5.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.is_tty = self.stream.isatty() if is_tty is None else is_tty
        self.interval = every[0] if self.is_tty else every[1]
        self.clock = clock
        self._last_show = float("-inf")
        self._on_screen = False  # a redrawn line is showing and not yet ended

    def due(self) -> bool:
        """Whether `interval` has passed since the last `show` (callers skip drawing if not)."""
        return self.clock() - self._last_show >= self.interval

    def show(self, text: str) -> None:
        self._last_show = self.clock()
        if self.is_tty:
            self.stream.write(REDRAW + text)
            self._on_screen = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def say(self, message: str) -> None:
        """Print `message` on a line of its own, in place of the status line if one is showing
        (`show` it again afterwards to keep it below the message)."""
        if self._on_screen:
            self.stream.write(REDRAW)
            self._on_screen = False
        self.stream.write(message + "\n")
        self.stream.flush()

    def end(self) -> None:
        """Leave the line on screen as it is and move below it."""
        if self._on_screen:
            self.stream.write("\n")
            self._on_screen = False
            self.stream.flush()


class TransferProgress:
    """Feed it byte counts with `update()`; it draws at most 10 times a second on a terminal
    and every 5 s in a log."""

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
        # Redraw a terminal line 10 times a second; a log gets a line every 5 s.
        self._line = LiveLine(stream, is_tty, every=(0.1, 5.0), clock=clock)
        self.clock = clock
        self.started = clock()
        self._samples: deque[tuple[float, int]] = deque([(self.started, initial)])
        self.closed = False

    def update(self, n: int) -> None:
        self.done += n
        now = self.clock()
        self._samples.append((now, self.done))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        if self._line.due():
            self._line.show(self.line())

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

    def interject(self, message: str) -> None:
        """Print a message without tearing the progress line (a retry notice, say)."""
        self._line.say(message)
        if self._line.is_tty and not self.closed:
            self._line.show(self.line())

    def close(self, final_note: str = "") -> None:
        """Draw the last state (so logs show where it ended) and end the line."""
        if self.closed:
            return
        self.closed = True
        self._line.show(self.line())
        self._line.end()
        if final_note:
            self._line.say(final_note)

    def summary(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        fetched = self.done - self.initial
        return f"{human_bytes(fetched)} in {human_duration(elapsed)} ({human_bytes(fetched / elapsed)}/s)"
