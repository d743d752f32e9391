"""Calls outside the lifecycle Lambdas' template roles are denied (and allowed to admin)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import boto3
import pytest

from lambdas.shared.boot_times import BOOT_SECONDS
from lambdas.shared.instance import BOOT_REQUESTED_TAG, LAST_START_TAG
from lambdas.shared.metrics import NAMESPACE
from tests.iam.conftest import Cloud
from tests.iam.helpers import assert_denied_but_admin_allowed


@dataclass(frozen=True)
class Denial:
    """A call `module`'s role must not make; `state` is the instance state it needs."""

    module: str
    call: Callable[[boto3.Session, Cloud], object]
    state: str = "running"


DENIALS = {
    "status cannot start the instance": Denial(
        "status",
        lambda s, c: s.client("ec2").start_instances(InstanceIds=[c.instance_id]),
        "stopped",
    ),
    "status cannot read the session secret": Denial(
        "status",
        lambda s, c: s.client("secretsmanager").get_secret_value(
            SecretId=c.lambda_environment("start_server")["SESSION_SECRET_ARN"]
        ),
    ),
    "status cannot tag the instance (a boot request)": Denial(
        "status",
        lambda s, c: s.client("ec2").create_tags(
            Resources=[c.instance_id], Tags=[{"Key": BOOT_REQUESTED_TAG, "Value": "x"}]
        ),
    ),
    "status cannot publish a boot time": Denial(
        "status",
        lambda s, c: s.client("cloudwatch").put_metric_data(
            Namespace=NAMESPACE, MetricData=[{"MetricName": BOOT_SECONDS, "Value": 1.0}]
        ),
    ),
    "start_server cannot stop the instance": Denial(
        "start_server",
        lambda s, c: s.client("ec2").stop_instances(InstanceIds=[c.instance_id]),
    ),
    "start_server cannot start another instance": Denial(
        "start_server",
        lambda s, c: s.client("ec2").start_instances(InstanceIds=[c.other_instance_id]),
    ),
    "start_server cannot tag another instance": Denial(
        "start_server",
        lambda s, c: s.client("ec2").create_tags(
            Resources=[c.other_instance_id], Tags=[{"Key": LAST_START_TAG, "Value": "x"}]
        ),
    ),
    "start_server cannot write another tag key": Denial(
        "start_server",
        lambda s, c: s.client("ec2").create_tags(
            Resources=[c.instance_id], Tags=[{"Key": "Name", "Value": "hijacked"}]
        ),
    ),
    "start_server cannot read another secret": Denial(
        "start_server",
        lambda s, c: s.client("secretsmanager").get_secret_value(SecretId=c.other_secret_arn),
    ),
    "idle_stop cannot start the instance": Denial(
        "idle_stop",
        lambda s, c: s.client("ec2").start_instances(InstanceIds=[c.instance_id]),
        "stopped",
    ),
    "idle_stop cannot stop another instance": Denial(
        "idle_stop",
        lambda s, c: s.client("ec2").stop_instances(InstanceIds=[c.other_instance_id]),
    ),
    "idle_stop cannot publish outside the cvstack namespace": Denial(
        "idle_stop",
        lambda s, c: s.client("cloudwatch").put_metric_data(
            Namespace="AWS/EC2", MetricData=[{"MetricName": "Forged", "Value": 1.0}]
        ),
    ),
}


@pytest.mark.parametrize("name", DENIALS)
def test_calls_outside_the_role_are_denied(shared_cloud: Cloud, name: str) -> None:
    denial, cloud = DENIALS[name], shared_cloud
    cloud.set_instance_state(denial.state)
    assert_denied_but_admin_allowed(
        cloud.lambda_session(denial.module), cloud.admin, lambda s: denial.call(s, cloud)
    )
