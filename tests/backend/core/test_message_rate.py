"""The control-message token bucket, on a fake clock."""

from __future__ import annotations

from backend.session.message_rate import MessageRate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_rate_holds() -> None:
    clock = Clock()
    rate = MessageRate(per_s=20, burst=40, clock=clock)
    assert all(rate.allow() for _ in range(40))
    assert not rate.allow()
    clock.now += 0.5  # 10 more tokens
    assert sum(rate.allow() for _ in range(20)) == 10


def test_a_steady_client_within_the_rate_is_never_refused() -> None:
    clock = Clock()
    rate = MessageRate(per_s=20, burst=40, clock=clock)
    for _ in range(1000):
        clock.now += 0.06
        assert rate.allow()
