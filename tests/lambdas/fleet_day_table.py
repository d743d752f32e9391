"""The table of docs/benchmarks.md ("Fleet mode: a simulated day"): every mode on the burst
day of every burst size. `python -m tests.lambdas.fleet_day_table` prints it."""

from __future__ import annotations

import math
from functools import cache

from infra_cdk.config import StackConfig
from tests.lambdas.fleet_day_setup import BURST_SIZES, Setup, burst_day, cdk_config, standard_setups
from tests.lambdas.fleet_day_simulation import DayResult, simulate_day

GPU_PRICE_PER_H = 0.526  # g4dn.xlarge on-demand, us-east-1, Linux
EBS_PRICE_PER_GB_MONTH = 0.08  # gp3, us-east-1
HOURS_PER_MONTH = 730  # AWS's pricing month

TABLE_HEADER = (
    "| mode | burst | sessions | wait p50 s | wait p95 s | refused | cut | GPU h "
    "| GPU $ | idle instance-min | warm starts | fresh launches | pool refills | EBS $/day |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def table_row(setup: Setup, k: int, result: DayResult) -> str:
    """One row of the table in docs/benchmarks.md."""

    def wait(q: float) -> str:
        value = result.wait_percentile_s(q)
        return f"> {setup.page.patience_s:.0f}" if math.isinf(value) else f"{value:.1f}"

    ebs = result.volume_gib_h / HOURS_PER_MONTH * EBS_PRICE_PER_GB_MONTH
    cells = (
        setup.name,
        str(k),
        str(len(result.waits_s)),
        wait(0.5),
        wait(0.95),
        str(result.refused),
        str(result.cut),
        f"{result.gpu_hours:.2f}",
        f"{result.gpu_hours * GPU_PRICE_PER_H:.2f}",
        f"{result.idle_s / 60:.0f}",
        str(result.warm_starts),
        str(result.fresh_launches),
        str(result.pool_refills),
        f"{ebs:.2f}",
    )
    return "| " + " | ".join(cells) + " |"


@cache
def burst_day_result(setup: Setup, k: int) -> DayResult:
    """One mode's day of bursts of k (cached: the table and the tests share the runs)."""
    return simulate_day(setup, burst_day(k))


def markdown_table(config: StackConfig) -> str:
    """Every standard setup on the burst day of every burst size."""
    rows = [
        table_row(setup, k, burst_day_result(setup, k))
        for setup in standard_setups(config)
        for k in BURST_SIZES
    ]
    return "\n".join((TABLE_HEADER, *rows))


if __name__ == "__main__":
    print(markdown_table(cdk_config()))
