"""A simulated day of use, minute by minute, with idle_stop's real policy deciding stops."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lambdas.idle_stop.policy import Activity, IdlePolicy

DAY_START = datetime(2026, 11, 26, tzinfo=UTC)
MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True)
class Visit:
    """Someone calls /start at `start_minute`, then holds sessions over [begin, end) minutes."""

    start_minute: int
    sessions: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class DayResult:
    """What the day cost, and whether any session was cut short."""

    billed_gpu_minutes: int
    session_minutes: int
    idle_minutes_wasted: int
    starts: int
    interrupted_sessions: int


def simulate_day(
    visits: list[Visit], policy: IdlePolicy, *, period_min: int = 1, metric_lag_min: int = 1
) -> DayResult:
    """Run idle_stop every `period_min`; it sees the heartbeat `metric_lag_min` late, as in
    CloudWatch, and the /start calls at once (the instance tag).

    A /start on a stopped instance starts it (billed from then); sessions count as activity,
    and so does the /start call itself. The heartbeat publishes every minute while running.
    """
    start_calls = {v.start_minute for v in visits}
    active = {m for v in visits for begin, end in v.sessions for m in range(begin, end)}
    running_since: int | None = None
    running_minutes: set[int] = set()
    starts = 0
    last_activity: int | None = None
    last_start: int | None = None
    for minute in range(MINUTES_PER_DAY):
        if minute in start_calls:
            last_start = minute
            if running_since is None:
                running_since, starts = minute, starts + 1
        if running_since is not None:
            running_minutes.add(minute)
        visible = minute - metric_lag_min
        if visible in active:
            last_activity = visible + 1
        now = minute + 1
        if running_since is not None and now % period_min == 0:
            activity = Activity(
                _at(last_activity) if last_activity is not None else None,
                _at(visible) if visible >= running_since else None,
            )
            if last_start is not None:
                activity = activity.with_start(_at(last_start))
            decision = policy.decide(
                now=_at(now), launched_at=_at(running_since), activity=activity
            )
            if decision.stop:
                running_since = None
    interrupted = sum(
        any(m not in running_minutes for m in range(begin, end))
        for v in visits
        for begin, end in v.sessions
    )
    return DayResult(
        billed_gpu_minutes=len(running_minutes),
        session_minutes=len(active),
        idle_minutes_wasted=len(running_minutes - active),
        starts=starts,
        interrupted_sessions=interrupted,
    )


def _at(minute: int) -> datetime:
    return DAY_START + timedelta(minutes=minute)


def hm(hours: int, minutes: int = 0) -> int:
    """Minutes since midnight."""
    return hours * 60 + minutes


# A plausible demo day: a morning session, a lunchtime pair with a short gap, a visitor who
# starts the server and leaves, an evening session with a long break, a late short look.
DEMO_DAY = [
    Visit(hm(9, 0), ((hm(9, 3), hm(9, 40)),)),
    Visit(hm(12, 30), ((hm(12, 33), hm(12, 50)), (hm(13, 0), hm(13, 20)))),
    Visit(hm(15, 0), ()),
    Visit(hm(18, 0), ((hm(18, 3), hm(18, 40)),)),
    Visit(hm(19, 5), ((hm(19, 6), hm(19, 45)),)),
    Visit(hm(21, 0), ((hm(21, 2), hm(21, 10)),)),
]
