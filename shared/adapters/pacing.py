"""Pacing for the image quota: calls spaced evenly, so no rate-limit window sees more than its share.

Azure OpenAI enforces an image deployment's requests-per-minute over short windows (1-10 s) and
answers 429 beyond them. Spacing calls 60/rpm seconds apart keeps every window within quota, so
the deployment runs at its limit without paying the round trips and back-off of 429s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """A thread-safe schedule of call slots, one every `60 / per_minute` seconds."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # 2% over the exact spacing: a call reaches the service a few milliseconds after its slot,
        # and without slack that jitter would put one call too many in some windows.
        self.interval = 60.0 / per_minute * 1.02
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until this caller's slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return delay
