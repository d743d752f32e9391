"""The simulated day's inputs: how long instances take, the page, the fleet's settings, the
modes compared, and the day itself (tests/lambdas/fleet_day_simulation.py runs them).

Every default names its source; docs/benchmarks.md ("Fleet mode: a simulated day") cites them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from infra_cdk.config import StackConfig
from lambdas.idle_stop.policy import IdlePolicy
from tests.lambdas.day_simulation import DEMO_DAY

BURST_SIZES = (1, 4, 10, 20)
BURST_SPREAD_S = 5  # a burst's visitors all press Start within these seconds
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Timing:
    """How long an instance takes to serve (docs/benchmarks.md, "Boot to ready")."""

    ec2_start_s: float = 50.0  # StartInstances to a running kernel
    boot_to_ready_s: float = 36.0  # driver, models, Triton, backend to /ready 200
    fresh_launch_s: float = 330.0  # RunInstances + first boot with the TensorRT engine builds
    lb_healthy_s: float = 10.0  # the load balancer's health checks: 2 passes 5 s apart

    def __post_init__(self) -> None:
        if min(self.ec2_start_s, self.boot_to_ready_s, self.lb_healthy_s) < 0:
            raise ValueError(f"times must not be negative, got {self}")
        if self.fresh_launch_s < self.warm_start_s:
            raise ValueError(
                f"a fresh launch ({self.fresh_launch_s} s) cannot be quicker than a warm start "
                f"({self.warm_start_s} s): it boots too, and builds the engines first"
            )

    @property
    def warm_start_s(self) -> float:
        """A stopped, initialised instance started to /ready (single mode's boot too)."""
        return self.ec2_start_s + self.boot_to_ready_s


@dataclass(frozen=True)
class Page:
    """The visitor's page (frontend/js/config.js) and how long a visitor waits."""

    status_poll_s: float = 2.0  # statusPollMs
    reconnect_min_s: float = 0.5  # reconnectMinMs, doubled per failed attempt
    reconnect_max_s: float = 8.0  # reconnectMaxMs
    patience_s: float = 600.0  # a visitor not admitted 10 min after Start gives up

    def __post_init__(self) -> None:
        if self.status_poll_s <= 0 or self.reconnect_min_s <= 0 or self.patience_s <= 0:
            raise ValueError(f"poll, reconnect and patience times must be positive, got {self}")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"reconnect_max_s is below reconnect_min_s in {self}")

    def reconnect_delay_s(self, attempt: int) -> float:
        """connection.js's backoff without its +-20 % jitter."""
        return min(self.reconnect_max_s, self.reconnect_min_s * 2.0**attempt)


@dataclass(frozen=True)
class Fleet:
    """The Auto Scaling group (cdk.json's fleet keys, contracts 5) and AWS's scaling."""

    max_size: int = 4  # fleetMaxSize
    warm_pool_size: int = -1  # fleetWarmPoolSize: -1 = AWS's maxSize - desired; N = always N
    target_sessions: float = 3.0  # fleetTargetSessions: SessionLoad average to track
    demand_window_s: int = 600  # fleetDemandWindowMinutes
    drain_limit_s: float = 1800.0  # CVSTACK_DRAIN_LIMIT_S
    max_wait_s: float = 5.0  # CVSTACK_MAX_WAIT_S on fleet instances
    agent_period_s: float = 5.0  # the fleet agent's step
    scale_out_points: int = 3  # target tracking's high alarm: 3 of 3 one-minute points
    scale_in_points: int = 15  # its low alarm: 15 of 15
    scale_in_ratio: float = 0.9  # the low alarm's threshold, a fraction of the target
    instance_warmup_s: float = 300.0  # no scale-in while an instance warms up (AWS default)
    tracking_floor: int = 1  # target tracking never removes the last instance

    def __post_init__(self) -> None:
        if self.max_size < 1 or self.warm_pool_size < -1:
            raise ValueError(
                f"max_size must be at least 1 and warm_pool_size -1 (AWS's default) or more, "
                f"got {self.max_size} and {self.warm_pool_size}"
            )
        if self.target_sessions <= 0 or not 0 < self.scale_in_ratio < 1:
            raise ValueError(
                f"target_sessions must be positive and scale_in_ratio between 0 and 1, got "
                f"{self.target_sessions} and {self.scale_in_ratio}"
            )
        if min(self.scale_out_points, self.scale_in_points, self.demand_window_s) < 1:
            raise ValueError("alarm datapoints and the demand window must be at least 1")

    def pool_target(self, desired: int, in_group: int) -> int:
        """Instances the warm pool holds (stopped or initialising) at this desired capacity
        with `in_group` instances in the group (leaving ones too): an absolute size, or AWS's
        default, maxSize - desired, within maxSize for the group and the pool together."""
        if self.warm_pool_size >= 0:
            return self.warm_pool_size
        return max(0, self.max_size - max(desired, in_group))


@dataclass(frozen=True)
class Setup:
    """One mode: `fleet` None is single mode (one instance, the backend's 30 s queue wait)."""

    name: str
    policy: IdlePolicy
    fleet: Fleet | None = None
    sessions_per_instance: int = 4  # CVSTACK_MAX_SESSIONS
    single_max_wait_s: float = 30.0  # CVSTACK_MAX_WAIT_S default (backend/core/config.py)
    metric_lag_min: int = 1  # CloudWatch shows a minute's datapoint this much later
    volume_gib: int = 100  # rootVolumeGib
    timing: Timing = field(default_factory=Timing)
    page: Page = field(default_factory=Page)

    def __post_init__(self) -> None:
        if self.sessions_per_instance < 1 or self.metric_lag_min < 0 or self.volume_gib < 1:
            raise ValueError(
                "sessions_per_instance and volume_gib must be at least 1, metric_lag_min not "
                f"negative, got {self.sessions_per_instance}, {self.volume_gib} and "
                f"{self.metric_lag_min}"
            )

    @property
    def max_wait_s(self) -> float:
        """How long a full instance keeps a new session waiting before sending it away."""
        return self.single_max_wait_s if self.fleet is None else self.fleet.max_wait_s

    @property
    def served_after_s(self) -> float:
        """From a warm start to the first session it can take: boot, then (fleet) the load
        balancer's health checks."""
        return self.timing.warm_start_s + (0.0 if self.fleet is None else self.timing.lb_healthy_s)


@dataclass(frozen=True)
class Visitor:
    """Someone who presses Start at `press_s` (seconds since midnight) and, once admitted,
    holds a session for `session_s`; None: closes the page at once (the /start is all)."""

    press_s: float
    session_s: float | None


def burst(press_s: float, k: int, session_s: float) -> Iterator[Visitor]:
    """k visitors pressing Start within BURST_SPREAD_S; their sessions spread evenly from 75 %
    to 125 % of `session_s` (k = 1: exactly `session_s`)."""
    if k < 1:
        raise ValueError(f"a burst has at least 1 visitor, got {k}")
    for i in range(k):
        share = 0.75 + 0.5 * i / (k - 1) if k > 1 else 1.0
        yield Visitor(press_s + (i * BURST_SPREAD_S) // k, round(session_s * share))


def burst_day(k: int) -> tuple[Visitor, ...]:
    """The single-instance DEMO_DAY with every session a burst of k visitors: 09:00, 12:30,
    13:00 (the lunchtime pair's second session: its token has expired, so a new /start),
    18:00, 19:05 and 21:00; the 15:00 visitor who starts the server and leaves stays one."""
    visitors: list[Visitor] = []
    for visit in DEMO_DAY:
        if not visit.sessions:
            visitors.append(Visitor(visit.start_minute * 60.0, None))
        for n, (begin, end) in enumerate(visit.sessions):
            press_minute = visit.start_minute if n == 0 else begin
            visitors.extend(burst(press_minute * 60.0, k, (end - begin) * 60.0))
    return tuple(visitors)


def cdk_config() -> StackConfig:
    """cdk.json's settings (idle limit, boot grace, root volume)."""
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return StackConfig.from_context(context)


def standard_setups(config: StackConfig) -> tuple[Setup, ...]:
    """The modes of the table: single, fleets of at most 4 (the default fleetMaxSize), 5 (20 / 4)
    and 6 with AWS's default warm pool, and a fleet of 5 with an absolute pool of 2."""
    policy = IdlePolicy(
        idle_minutes=config.idle_minutes, boot_grace_minutes=config.boot_grace_minutes
    )
    volume = config.root_volume_gib
    return (
        Setup("single", policy, volume_gib=volume),
        Setup("fleet, max 4", policy, Fleet(max_size=4), volume_gib=volume),
        Setup("fleet, max 5", policy, Fleet(max_size=5), volume_gib=volume),
        Setup("fleet, max 6", policy, Fleet(max_size=6), volume_gib=volume),
        Setup(
            "fleet, max 5, pool 2", policy, Fleet(max_size=5, warm_pool_size=2), volume_gib=volume
        ),
    )
