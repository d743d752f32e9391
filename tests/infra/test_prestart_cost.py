"""What the page says one unused pre-start costs: the idle policy's worst case at list price."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from infra_cdk.prestart_cost import ON_DEMAND_USD_HOUR, pre_start_cost, worst_case_minutes
from lambdas.idle_stop.policy import Activity, IdlePolicy


def test_the_worst_case_is_when_idle_stop_first_stops_an_unused_start() -> None:
    """Idle_stop's own policy, fed an instance started at `launch` and never used, with the
    heartbeat's data as late as the policy allows: it first says stop within the bound's last
    minute (the schedule's minute is the rest)."""
    policy = IdlePolicy(idle_minutes=15, boot_grace_minutes=5)
    launch = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    activity = Activity().with_start(launch)

    def stops(after_min: float) -> bool:
        now = launch + timedelta(minutes=after_min)
        late = Activity(activity.last_active_at, now - timedelta(minutes=10))
        return policy.decide(now=now, launched_at=launch, activity=late).stop

    first_stop = next(m for m in range(60) if stops(m))
    assert worst_case_minutes(15, 5) == first_stop + 1 == 24


def test_the_sentence_states_the_price_the_minutes_and_their_terms() -> None:
    assert ON_DEMAND_USD_HOUR["g4dn.xlarge"] == 0.526
    assert pre_start_cost("g4dn.xlarge", 15, 5) == (
        "An unused pre-start costs at most $0.21: the g4dn.xlarge at $0.526/h (us-east-1 "
        "on-demand) for up to 24 min (5 min boot grace + 15 min idle limit + 4 min for "
        "idle_stop's data lag and schedule)."
    )
    assert pre_start_cost("g5.xlarge", 30, 0).startswith("An unused pre-start costs at most $0.57")


def test_an_instance_type_without_a_listed_price_says_minutes_only() -> None:
    assert pre_start_cost("p5.48xlarge", 15, 5) == (
        "An unused pre-start runs the p5.48xlarge for up to 24 min (5 min boot grace + 15 min "
        "idle limit + 4 min for idle_stop's data lag and schedule) at its on-demand price."
    )
