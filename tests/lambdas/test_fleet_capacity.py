"""The fleet's capacity policy: instances for the demand, and the desired capacity after /start."""

from __future__ import annotations

import pytest

from lambdas.shared.fleet_capacity import desired_after_start, instances_needed


@pytest.mark.parametrize(
    ("sessions", "recent_starts", "needed"),
    [(0, 0, 0), (0, 1, 1), (4, 0, 1), (5, 0, 2), (3, 20, 5), (21, 20, 6), (-1, 0, 0)],
)
def test_instances_for_the_larger_demand(sessions: int, recent_starts: int, needed: int) -> None:
    assert (
        instances_needed(sessions=sessions, recent_starts=recent_starts, sessions_per_instance=4)
        == needed
    )


def test_sessions_per_instance_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        instances_needed(sessions=1, recent_starts=1, sessions_per_instance=0)


@pytest.mark.parametrize(
    ("current", "needed", "maximum", "desired"),
    [(0, 0, 4, 1), (0, 5, 4, 4), (3, 1, 4, 3), (1, 5, 6, 5), (6, 2, 6, 6)],
)
def test_desired_after_start(current: int, needed: int, maximum: int, desired: int) -> None:
    assert desired_after_start(current_desired=current, needed=needed, max_size=maximum) == desired
