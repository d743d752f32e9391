"""A simulated day: billed GPU minutes and idle minutes wasted under cdk.json's idle policy.

The figures are recorded in docs/benchmarks.md; this test keeps them true.
"""

from __future__ import annotations

import json
from pathlib import Path

from infra_cdk.config import StackConfig
from lambdas.idle_stop.policy import IdlePolicy
from tests.lambdas.day_simulation import DEMO_DAY, Visit, hm, simulate_day

REPO_ROOT = Path(__file__).resolve().parents[2]


def configured_policy() -> IdlePolicy:
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    config = StackConfig.from_context(context)
    return IdlePolicy(
        idle_minutes=config.idle_minutes, boot_grace_minutes=config.boot_grace_minutes
    )


def test_demo_day_costs_and_never_cuts_a_session() -> None:
    policy = configured_policy()
    assert (policy.idle_minutes, policy.boot_grace_minutes) == (15, 5)
    result = simulate_day(DEMO_DAY, policy)
    assert result.interrupted_sessions == 0
    assert result.session_minutes == 158
    assert (result.starts, result.billed_gpu_minutes, result.idle_minutes_wasted) == (6, 287, 129)
    benchmarks = (REPO_ROOT / "docs" / "benchmarks.md").read_text()
    assert "| 15 min | 5 min | 1 min | 6 | 158 | 287 | 129 |" in benchmarks


def test_a_start_nobody_uses_costs_grace_plus_idle_plus_the_metric_lag() -> None:
    """idle_stop judges only minutes CloudWatch has shown (here 1 min late, and the latest
    datapoint counts from its minute's start): 2 min beyond grace + limit."""
    result = simulate_day([Visit(hm(10), ())], configured_policy())
    assert (result.billed_gpu_minutes, result.idle_minutes_wasted) == (22, 22)


def test_a_slower_schedule_wastes_more_but_cuts_nothing() -> None:
    every_minute = simulate_day(DEMO_DAY, configured_policy())
    every_seven = simulate_day(DEMO_DAY, configured_policy(), period_min=7)
    assert every_seven.interrupted_sessions == 0
    assert every_seven.idle_minutes_wasted > every_minute.idle_minutes_wasted
