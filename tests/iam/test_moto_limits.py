"""What moto's IAM enforcement evaluates by itself, and what `moto_fidelity` adds.

Each case runs one call under a one-statement user policy twice: with moto alone and with
`faithful_iam`. Where moto alone is wrong, the test pins that, so a moto upgrade that fixes
it shows up here (and the matching addition can go)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.authorization import disable_iam_authentication, enable_iam_authentication

from tests.iam.conftest import MOTO_IMAGE, session_of, setup_session
from tests.iam.helpers import error_code
from tests.iam.moto_fidelity import UnmodelledConditionError, conditions_hold, faithful_iam

ARN = "arn:aws:{}:eu-west-1:123456789012:{}"


@dataclass(frozen=True)
class World:
    instances: tuple[str, str]
    grant: Callable[[list[dict[str, Any]]], boto3.Session]


@pytest.fixture
def world(aws_env: None) -> Iterator[World]:
    with mock_aws():
        setup = setup_session()
        with disable_iam_authentication():
            reservation = setup.client("ec2").run_instances(
                ImageId=MOTO_IMAGE, MinCount=2, MaxCount=2
            )
            setup.client("ssm").put_parameter(Name="/mine", Value="1", Type="String")
            setup.client("ssm").put_parameter(Name="/theirs", Value="2", Type="String")
        ids = [i["InstanceId"] for i in reservation["Instances"]]

        def grant(statements: list[dict[str, Any]]) -> boto3.Session:
            iam = setup.client("iam")
            with disable_iam_authentication():
                name = f"user{len(iam.list_users()['Users'])}"
                iam.create_user(UserName=name)
                document = {"Version": "2012-10-17", "Statement": statements}
                iam.put_user_policy(
                    UserName=name, PolicyName="p", PolicyDocument=json.dumps(document)
                )
                return session_of(iam.create_access_key(UserName=name)["AccessKey"])

        with enable_iam_authentication():
            yield World((ids[0], ids[1]), grant)


def allowed(call: Callable[[], object]) -> bool:
    try:
        call()
    except ClientError as error:
        if error_code(error) != "AccessDenied":
            raise
        return False
    return True


def test_resources_moto_alone_evaluates_only_for_s3_and_friends(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moto alone checks EC2 calls against "*": a statement for one instance matches none."""
    mine, theirs = world.instances
    user = world.grant(
        [
            {
                "Effect": "Allow",
                "Action": "ec2:StopInstances",
                "Resource": ARN.format("ec2", f"instance/{mine}"),
            }
        ]
    )
    ec2 = user.client("ec2")
    assert not allowed(lambda: ec2.stop_instances(InstanceIds=[mine]))  # AWS would allow it
    faithful_iam(monkeypatch)
    assert allowed(lambda: ec2.stop_instances(InstanceIds=[mine]))
    assert not allowed(lambda: ec2.stop_instances(InstanceIds=[theirs]))


def test_conditions_moto_alone_ignores(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Moto alone treats an Allow with a condition as unconditional."""
    mine, _ = world.instances
    user = world.grant(
        [
            {
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:RequestTag/owner": "cvstack"}},
            }
        ]
    )
    ec2 = user.client("ec2")

    def tag(owner: str) -> Callable[[], object]:
        return lambda: ec2.create_tags(Resources=[mine], Tags=[{"Key": "owner", "Value": owner}])

    assert allowed(tag("someone"))  # AWS would deny it
    faithful_iam(monkeypatch)
    assert allowed(tag("cvstack"))
    assert not allowed(tag("someone"))


def test_cloudwatch_moto_alone_checks_the_signing_name(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moto alone authorizes "monitoring:PutMetricData", which no cloudwatch: grant matches."""
    user = world.grant([{"Effect": "Allow", "Action": "cloudwatch:*", "Resource": "*"}])
    cloudwatch = user.client("cloudwatch")

    def put() -> object:
        return cloudwatch.put_metric_data(
            Namespace="cvstack", MetricData=[{"MetricName": "M", "Value": 1.0}]
        )

    assert not allowed(put)  # AWS would allow it
    faithful_iam(monkeypatch)
    assert allowed(put)


def test_not_resource_moto_alone_turns_into_everything(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moto alone lets a Deny + NotResource statement allow every resource."""
    user = world.grant(
        [
            {
                "Effect": "Deny",
                "Action": "ssm:GetParameter",
                "NotResource": ARN.format("ssm", "parameter/mine"),
            },
            {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*"},
        ]
    )
    ssm = user.client("ssm")
    assert allowed(lambda: ssm.get_parameter(Name="/theirs"))  # AWS would deny it
    faithful_iam(monkeypatch)
    assert allowed(lambda: ssm.get_parameter(Name="/mine"))
    assert not allowed(lambda: ssm.get_parameter(Name="/theirs"))


@pytest.mark.parametrize(
    ("block", "context", "holds"),
    [
        (
            {"StringEquals": {"cloudwatch:namespace": "cvstack"}},
            {"cloudwatch:namespace": ["cvstack"]},
            True,
        ),
        ({"StringEquals": {"cloudwatch:namespace": "cvstack"}}, {}, False),
        ({"StringLike": {"s3:prefix": ["models/*"]}}, {"s3:prefix": ["models/a"]}, True),
        ({"StringLike": {"s3:prefix": ["models/*"]}}, {"s3:prefix": ["modelsx"]}, False),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {"aws:tagkeys": ["a", "b"]}, False),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {"aws:tagkeys": ["a"]}, True),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {}, True),
        ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}}, {}, False),
    ],
)
def test_condition_semantics(
    block: dict[str, dict[str, Any]], context: dict[str, list[str]], holds: bool
) -> None:
    assert conditions_hold(block, context) is holds


@pytest.mark.parametrize(
    "block",
    [{"Bool": {"aws:SecureTransport": "true"}}, {"StringEquals": {"ec2:ResourceTag/x": "y"}}],
)
def test_an_unmodelled_condition_fails_loudly(block: dict[str, dict[str, Any]]) -> None:
    with pytest.raises(UnmodelledConditionError):
        conditions_hold(block, {})
