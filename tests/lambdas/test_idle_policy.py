"""IdlePolicy with an injected clock: boot grace, activity, missing data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lambdas.idle_stop.policy import Activity, IdlePolicy

LAUNCH = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
POLICY = IdlePolicy(idle_minutes=15, boot_grace_minutes=5)


def at(minutes: float) -> datetime:
    return LAUNCH + timedelta(minutes=minutes)


def test_never_stops_during_boot_grace_even_with_no_data() -> None:
    for minute in (0, 1, 4.9):
        decision = POLICY.decide(now=at(minute), launched_at=LAUNCH)
        assert (decision.stop, decision.reason) == (False, "boot_grace")


def test_missing_data_at_boot_does_not_count_as_idle() -> None:
    """The idle clock starts when the grace period ends, not at launch."""
    decision = POLICY.decide(now=at(19.9), launched_at=LAUNCH)
    assert not decision.stop
    assert decision.idle_s == pytest.approx(14.9 * 60)
    assert POLICY.decide(now=at(20), launched_at=LAUNCH).stop


def test_recent_activity_keeps_the_instance_running() -> None:
    decision = POLICY.decide(now=at(40), launched_at=LAUNCH, activity=Activity(at(30)))
    assert (decision.stop, decision.reason, decision.idle_s) == (False, "recently_active", 600)


def test_stops_once_idle_for_the_limit_after_the_last_activity() -> None:
    assert not POLICY.decide(now=at(44.9), launched_at=LAUNCH, activity=Activity(at(30))).stop
    decision = POLICY.decide(now=at(45), launched_at=LAUNCH, activity=Activity(at(30)))
    assert (decision.stop, decision.reason) == (True, "idle")


def test_activity_before_this_boot_does_not_shorten_the_grace() -> None:
    decision = POLICY.decide(now=at(6), launched_at=LAUNCH, activity=Activity(at(-60)))
    assert not decision.stop
    assert decision.idle_s == pytest.approx(60)


def test_idleness_is_judged_only_up_to_the_published_minutes() -> None:
    """At the limit (20) with the heartbeat published up to 18, the two unseen minutes may
    hold a session opened just before the limit: no stop until they are published."""
    decision = POLICY.decide(now=at(20), launched_at=LAUNCH, activity=Activity(None, at(18)))
    assert (decision.stop, decision.idle_s) == (False, 13 * 60)
    assert POLICY.decide(now=at(21), launched_at=LAUNCH, activity=Activity(None, at(20))).stop


def test_a_heartbeat_silent_past_the_lag_allowance_counts_as_idle() -> None:
    decision = POLICY.decide(now=at(23), launched_at=LAUNCH, activity=Activity(None, at(10)))
    assert (decision.stop, decision.idle_s) == (True, 15 * 60)


def test_a_start_counts_as_activity_at_its_exact_time() -> None:
    activity = Activity(at(8), at(19)).with_start(at(19.5))
    assert activity.last_active_at == at(19.5)
    assert not POLICY.decide(now=at(20), launched_at=LAUNCH, activity=activity).stop


@pytest.mark.parametrize(
    ("idle", "grace", "lag"), [(0, 5, 3), (-1, 5, 3), (15, -1, 3), (15, 5, -1)]
)
def test_rejects_nonsense_limits(idle: float, grace: float, lag: float) -> None:
    with pytest.raises(ValueError, match="idle_minutes must be positive"):
        IdlePolicy(idle_minutes=idle, boot_grace_minutes=grace, metric_lag_minutes=lag)
