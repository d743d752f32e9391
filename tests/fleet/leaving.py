"""A fleet instance that Auto Scaling takes out, driven through its own fleet agent.

What a scale-in does to an instance, minus AWS: its IMDS answers the target lifecycle state
`Terminated`, and the instance's fleet agent (`FleetAgent.step`, every 5 s on the instance)
starts the drain, keeps the termination hook alive while sessions run and completes it when they
end. IMDS is a real loopback server with IMDSv2 tokens; the two lifecycle-hook calls, which moto
lacks, go to a botocore Stubber that expects exactly the call each step must make.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.stub import Stubber

from backend.instance.fleet_agent import FleetAgent
from backend.instance.fleet_member import Action
from tests.instance.test_fleet_agent import ImdsServer

GROUP = "cvstack-local-gpu-fleet"
HOOK = "cvstack-drain"
DRAIN_LIMIT_S = 1800
LIFECYCLE_CALLS = {
    Action.KEEP_DRAINING: "record_lifecycle_action_heartbeat",
    Action.COMPLETE: "complete_lifecycle_action",
}


@dataclass
class LeavingInstance:
    """The instance's agent, its IMDS and the Auto Scaling calls it is expected to make."""

    instance_id: str
    imds: ImdsServer
    agent: FleetAgent
    autoscaling: Stubber

    @classmethod
    def start(cls, instance_id: str, backend_url: str, drain_file: Path) -> LeavingInstance:
        """IMDS says `Terminated`; nothing has stepped yet."""
        imds = ImdsServer(instance_id, target_state="Terminated")
        client = boto3.client(
            "autoscaling",
            region_name="eu-west-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        agent = FleetAgent(
            imds_url=imds.url,
            backend_url=backend_url,
            drain_file=drain_file,
            autoscaling=client,
            group_name=GROUP,
            hook_name=HOOK,
            drain_limit_s=DRAIN_LIMIT_S,
        )
        stubber = Stubber(client)
        stubber.activate()
        return cls(instance_id, imds, agent, stubber)

    def step(self, expected: Action) -> None:
        """One agent step, which must decide `expected` (never admitting sessions) and make
        exactly its lifecycle-hook call."""
        target = {
            "AutoScalingGroupName": GROUP,
            "LifecycleHookName": HOOK,
            "InstanceId": self.instance_id,
        }
        if expected is Action.COMPLETE:
            target["LifecycleActionResult"] = "CONTINUE"
        self.autoscaling.add_response(LIFECYCLE_CALLS[expected], {}, target)
        decision = self.agent.step(time.time())
        assert decision is not None, "the agent could not decide (see its log)"
        assert (decision.action, decision.admit_sessions) == (expected, False), decision
        self.autoscaling.assert_no_pending_responses()

    def stop(self) -> None:
        self.autoscaling.deactivate()
        self.imds.stop()
