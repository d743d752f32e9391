"""Fleet mode's agent on each instance: the launch hook once the backend is ready, scale-in
protection while sessions run, and the drain when Auto Scaling takes the instance out
(docs/fleet.md).

`cvstack instance fleet-agent` (systemd/cvstack-fleet-agent.service) runs `FleetAgent.step`
every few seconds. A step reads the instance's target lifecycle state from IMDS, the backend's
live sessions (`cvstack_active_sessions` on its /metrics) and, while the launch hook may hold
this boot, its readiness (/ready's `ready`); asks `fleet_member.decide`, and applies the answer:

- launching (into service, or into the warm pool before this boot has served): nothing until
  the backend is ready, then CompleteLifecycleAction (CONTINUE) on the launch hook, once per
  boot;
- in service: SetInstanceProtection on while sessions run, off once none does;
- leaving (`Terminated`, or `Warmed:*` back to the warm pool, after this boot has served):
  first the drain file (the backend then takes no new session; backend/session/drain.py), then
  RecordLifecycleActionHeartbeat while live sessions last, and CompleteLifecycleAction
  (CONTINUE) on the termination hook once they end or the drain limit is reached;
  `Terminated` before this boot has served completes at once, with nothing to drain.

What this boot has done (launch hook completed, been in service) is kept beside the drain file
(fleet_boot.py), so a restarted agent carries on where it was. A step never raises: a failure
of IMDS, the backend, Auto Scaling or the drain file is logged with what failed and retried at
the next step. While leaving, a backend that does not answer counts as the sessions it last
reported (one, if it never did), so a guess never completes early; the drain limit still ends
the wait. Before this boot has served, a silent backend counts as no session: none can be open.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from prometheus_client.parser import text_string_to_metric_families

from backend.instance.fleet_boot import BootMarks
from backend.instance.fleet_member import (
    IN_SERVICE,
    TERMINATED,
    Action,
    MemberDecision,
    complete_lifecycle_action,
    decide,
    drains,
    keep_draining,
    set_protection,
)
from backend.instance.heartbeat import ACTIVE_GAUGE, backend_works, get_text
from backend.instance.imds import INSTANCE_ID, TARGET_LIFECYCLE_STATE, read_metadata
from backend.session.drain import start_drain

log = logging.getLogger(__name__)

# On the host, and bind-mounted read-only at the same path into the backend's container
# (ami/compose.yaml); its own folder because /run/cvstack (root only) holds the secrets.
DRAIN_FILE = Path("/run/cvstack-fleet/drain")
POLL_S = 5.0
# RecordLifecycleActionHeartbeat at most this often: the hook's heartbeat timeout (minutes)
# needs far fewer calls than one per poll, and Auto Scaling's API rate is shared per account.
HEARTBEAT_EVERY_S = 60.0
SESSIONS_TOPIC = "sessions"  # `_say`'s topic for what the backend reports of its sessions
# What a failed Auto Scaling call raises: AWS's error answer, no answer, or an answer that is not
# AWS's (an error page from a proxy or an endpoint, which botocore cannot parse: its
# ResponseParserError is no BotoCoreError).
AWS_FAILURES = (ClientError, BotoCoreError, ResponseParserError)


def live_sessions(backend_url: str, timeout_s: float) -> int | None:
    """Sessions holding a slot on the backend, from its /metrics; None when it does not say."""
    text = get_text(f"{backend_url}/metrics", timeout_s)
    if text is None:
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == ACTIVE_GAUGE:
                    return int(sample.value)
    except ValueError:
        return None
    return None


class FleetAgent:
    """One instance's launch hook, protection and drain; `step` is one poll, `run` polls until
    stopped. `launch_hook_name` None: the group has no launch hook (nothing holds a launch)."""

    def __init__(
        self,
        *,
        imds_url: str,
        backend_url: str,
        drain_file: Path,
        autoscaling: Any,
        group_name: str,
        hook_name: str,
        drain_limit_s: float,
        launch_hook_name: str | None = None,
        poll_s: float = POLL_S,
        heartbeat_every_s: float = HEARTBEAT_EVERY_S,
        timeout_s: float = 2.0,
    ) -> None:
        self.imds_url = imds_url.rstrip("/")
        self.backend_url = backend_url.rstrip("/")
        self.drain_file = drain_file
        self.autoscaling = autoscaling
        self.group_name = group_name
        self.hook_name = hook_name
        self.drain_limit_s = drain_limit_s
        self.launch_hook_name = launch_hook_name
        self.boot = BootMarks(drain_file.parent)
        self.poll_s = poll_s
        self.heartbeat_every_s = heartbeat_every_s
        self.timeout_s = timeout_s
        self.protected: bool | None = None  # None: not known yet (the agent just started)
        self.draining_since: float | None = None  # wall-clock seconds, like `now`
        self.completed = False  # the termination hook's action
        self._instance_id: str | None = None
        self._sessions_seen: int | None = None
        self._last_heartbeat: float | None = None
        self._last_said: dict[str, str] = {}  # the last message said, per topic

    def run(self, stop: threading.Event) -> None:
        """Step every `poll_s` seconds until `stop` is set; a bug in a step is logged, never
        ends the loop (systemd would restart it, but the drain state would be re-read)."""
        launch = f", launch hook {self.launch_hook_name}" if self.launch_hook_name else ""
        self._say(logging.INFO, f"watching {self.group_name} (hook {self.hook_name}{launch})")
        while not stop.is_set():
            try:
                self.step(time.time())  # the drain file's mtime is on this clock
            except Exception:
                log.exception("fleet agent step failed; trying again in %g s", self.poll_s)
            stop.wait(self.poll_s)

    def step(self, now: float) -> MemberDecision | None:
        """One poll at wall-clock time `now`; the decision applied, or None when this step
        could not decide (IMDS or the backend did not answer) or the lifecycle action is
        already complete."""
        try:
            target = read_metadata(self.imds_url, TARGET_LIFECYCLE_STATE, self.timeout_s)
        except OSError as error:
            self._say(
                logging.WARNING,
                f"cannot read the target lifecycle state from IMDS at {self.imds_url} "
                f"({error}); trying again in {self.poll_s:g} s",
            )
            return None
        if target == IN_SERVICE and self.draining_since is not None:
            self._end_drain(target)
        leaving = target == TERMINATED or drains(target, served=self.boot.served)
        if leaving and self.completed:
            return None
        sessions = self._live_sessions(leaving)
        if sessions is None:
            return None
        if sessions > 0:
            self.boot.mark_served()
        if drains(target, served=self.boot.served):
            self._drain(target, now)
        launch_pending = self._launch_pending()
        decision = decide(
            target_state=target,
            served=self.boot.served,
            launch_hook_pending=launch_pending,
            # Only asked while it matters: the launch hook waits for it.
            backend_ready=launch_pending and backend_works(self.backend_url, self.timeout_s),
            live_sessions=sessions,
            protected=self.protected if self.protected is not None else sessions == 0,
            draining_since=self.draining_since,
            now=now,
            drain_limit_s=self.drain_limit_s,
        )
        self._apply(decision, now)
        if target == IN_SERVICE and not self._launch_pending():
            self.boot.mark_served()
        return decision

    def _launch_pending(self) -> bool:
        return self.launch_hook_name is not None and not self.boot.launched

    def _live_sessions(self, leaving: bool) -> int | None:
        sessions = live_sessions(self.backend_url, self.timeout_s)
        if sessions is not None:
            self._sessions_seen = sessions
            self._last_said.pop(SESSIONS_TOPIC, None)  # a later silence is said again
            return sessions
        if not self.boot.served:
            self._say(
                logging.INFO,
                f"the backend at {self.backend_url} does not report its sessions yet; counting "
                "none: this boot has not been in service",
                SESSIONS_TOPIC,
            )
            return 0
        if leaving:
            seen = self._sessions_seen
            assumed = seen if seen is not None else 1
            self._say(
                logging.WARNING,
                f"the backend at {self.backend_url} does not report its sessions; counting "
                f"{assumed} ({'its last report' if seen is not None else 'it never reported'}) "
                "until it does or the drain limit is reached",
                SESSIONS_TOPIC,
            )
            return assumed
        self._say(
            logging.WARNING,
            f"the backend at {self.backend_url} does not report its sessions (/metrics); "
            f"protection unchanged, trying again in {self.poll_s:g} s",
            SESSIONS_TOPIC,
        )
        return None

    def _drain(self, target: str | None, now: float) -> None:
        """Make sure the drain file exists; the drain began when it was created (an agent that
        restarts mid-drain keeps the original start, so the limit is not extended)."""
        try:
            if not self.drain_file.exists():
                start_drain(self.drain_file, f"leaving the fleet: target state {target}")
                self._say(logging.INFO, f"draining: target lifecycle state {target}")
            if self.draining_since is None:
                self.draining_since = min(now, self.drain_file.stat().st_mtime)
        except OSError as error:
            self._say(
                logging.ERROR,
                f"cannot create the drain file {self.drain_file} ({error.strerror}): new "
                "sessions still arrive; check that its folder exists and is writable",
            )
            if self.draining_since is None:
                self.draining_since = now

    def _end_drain(self, target: str) -> None:
        """Back in service without a reboot (a warm pool of running instances): serve again."""
        try:
            self.drain_file.unlink(missing_ok=True)
        except OSError as error:
            self._say(
                logging.ERROR,
                f"back in service ({target}) but cannot remove the drain file "
                f"{self.drain_file} ({error.strerror}); no new sessions come here until it is",
            )
            return
        self.draining_since = None
        self.completed = False
        self._last_heartbeat = None
        self.boot.forget_launch()  # leaving the pool holds the launch hook again
        self._say(logging.INFO, f"drain ended: target lifecycle state {target}")

    def _apply(self, decision: MemberDecision, now: float) -> None:
        action = decision.action
        if action is Action.NOTHING:
            self._say(logging.INFO, f"nothing to do: {decision.reason}")
            return
        recent = (
            self._last_heartbeat is not None and now - self._last_heartbeat < self.heartbeat_every_s
        )
        if action is Action.KEEP_DRAINING and recent:
            return
        instance_id = self._instance()
        if instance_id is None:
            return
        call = {
            Action.COMPLETE_LAUNCH: f"CompleteLifecycleAction on hook {self.launch_hook_name}",
            Action.PROTECT: "SetInstanceProtection",
            Action.UNPROTECT: "SetInstanceProtection",
            Action.KEEP_DRAINING: f"RecordLifecycleActionHeartbeat on hook {self.hook_name}",
            Action.COMPLETE: f"CompleteLifecycleAction on hook {self.hook_name}",
        }[action]
        try:
            if action is Action.COMPLETE_LAUNCH:
                self._complete_launch(decision, instance_id)
            elif action in (Action.PROTECT, Action.UNPROTECT):
                protect = action is Action.PROTECT
                set_protection(self.autoscaling, self.group_name, instance_id, protected=protect)
                self.protected = protect
                self._say(logging.INFO, f"{action}: {decision.reason}")
            elif action is Action.KEEP_DRAINING:
                pending = keep_draining(
                    self.autoscaling, self.group_name, self.hook_name, instance_id
                )
                self._last_heartbeat = now
                self._say(logging.INFO, f"draining, {decision.reason}{_pending_note(pending)}")
            elif complete_lifecycle_action(
                self.autoscaling, self.group_name, self.hook_name, instance_id
            ):
                self.completed = True
                self._say(logging.INFO, f"lifecycle action completed (CONTINUE): {decision.reason}")
            else:
                self._say(
                    logging.INFO,
                    f"{decision.reason}, but no lifecycle action is pending yet; asking again "
                    f"in {self.poll_s:g} s",
                )
        except AWS_FAILURES as error:
            self._say(
                logging.WARNING,
                f"Auto Scaling {call} for {instance_id} in {self.group_name} failed "
                f"({_aws_error(error)}); trying again in {self.poll_s:g} s ({decision.reason})",
            )

    def _complete_launch(self, decision: MemberDecision, instance_id: str) -> None:
        """CompleteLifecycleAction on the launch hook; no action pending means the group has no
        such hook or this launch's action is already over: done either way."""
        hook = self.launch_hook_name
        assert hook is not None, "decide completes a launch only while a launch hook may hold it"
        pending = complete_lifecycle_action(self.autoscaling, self.group_name, hook, instance_id)
        self.boot.mark_launched()
        note = "" if pending else f" (no {hook} action was pending: no such hook, or already over)"
        self._say(
            logging.INFO, f"launch lifecycle action completed (CONTINUE): {decision.reason}{note}"
        )

    def _instance(self) -> str | None:
        if self._instance_id is None:
            try:
                self._instance_id = read_metadata(self.imds_url, INSTANCE_ID, self.timeout_s)
            except OSError as error:
                self._say(
                    logging.WARNING,
                    f"cannot read the instance id from IMDS at {self.imds_url} ({error}); "
                    f"trying again in {self.poll_s:g} s",
                )
        return self._instance_id

    def _say(self, level: int, message: str, topic: str = "step") -> None:
        """Log `message` unless it repeats the last one of its `topic` (a step every few
        seconds; what the backend reports is a topic of its own, said beside each decision, so
        the two do not take turns in the log while nothing changes)."""
        if message != self._last_said.get(topic):
            log.log(level, "%s", message)
            self._last_said[topic] = message


def _pending_note(pending: bool) -> str:
    return "" if pending else " (no lifecycle action pending: nothing to keep alive)"


def _aws_error(error: ClientError | BotoCoreError | ResponseParserError) -> str:
    if isinstance(error, ClientError):
        detail = error.response.get("Error", {})
        return f"{detail.get('Code', 'error')}: {detail.get('Message', '')}"
    if isinstance(error, ResponseParserError):  # its message goes on with the whole page
        first_line = str(error).splitlines()[0] if str(error) else ""
        return f"an answer that is not AWS's: {first_line.rstrip(':')}"
    return str(error)
