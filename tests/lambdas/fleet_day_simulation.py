"""Single mode against fleet mode on the same simulated day, with bursts of k visitors.

Event by event, in seconds, deterministic. What the project's code decides, its code decides:
/start sizes the fleet with `lambdas.shared.fleet_capacity` and idle_stop stops with
`lambdas.idle_stop.policy.IdlePolicy`. What AWS does (warm pool, target tracking, scale-in
protection, the load balancer), what the backend does (admission queue) and what the page does
(frontend/js: /status polls, reconnect backoff) is modelled from their documentation and code;
docs/benchmarks.md ("Fleet mode: a simulated day") lists every assumption and its source.

The inputs are in tests/lambdas/fleet_day_setup.py; `python -m tests.lambdas.fleet_day_table`
prints the table of docs/benchmarks.md.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from backend.instance.fleet_member import Action, decide
from lambdas.idle_stop.policy import Activity
from lambdas.shared.fleet_capacity import desired_after_start, instances_needed
from tests.lambdas.day_simulation import DAY_START
from tests.lambdas.fleet_day_setup import Fleet, Setup, Visitor

DAY_S = 24 * 3600


@dataclass(frozen=True)
class DayResult:
    """What the day cost and how the visitors fared."""

    waits_s: tuple[float, ...]  # per visitor who wanted a session; math.inf when refused
    cut: int
    billed_s: float  # every instance run (pool initialisation too), EC2's 60 s minimum each
    pool_init_s: float
    idle_s: float  # billed instance time with no live session on the instance
    warm_starts: int
    fresh_launches: int
    pool_refills: int
    volume_gib_h: float
    desired_at_end: int
    running_at_end: int

    @property
    def refused(self) -> int:
        """Visitors who gave up before a slot was theirs."""
        return sum(math.isinf(w) for w in self.waits_s)

    def wait_percentile_s(self, q: float) -> float:
        """Nearest-rank percentile of the waits, a refusal counting as waiting forever."""
        ranked = sorted(self.waits_s)
        return ranked[max(0, math.ceil(q * len(ranked)) - 1)]

    @property
    def gpu_hours(self) -> float:
        return self.billed_s / 3600


# Within one second: instances change first, then sessions end, visitors act, the fleet agents
# step, and the minute's heartbeats and scheduled checks run last.
INSTANCE, SESSION_END, VISITOR, AGENT, MINUTE_TICK = range(5)
# Instance states
POOL, POOL_INIT, STOPPED, ARRIVING, IN_SERVICE, LEAVING, GONE = (
    "pool",
    "pool_init",
    "stopped",
    "arriving",
    "in_service",
    "leaving",
    "gone",
)
MEMBER_STATES = (ARRIVING, IN_SERVICE, LEAVING)
# Visitor states
POLLING, RETRYING, WAITING, LIVE, DONE, GAVE_UP = range(6)


class _Instance:
    """One GPU instance: its state, sessions, admission queue, heartbeats and bills."""

    def __init__(self, index: int, state: str, now: float) -> None:
        self.index = index
        self.state = state
        self.live: list[_Visit] = []
        self.queue: deque[_Visit] = deque()
        self.protected = False
        self.generation = 0  # bumped on every start/leave: stale readiness events are ignored
        self.run_since: float | None = None
        self.run_is_pool_init = False
        self.runs: list[tuple[float, float, bool]] = []
        self.busy: list[tuple[float, float]] = []
        self.samples: dict[int, int] = {}  # minute -> the heartbeat's live + waiting
        self.queue_peak = 0  # most sessions waiting at once since the last heartbeat
        self.created_s = now
        self.gone_s: float | None = None
        self.agent_at: float | None = None
        self.draining_since: float | None = None
        self.in_service_s = -math.inf

    @property
    def load(self) -> int:
        return len(self.live) + len(self.queue)

    def heartbeat_load(self) -> int:
        """Live sessions now plus the last minute's peak of waiting ones (the backend's
        cvstack_waiting_sessions_peak), as the heartbeat publishes them."""
        load = len(self.live) + max(self.queue_peak, len(self.queue))
        self.queue_peak = len(self.queue)
        return load

    def start_run(self, now: float, *, pool_init: bool = False) -> None:
        self.run_since, self.run_is_pool_init = now, pool_init
        self.generation += 1

    def end_run(self, now: float) -> None:
        if self.run_since is not None:
            self.runs.append((self.run_since, now, self.run_is_pool_init))
        self.run_since = None


class _Visit:
    """One visitor's page: its state and its single pending action (poll, connect, queue
    timeout or session end), whose `token` outdates the others."""

    def __init__(self, visitor: Visitor) -> None:
        self.visitor = visitor
        self.state = POLLING
        self.attempt = 0
        self.token = 0
        self.instance: _Instance | None = None
        self.admitted_s: float | None = None


class _Day:
    """The event loop and both modes' rules."""

    def __init__(self, setup: Setup, visitors: tuple[Visitor, ...]) -> None:
        self.setup = setup
        self.fleet = setup.fleet
        self.events: list[tuple[float, int, int, Callable[[float], None]]] = []
        self.seq = 0
        self.visits = [_Visit(v) for v in visitors]
        self.instances: list[_Instance] = []
        self.desired = 0
        self.last_start_s: float | None = None
        self.starts_per_minute: dict[int, int] = {}
        self.load_points: dict[int, tuple[int, int]] = {}  # minute -> (sum, instances)
        self.cut = 0
        self.warm_starts = self.fresh_launches = self.pool_refills = 0
        pool = 1 if self.fleet is None else self.fleet.pool_target(0, 0)
        for _ in range(pool):
            self._new_instance(STOPPED if self.fleet is None else POOL, 0.0)
        for visit in self.visits:
            self._at(visit.visitor.press_s, VISITOR, partial(self._press, visit))
        for minute in range(DAY_S // 60):
            self._at(minute * 60.0, MINUTE_TICK, self._minute_tick)

    def run(self) -> DayResult:
        while self.events and self.events[0][0] < DAY_S:
            now = self.events[0][0]
            while self.events and self.events[0][0] == now:
                heapq.heappop(self.events)[3](now)
            if self.fleet is not None:
                self._reconcile(now)
        return self._result()

    def _at(self, when: float, order: int, action: Callable[[float], None]) -> None:
        self.seq += 1
        heapq.heappush(self.events, (when, order, self.seq, action))

    def _new_instance(self, state: str, now: float) -> _Instance:
        instance = _Instance(len(self.instances), state, now)
        self.instances.append(instance)
        return instance

    # The visitor's page -------------------------------------------------------------------

    def _press(self, visit: _Visit, now: float) -> None:
        self._start_call(now)
        if visit.visitor.session_s is None:
            visit.state = DONE
            return
        self._act(visit, now, self._poll)
        deadline = now + self.setup.page.patience_s
        self._at(deadline, VISITOR, partial(self._give_up, visit))

    def _act(
        self,
        visit: _Visit,
        when: float,
        action: Callable[[_Visit, float], None],
        order: int = VISITOR,
    ) -> None:
        """Schedule the visit's next action, which outdates any other still pending."""
        visit.token += 1
        token = visit.token

        def fire(now: float) -> None:
            if visit.token == token:
                action(visit, now)

        self._at(when, order, fire)

    def _poll(self, visit: _Visit, now: float) -> None:
        """coldStart's GET /status loop: ready once an instance serves."""
        if self._route() is not None:
            self._connect(visit, now)
        else:
            self._act(visit, now + self.setup.page.status_poll_s, self._poll)

    def _connect(self, visit: _Visit, now: float) -> None:
        instance = self._route()
        if instance is None:
            self._retry(visit, now)
        elif len(instance.live) < self.setup.sessions_per_instance and not instance.queue:
            self._admit(visit, instance, now)
        else:
            visit.state, visit.instance = WAITING, instance
            instance.queue.append(visit)
            instance.queue_peak = max(instance.queue_peak, len(instance.queue))
            self._act(visit, now + self.setup.max_wait_s, self._busy)

    def _busy(self, visit: _Visit, now: float) -> None:
        """No slot within max_wait_s: server_busy (or draining), and the page reconnects."""
        if visit.instance is not None:
            visit.instance.queue.remove(visit)
        self._retry(visit, now)

    def _retry(self, visit: _Visit, now: float) -> None:
        visit.state, visit.instance = RETRYING, None
        delay = self.setup.page.reconnect_delay_s(visit.attempt)
        visit.attempt += 1
        self._act(visit, now + delay, self._connect)

    def _admit(self, visit: _Visit, instance: _Instance, now: float) -> None:
        assert visit.visitor.session_s is not None
        visit.state, visit.instance, visit.admitted_s, visit.attempt = LIVE, instance, now, 0
        instance.live.append(visit)
        self._act(visit, now + visit.visitor.session_s, self._end_session, SESSION_END)
        self._agent_soon(instance, now)

    def _end_session(self, visit: _Visit, now: float) -> None:
        instance = visit.instance
        assert instance is not None and visit.admitted_s is not None
        visit.state = DONE
        visit.token += 1
        instance.live.remove(visit)
        instance.busy.append((visit.admitted_s, now))
        if instance.queue and instance.state == IN_SERVICE:
            self._admit(instance.queue.popleft(), instance, now)
        self._agent_soon(instance, now)

    def _give_up(self, visit: _Visit, now: float) -> None:
        if visit.state in (POLLING, RETRYING, WAITING):
            if visit.state == WAITING and visit.instance is not None:
                visit.instance.queue.remove(visit)
            visit.state = GAVE_UP
            visit.token += 1

    # /start, /status and the load balancer -------------------------------------------------

    def _start_call(self, now: float) -> None:
        self.last_start_s = now
        if self.fleet is None:
            instance = self.instances[0]
            if instance.state == STOPPED:
                self.warm_starts += 1
                self._boot(instance, now, self.setup.timing.warm_start_s)
            return
        minute = int(now // 60)
        self.starts_per_minute[minute] = self.starts_per_minute.get(minute, 0) + 1
        # lambdas/shared/demand.py window_keys: every minute overlapping (now - window, now]
        first = int((now - self.fleet.demand_window_s) // 60)
        recent = sum(self.starts_per_minute.get(m, 0) for m in range(first, minute + 1))
        needed = instances_needed(
            sessions=self._latest_sessions(now),
            recent_starts=recent,
            sessions_per_instance=self.setup.sessions_per_instance,
        )
        self.desired = desired_after_start(
            current_desired=self.desired, needed=needed, max_size=self.fleet.max_size
        )

    def _latest_sessions(self, now: float) -> int:
        """lambdas/shared/fleet_sessions.py latest_sessions: each in-service instance's latest
        datapoint of the last 5 minutes that CloudWatch shows."""
        visible = self._visible_minute(now)
        total = 0
        for instance in self.instances:
            if instance.state == IN_SERVICE:
                shown = [m for m in instance.samples if visible - 5 < m <= visible]
                total += instance.samples[max(shown)] if shown else 0
        return total

    def _route(self) -> _Instance | None:
        """The instance a new session reaches: single mode's one instance once its backend is
        ready; in fleet mode the healthy instance with the fewest connections (lowest index on
        a tie)."""
        serving = [i for i in self.instances if i.state == IN_SERVICE]
        return min(serving, key=lambda i: (i.load, i.index)) if serving else None

    # Instances -----------------------------------------------------------------------------

    def _boot(self, instance: _Instance, now: float, serve_after_s: float) -> None:
        instance.state = ARRIVING
        instance.start_run(now)
        self._at(now + serve_after_s, INSTANCE, partial(self._serve, instance, instance.generation))

    def _serve(self, instance: _Instance, generation: int, now: float) -> None:
        """Booted (and, in a fleet, healthy behind the load balancer)."""
        if instance.generation == generation and instance.state == ARRIVING:
            instance.state, instance.in_service_s = IN_SERVICE, now

    def _stop(self, instance: _Instance, now: float, state: str) -> None:
        """Stop (to STOPPED or POOL) or terminate (GONE); a live session is cut."""
        for visit in list(instance.live):
            self.cut += 1
            assert visit.admitted_s is not None
            instance.busy.append((visit.admitted_s, now))
            visit.state, visit.token = DONE, visit.token + 1
        instance.live.clear()
        for visit in list(instance.queue):
            self._retry(visit, now)
        instance.queue.clear()
        instance.end_run(now)
        instance.state, instance.protected, instance.draining_since = state, False, None
        instance.generation += 1
        if state == GONE:
            instance.gone_s = now

    # The minute: heartbeats, idle_stop, target tracking ------------------------------------

    def _minute_tick(self, now: float) -> None:
        minute = int(now // 60)
        members = [i for i in self.instances if i.state in MEMBER_STATES]
        for instance in members:
            instance.samples[minute] = instance.heartbeat_load()
        if members:
            self.load_points[minute] = (sum(i.samples[minute] for i in members), len(members))
        self._idle_stop(now)
        if self.fleet is not None:
            self._target_tracking(now, self.fleet)

    def _visible_minute(self, now: float) -> int:
        """The newest minute whose heartbeat datapoint CloudWatch shows at `now`."""
        return int(now // 60) - 1 - self.setup.metric_lag_min

    def _idle_stop(self, now: float) -> None:
        """idle_stop (lambdas/idle_stop/logic.py and fleet.py): the heartbeats of the running
        instance, or of the group's members, and the last /start, judged by IdlePolicy from
        the newest launch; a stop stops the one instance, or takes the group to 0."""
        members = [i for i in self.instances if i.state in MEMBER_STATES]
        if not members or (self.fleet is not None and self.desired == 0):
            return
        policy = self.setup.policy
        visible = self._visible_minute(now)
        oldest = int(now // 60) - int(policy.idle_minutes + policy.metric_lag_minutes) - 1
        totals: dict[int, int] = {}
        for instance in members:
            for minute, load in instance.samples.items():
                if oldest <= minute <= visible:
                    totals[minute] = totals.get(minute, 0) + load
        active = [m for m, total in totals.items() if total > 0]
        activity = Activity(
            _minute_at(max(active) + 1) if active else None,
            _minute_at(max(totals)) if totals else None,
        )
        if self.last_start_s is not None:
            activity = activity.with_start(_second_at(self.last_start_s))
        launched_at = max(i.run_since for i in members if i.run_since is not None)
        decision = policy.decide(
            now=_second_at(now), launched_at=_second_at(launched_at), activity=activity
        )
        if not decision.stop:
            return
        if self.fleet is None:
            self._stop(members[0], now, STOPPED)
        else:
            self.desired = 0

    def _target_tracking(self, now: float, fleet: Fleet) -> None:
        """AWS's target tracking on the SessionLoad average: the high alarm after
        `scale_out_points` datapoints above the target, the low one after `scale_in_points`
        below `scale_in_ratio` of it, and no scale-in while an instance arrives or warms up;
        capacity = ceil(sum of loads / target)."""
        visible = self._visible_minute(now)
        warming = any(
            i.state == ARRIVING
            or (i.state == IN_SERVICE and now < i.in_service_s + fleet.instance_warmup_s)
            for i in self.instances
        )
        latest = self.load_points.get(visible)
        if latest is None:
            return
        wanted = math.ceil(latest[0] / fleet.target_sessions)

        def all_points(count: int, holds: Callable[[float], bool]) -> bool:
            points = [self.load_points.get(m) for m in range(visible - count + 1, visible + 1)]
            return all(p is not None and holds(p[0] / p[1]) for p in points)

        if all_points(fleet.scale_out_points, lambda avg: avg > fleet.target_sessions):
            self.desired = max(self.desired, min(fleet.max_size, wanted))
        elif not warming and all_points(
            fleet.scale_in_points, lambda avg: avg < fleet.scale_in_ratio * fleet.target_sessions
        ):
            self.desired = min(self.desired, max(fleet.tracking_floor, wanted))

    # AWS's Auto Scaling group, warm pool and fleet agents -----------------------------------

    def _reconcile(self, now: float) -> None:
        """The group moves towards its desired capacity: warm-pool instances first, fresh
        launches when the pool has none stopped; scale-in takes unprotected instances only."""
        fleet = self.fleet
        assert fleet is not None
        members = [i for i in self.instances if i.state in (ARRIVING, IN_SERVICE)]
        for _ in range(self.desired - len(members)):
            pooled = [i for i in self.instances if i.state == POOL]
            if pooled:
                self.warm_starts += 1
                self._boot(pooled[0], now, self.setup.served_after_s)
            else:
                self.fresh_launches += 1
                serve_after = self.setup.timing.fresh_launch_s + self.setup.timing.lb_healthy_s
                self._boot(self._new_instance(ARRIVING, now), now, serve_after)
        if len(members) > self.desired:
            candidates = sorted(
                (i for i in members if not i.protected),
                key=lambda i: (i.state == IN_SERVICE, i.load, -i.index),
            )
            for instance in candidates[: len(members) - self.desired]:
                self._leave(instance, now)
        self._keep_pool(now, fleet)

    def _keep_pool(self, now: float, fleet: Fleet) -> None:
        """AWS launches instances into the pool (initialised, then stopped) up to its size."""
        pool = [i for i in self.instances if i.state in (POOL, POOL_INIT)]
        missing = self._pool_target(fleet, leaving=None) - len(pool)
        for _ in range(missing):
            self.pool_refills += 1
            instance = self._new_instance(POOL_INIT, now)
            instance.start_run(now, pool_init=True)
            initialised = partial(self._initialised, instance, instance.generation)
            self._at(now + self.setup.timing.fresh_launch_s, INSTANCE, initialised)
        if missing < 0:  # a pool larger than its size: AWS terminates stopped ones
            stopped = [i for i in pool if i.state == POOL]
            for instance in stopped[max(0, len(stopped) + missing) :]:
                self._stop(instance, now, GONE)

    def _initialised(self, instance: _Instance, generation: int, now: float) -> None:
        """First boot done in the warm pool: the instance stops there."""
        if instance.generation == generation:
            self._stop(instance, now, POOL)

    def _leave(self, instance: _Instance, now: float) -> None:
        """Scale-in of an unprotected instance: the load balancer stops routing to it, its
        waiting sessions are sent away (draining), live ones finish within the drain limit."""
        assert self.fleet is not None
        instance.state = LEAVING
        instance.generation += 1
        for visit in list(instance.queue):
            self._retry(visit, now)
        instance.queue.clear()
        self._agent_soon(instance, now)

    def _agent_soon(self, instance: _Instance, now: float) -> None:
        """The fleet agent's next step on this instance (every `agent_period_s`)."""
        if self.fleet is None:
            return
        period = self.fleet.agent_period_s
        step = math.ceil(now / period) * period
        if instance.agent_at == step:
            return
        instance.agent_at = step
        self._at(step, AGENT, partial(self._agent_step, instance))

    def _agent_step(self, instance: _Instance, now: float) -> None:
        """The fleet agent's step with the real `fleet_member.decide`: protected while sessions
        are live; a leaving instance drains, then completes its lifecycle action once none is
        live or the drain limit is up."""
        assert self.fleet is not None
        instance.agent_at = None
        leaving = instance.state == LEAVING
        if leaving and instance.draining_since is None:
            instance.draining_since = now
        decision = decide(
            target_state="Warmed:Stopped" if leaving else "InService",
            served=True,  # the model's agent steps only instances that are or were in service
            launch_hook_pending=False,
            backend_ready=True,
            live_sessions=len(instance.live),
            protected=instance.protected,
            draining_since=instance.draining_since,
            now=now,
            drain_limit_s=self.fleet.drain_limit_s,
        )
        if decision.action in (Action.PROTECT, Action.UNPROTECT):
            instance.protected = decision.action == Action.PROTECT
        elif decision.action == Action.COMPLETE:
            self._complete_leave(instance, now)
        elif decision.action == Action.KEEP_DRAINING:
            self._agent_soon(instance, now + self.fleet.agent_period_s)

    def _complete_leave(self, instance: _Instance, now: float) -> None:
        """CompleteLifecycleAction: back to the warm pool (stopped) while it has room,
        terminated otherwise."""
        assert self.fleet is not None
        pool = [i for i in self.instances if i.state in (POOL, POOL_INIT)]
        room = len(pool) < self._pool_target(self.fleet, leaving=instance)
        self._stop(instance, now, POOL if room else GONE)

    def _pool_target(self, fleet: Fleet, leaving: _Instance | None) -> int:
        in_group = sum(i.state in MEMBER_STATES and i is not leaving for i in self.instances)
        return fleet.pool_target(self.desired, in_group)

    # Results -------------------------------------------------------------------------------

    def _result(self) -> DayResult:
        for instance in self.instances:
            instance.end_run(DAY_S)
        runs = [run for i in self.instances for run in i.runs]
        wanted = [v for v in self.visits if v.visitor.session_s is not None]
        return DayResult(
            waits_s=tuple(
                math.inf if v.admitted_s is None else v.admitted_s - v.visitor.press_s
                for v in wanted
            ),
            cut=self.cut,
            billed_s=sum(max(60.0, end - start) for start, end, _ in runs),
            pool_init_s=sum(max(60.0, end - start) for start, end, init in runs if init),
            idle_s=sum(
                sum(end - start for start, end, _ in i.runs) - _union_s(i.busy)
                for i in self.instances
            ),
            warm_starts=self.warm_starts,
            fresh_launches=self.fresh_launches,
            pool_refills=self.pool_refills,
            volume_gib_h=sum(
                ((DAY_S if i.gone_s is None else i.gone_s) - i.created_s) / 3600
                for i in self.instances
            )
            * self.setup.volume_gib,
            desired_at_end=self.desired if self.fleet is not None else 0,
            running_at_end=sum(i.run_since is not None for i in self.instances),
        )


def _union_s(intervals: list[tuple[float, float]]) -> float:
    total, reach = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _second_at(second: float) -> datetime:
    return DAY_START + timedelta(seconds=second)


def _minute_at(minute: int) -> datetime:
    return DAY_START + timedelta(minutes=minute)


def simulate_day(setup: Setup, visitors: tuple[Visitor, ...]) -> DayResult:
    """Run one day of `visitors` under `setup`."""
    return _Day(setup, tuple(sorted(visitors, key=lambda v: v.press_s))).run()
