"""The simulated day in both modes (tests/lambdas/fleet_day_simulation.py): a burst of 20 on a
fleet of 5 is served whole, without a cut, within one warm start; a small warm pool means fresh
launches; single mode refuses most of the burst; the fleet ends the day at zero; and the table
in docs/benchmarks.md is the model's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import cache

import pytest

from lambdas.idle_stop.policy import IdlePolicy
from tests.lambdas.fleet_day_setup import (
    BURST_SIZES,
    REPO_ROOT,
    Fleet,
    Page,
    Setup,
    Timing,
    Visitor,
    burst,
    burst_day,
    cdk_config,
    standard_setups,
)
from tests.lambdas.fleet_day_simulation import DayResult, simulate_day
from tests.lambdas.fleet_day_table import burst_day_result, markdown_table

HOUR = 3600.0


@cache
def setups() -> dict[str, Setup]:
    return {setup.name: setup for setup in standard_setups(cdk_config())}


def day(name: str, k: int) -> DayResult:
    return burst_day_result(setups()[name], k)


def test_the_modes_use_cdk_json_and_the_burst_day_holds_six_bursts() -> None:
    single = setups()["single"]
    assert (single.policy.idle_minutes, single.policy.boot_grace_minutes) == (15, 5)
    assert single.volume_gib == 100 and single.timing.warm_start_s == 86
    visitors = burst_day(20)
    assert len(visitors) == 6 * 20 + 1  # six bursts and the 15:00 start nobody uses
    assert max(v.press_s for v in visitors) - 21 * HOUR < 5


def test_twenty_visitors_on_a_fleet_of_five_all_served_after_one_warm_start_none_cut() -> None:
    setup, result = setups()["fleet, max 5"], day("fleet, max 5", 20)
    assert (result.cut, result.refused) == (0, 0)
    one_boot = setup.served_after_s  # warm start + the load balancer's health checks
    assert result.wait_percentile_s(0.5) <= one_boot + setup.page.status_poll_s
    # The worst wait: the first healthy instance sends its overflow away once (5 s), and the
    # page's first reconnect (0.5 s) reaches the instances that started with it.
    bounce = setup.max_wait_s + setup.page.reconnect_min_s
    assert max(result.waits_s) <= one_boot + bounce
    assert result.warm_starts > 0 and (result.fresh_launches, result.pool_refills) == (0, 0)


def test_a_warm_pool_of_two_meets_a_burst_of_twenty_with_fresh_launches() -> None:
    setup, result = setups()["fleet, max 5, pool 2"], day("fleet, max 5, pool 2", 20)
    assert (result.cut, result.refused) == (0, 0)
    assert result.fresh_launches > 0 and result.pool_refills > 0
    timing = setup.timing
    assert max(result.waits_s) > timing.fresh_launch_s  # someone waited for a first boot
    bounce = setup.max_wait_s + setup.page.reconnect_min_s + setup.page.status_poll_s
    assert max(result.waits_s) <= timing.fresh_launch_s + timing.lb_healthy_s + bounce
    assert result.pool_init_s > 0 and result.pool_init_s < result.billed_s


def test_single_mode_serves_four_of_a_burst_and_the_rest_give_up() -> None:
    single, fleet = day("single", 20), day("fleet, max 5", 20)
    assert single.cut == 0
    assert single.refused == 92  # 16 of each of 6 bursts, less 4 served as 21:00's short ones end
    assert single.refused > fleet.refused == 0
    assert all(w <= setups()["single"].page.patience_s for w in single.waits_s if w < float("inf"))


def test_cdk_json_default_fleet_of_four_cannot_hold_twenty() -> None:
    result = day("fleet, max 4", 20)
    assert (result.cut, result.refused) == (0, 20)  # 4 of 5 bursts leave 4 over 16 slots


def test_every_mode_ends_the_day_idle_at_zero() -> None:
    for name in setups():
        for k in BURST_SIZES:
            result = day(name, k)
            assert (result.desired_at_end, result.running_at_end) == (0, 0), (name, k)


def test_the_day_is_deterministic() -> None:
    setup = setups()["fleet, max 5, pool 2"]
    assert simulate_day(setup, burst_day(10)) == simulate_day(setup, burst_day(10))


def test_a_target_below_the_slots_serves_a_fifth_visitor_at_once_and_at_the_slots_late() -> None:
    """Four visitors fill an instance; a fifth comes 15 min later. /start counts the larger of
    the sessions (4) and the window's starts (1): no new instance. Target tracking at 3 of 4
    slots added one long before; at 4 it needs 3 one-minute datapoints above 4, which the
    heartbeat's peak of waiting sessions gives it, so the fifth visitor waits for that and a
    warm start (more than 5 min) instead of giving up."""
    visitors = (*burst(10 * HOUR, 4, 40 * 60.0), Visitor(10 * HOUR + 15 * 60, 20 * 60.0))
    fleet = setups()["fleet, max 4"]
    assert fleet.fleet is not None
    at_three = simulate_day(fleet, visitors)
    at_four = simulate_day(replace(fleet, fleet=replace(fleet.fleet, target_sessions=4)), visitors)
    assert at_three.waits_s[-1] == 0 and at_three.warm_starts == 2
    assert 300 < at_four.waits_s[-1] < 600 and at_four.warm_starts == 2


def test_a_hasty_idle_limit_cuts_in_single_mode_but_protection_holds_in_a_fleet() -> None:
    """An idle limit of 1 min with CloudWatch 3 min late: idle_stop stops a serving instance,
    or takes the group to 0, under a 40-min session. A fleet instance protected by its agent
    stays; one taken before its agent's step drains, which cuts the session only when it
    outlasts the drain limit (30 min by default)."""
    hasty = IdlePolicy(idle_minutes=1, boot_grace_minutes=2)
    visit = (Visitor(10 * HOUR, 40 * 60.0),)

    def cuts(fleet: Fleet | None) -> int:
        return simulate_day(Setup("hasty", hasty, fleet, metric_lag_min=3), visit).cut

    assert cuts(None) == 1
    assert cuts(Fleet()) == 0
    assert cuts(Fleet(agent_period_s=600)) == 1
    assert cuts(Fleet(agent_period_s=600, drain_limit_s=3600)) == 0


def test_docs_benchmarks_holds_the_models_table() -> None:
    table = markdown_table(cdk_config())
    assert len(table.splitlines()) == 2 + len(setups()) * len(BURST_SIZES)
    benchmarks = (REPO_ROOT / "docs" / "benchmarks.md").read_text()
    missing = "\n".join(row for row in table.splitlines() if row not in benchmarks)
    assert not missing, (
        f"docs/benchmarks.md lacks (python -m tests.lambdas.fleet_day_table):\n{missing}"
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Fleet(max_size=0), "max_size must be at least 1"),
        (lambda: Fleet(target_sessions=0), "target_sessions must be positive"),
        (lambda: Timing(fresh_launch_s=60), "cannot be quicker than a warm start"),
        (lambda: Page(patience_s=0), "must be positive"),
        (lambda: list(burst(0, 0, 60)), "at least 1 visitor"),
    ],
)
def test_bad_inputs_say_what_is_wrong(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()
