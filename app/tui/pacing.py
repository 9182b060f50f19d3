"""How often streamed text reaches the screen.

On a 2-core laptop llama.cpp's threads use every core, and each screen update (Markdown
layout, compositing, terminal writes) is CPU — and GIL time — taken from the model. A fixed
frame rate either wastes the model's time on fast terminals or stutters on slow ones. The pacer
measures what the UI thread actually spent since the last update and spaces updates so that
the UI stays within a small share of one core, between a smooth and a still-readable rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MIN_INTERVAL = 0.05  # never more than 20 updates a second
MAX_INTERVAL = 0.5  # never fewer than 2: text must keep visibly flowing
CPU_BUDGET = 0.02  # share of one core the UI may use while the model generates


class FlushPacer:
    def __init__(
        self,
        budget: float = CPU_BUDGET,
        min_interval: float = MIN_INTERVAL,
        max_interval: float = MAX_INTERVAL,
        clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.budget = budget
        self.min_interval = min_interval
        self.max_interval = max_interval
        self._clock = clock
        self._last = clock()
        self._cost = 0.0  # smoothed UI CPU seconds per update cycle

    def start(self) -> float:
        self._last = self._clock()
        self._cost = 0.0
        return self.min_interval

    def next_interval(self) -> float:
        """Call on the UI thread right after an update; returns the delay before the next.
        The CPU measured covers everything the UI thread did since the previous call: the
        update, its rendering, and any other UI work in between."""
        now = self._clock()
        spent, self._last = now - self._last, now
        self._cost = spent if self._cost == 0.0 else 0.7 * self._cost + 0.3 * spent
        return min(self.max_interval, max(self.min_interval, self._cost / self.budget))
