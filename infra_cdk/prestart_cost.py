"""What one unused pre-start costs at most: the page's words beside its pre-start setting.

A pre-start (cdk.json `preStart`, the page's config.json) boots the GPU when the page opens. If
nobody then presses Start, idle_stop stops it once the boot grace and the idle limit have
passed, judged on heartbeat data up to `metric_lag_minutes` old and checked once a minute
(lambdas/idle_stop/policy.py): that is how long it can run for nothing. EC2 bills no on-demand
instance while it stops, so the sum is the worst case. Prices are AWS's us-east-1 on-demand list
prices (USD per hour, Linux); other regions differ.
"""

from __future__ import annotations

from lambdas.idle_stop.policy import IdlePolicy

ON_DEMAND_USD_HOUR = {
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g6.xlarge": 0.8048,
    "g6.2xlarge": 0.9776,
}
IDLE_CHECK_PERIOD_MINUTES = 1  # idle_stop's schedule (infra_cdk/lifecycle_functions.py)


def worst_case_minutes(idle_minutes: int, boot_grace_minutes: int) -> float:
    """The longest one unused pre-start keeps the instance running."""
    lag = IdlePolicy(idle_minutes, boot_grace_minutes).metric_lag_minutes
    return boot_grace_minutes + idle_minutes + lag + IDLE_CHECK_PERIOD_MINUTES


def pre_start_cost(instance_type: str, idle_minutes: int, boot_grace_minutes: int) -> str:
    """The sentence the page shows beside pre-start, with the terms of the sum."""
    minutes = worst_case_minutes(idle_minutes, boot_grace_minutes)
    terms = (
        f"{boot_grace_minutes} min boot grace + {idle_minutes} min idle limit + "
        f"{minutes - boot_grace_minutes - idle_minutes:g} min for idle_stop's data lag and schedule"
    )
    price = ON_DEMAND_USD_HOUR.get(instance_type)
    if price is None:
        return (
            f"An unused pre-start runs the {instance_type} for up to {minutes:g} min ({terms}) "
            "at its on-demand price."
        )
    return (
        f"An unused pre-start costs at most ${price * minutes / 60:.2f}: the {instance_type} "
        f"at ${price}/h (us-east-1 on-demand) for up to {minutes:g} min ({terms})."
    )
