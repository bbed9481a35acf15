"""The image-call pacer keeps every rate-limit window within quota, and the concurrency rule."""

from __future__ import annotations

import pytest

from shared.adapters.pacing import Pacer
from shared.config import activity_concurrency


class FakeClock:
    """Time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_calls_are_spaced_evenly_at_the_quota() -> None:
    clock = FakeClock()
    waits: list[float] = []
    pacer = Pacer(per_minute=6, clock=clock, sleep=waits.append)
    for _ in range(4):
        pacer.wait()
    assert waits == pytest.approx([10.2, 20.4, 30.6])  # the first at once, then one every 10 s (+2% slack)


def test_no_window_sees_more_than_its_share() -> None:
    clock = FakeClock()
    starts: list[float] = []

    def sleep(seconds: float) -> None:
        starts.append(clock.now + seconds)

    pacer = Pacer(per_minute=600, clock=clock, sleep=sleep)  # 10 per second
    for _ in range(100):
        before = len(starts)
        pacer.wait()
        if len(starts) == before:
            starts.append(clock.now)
    for window_start in [100.0 + k * 0.05 for k in range(150)]:
        in_window = [t for t in starts if window_start <= t < window_start + 1.0]
        assert len(in_window) <= 10


def test_a_caller_after_a_quiet_spell_does_not_wait() -> None:
    clock = FakeClock()
    waits: list[float] = []
    pacer = Pacer(per_minute=60, clock=clock, sleep=waits.append)
    pacer.wait()
    clock.now += 5
    assert pacer.wait() == 0 and waits == []


def test_concurrency_follows_the_image_quota() -> None:
    assert activity_concurrency(6) == 4  # the default 2 capacity units: short steps still overlap
    assert activity_concurrency(30) == 15
    assert activity_concurrency(3000) == 32
